"""tools/runs_archive.py: finished runs kept in git come back as runs the experiment skips."""
import json
from pathlib import Path

from odkd.experiment.jobs import _finished
from odkd.experiment.plan import _Job


def _run(d: Path, finished: bool = True) -> None:
    (d / "eval_val").mkdir(parents=True)
    for name in ("config.yaml", "log.csv", "train.log", "best.pt", "last.pt"):
        (d / name).write_text(name)
    (d / "eval_val" / "summary.json").write_text(json.dumps({"AP": 0.5}))
    (d / "eval_val" / "metrics.json").write_text("{}")
    (d / "eval_val" / "results.json").write_text("[]")
    if finished:
        (d / "done.json").write_text(json.dumps({"best": str(d / "best.pt"), "train_s": 1.0}))


def test_save_then_restore_gives_finished_runs(tmp_path, load_tool):
    tool = load_tool("runs_archive")
    out = tmp_path / "out"
    _run(out / "teachers" / "pt-x")
    _run(out / "runs" / "scratch-m-s0")
    _run(out / "runs" / "odkd-m-s0", finished=False)   # still training: not kept
    kept = tmp_path / "kept"
    assert tool.copy_tree(str(out), str(kept)) == 2
    assert (kept / "teachers" / "pt-x" / "best.pt").exists()        # teacher weights kept
    assert not (kept / "runs" / "scratch-m-s0" / "best.pt").exists()  # student weights not
    assert not any(kept.rglob("last.pt")) and not any(kept.rglob("results.json"))
    assert not (kept / "runs" / "odkd-m-s0").exists()
    logs = tmp_path / "logs"                                          # save --no-weights
    assert tool.copy_tree(str(out), str(logs), weights=False) == 2
    assert not any(logs.rglob("*.pt"))
    assert (logs / "teachers" / "pt-x" / "eval_val" / "summary.json").exists()

    fresh = tmp_path / "fresh"
    assert tool.copy_tree(str(kept), str(fresh)) == 2
    splits = {"val": {}}
    for kind, name in (("teachers", "pt-x"), ("runs", "scratch-m-s0")):
        job = _Job(name, [], str(fresh / kind / name), distill=False)
        assert _finished(job, splits)
        assert not _finished(job, {"val": {}, "occluded": {}})  # a split never evaluated
