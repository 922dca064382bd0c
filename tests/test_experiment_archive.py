"""odkd.experiment.archive (`odkd results save|restore`): finished runs kept in git come back
as runs the experiment skips."""
import json
from pathlib import Path

from odkd.cli import main
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


def _archive(capsys, *argv) -> int:
    """Run `odkd results ARGV...` and return the number of runs it says it copied."""
    assert main(["results", *argv]) == 0
    words = capsys.readouterr().out.split()
    assert words[0] == f"{argv[0]}d" and words[2:4] == ["finished", "runs"]
    return int(words[1])


def test_save_then_restore_gives_finished_runs(tmp_path, capsys):
    out = tmp_path / "out"
    _run(out / "teachers" / "pt-x")
    _run(out / "runs" / "scratch-m-s0")
    _run(out / "runs" / "odkd-m-s0", finished=False)   # still training: not kept
    kept = tmp_path / "kept"
    assert _archive(capsys, "save", str(out), str(kept)) == 2
    assert (kept / "teachers" / "pt-x" / "best.pt").exists()        # teacher weights kept
    assert not (kept / "runs" / "scratch-m-s0" / "best.pt").exists()  # student weights not
    assert not any(kept.rglob("last.pt")) and not any(kept.rglob("results.json"))
    assert not (kept / "runs" / "odkd-m-s0").exists()
    logs = tmp_path / "logs"                                          # save --no-weights
    assert _archive(capsys, "save", "--no-weights", str(out), str(logs)) == 2
    assert not any(logs.rglob("*.pt"))
    assert (logs / "teachers" / "pt-x" / "eval_val" / "summary.json").exists()

    fresh = tmp_path / "fresh"
    assert _archive(capsys, "restore", str(kept), str(fresh)) == 2
    assert (fresh / "teachers" / "pt-x" / "best.pt").read_text() == "best.pt"
    assert not any(p.name.startswith(".tmp-") for p in fresh.rglob("*"))
    splits = {"val": {}}
    for kind, name in (("teachers", "pt-x"), ("runs", "scratch-m-s0")):
        job = _Job(name, [], str(fresh / kind / name), distill=False)
        assert _finished(job, splits)
        assert not _finished(job, {"val": {}, "occluded": {}})  # a split never evaluated


def test_a_missing_or_wrong_folder_is_one_line(tmp_path, capsys):
    for action in ("save", "restore"):
        assert main(["results", action, str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nowhere: no such folder" in err[0]
    (tmp_path / "empty").mkdir()                      # not an experiment's folder
    assert main(["results", "restore", str(tmp_path / "empty"), str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no teachers/ or runs/ folder" in err[0]
    assert not (tmp_path / "x").exists()
