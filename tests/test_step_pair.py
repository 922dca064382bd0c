"""tools/step_pair.py: a model file at two git revisions, timed in one process (no figure is
checked: timings are for the tool's output, never for a test)."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _git_ok() -> bool:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _git_ok(), reason="not a git checkout: step_pair reads git revisions")
def test_old_file_loads_and_both_sides_are_timed(tmp_path, load_tool, monkeypatch):
    monkeypatch.chdir(ROOT)
    tool = load_tool("step_pair")
    old = tool.load_at("HEAD", "litehrnet")
    from odkd.models.litehrnet import litehrnet_18

    torch.manual_seed(0)
    new_model = litehrnet_18(17, True)
    old_model = old.litehrnet_18(17, True)
    old_model.load_state_dict(new_model.state_dict())  # same architecture, same keys
    out = tmp_path / "pair.json"
    assert tool.main(["--against", "HEAD", "--steps", "1", "--batch", "2", "--eval-batch", "3",
                      "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [r["step"] for r in report["rows"]] == ["student step", "KD step",
                                                    "teacher forward", "eval forward x3"]
    for r in report["rows"]:
        assert r["old_img_s"] > 0 and r["new_img_s"] > 0


def test_unknown_revision_is_an_error(load_tool, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(subprocess.CalledProcessError):
        load_tool("step_pair").load_at("no-such-revision-xyz", "litehrnet")
