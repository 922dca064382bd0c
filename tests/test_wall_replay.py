"""tools/wall_replay.py: replays an experiment's parallel phase from the run times of its logs."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _log(path: Path, events: list) -> str:
    # events: ("start", name) or ("done", name, minutes), as `odkd experiment` prints them
    lines = []
    for e in events:
        if e[0] == "start":
            lines.append(f"[odkd] start {e[1]} -> runs/x/{e[1]} (log: train.log there)")
        else:
            lines.append(f"[odkd] done {e[1]} ({e[2]:.1f} min into the parallel phase; "
                         f"0 waiting, 1 running)")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_times_are_read_from_the_done_line_before_each_start(tmp_path, load_tool):
    log = _log(tmp_path / "e.log", [
        ("start", "teacher_st"), ("start", "teacher_pt"),
        ("done", "teacher_pt", 10.0), ("start", "scratch-m-s0"),
        ("done", "scratch-m-s0", 15.0), ("start", "fpd_pt-m-s0"),
        ("done", "teacher_st", 30.0), ("start", "odkd-m-s0"),
        ("done", "fpd_pt-m-s0", 27.0), ("done", "odkd-m-s0", 42.0)])
    times, order = load_tool("wall_replay").read_times(log)
    assert times == pytest.approx({"teacher_pt": 10.0, "teacher_st": 30.0, "scratch-m-s0": 5.0,
                                   "fpd_pt-m-s0": 12.0, "odkd-m-s0": 12.0})
    assert order[:2] == ["teacher_st", "teacher_pt"]


def test_replay_waits_for_teachers_and_fills_free_slots(load_tool):
    wr = load_tool("wall_replay")
    times = {"teacher_st": 30.0, "teacher_pt": 10.0, "scratch-m-s0": 5.0, "fpd_pt-m-s0": 12.0,
             "fpd_st-m-s0": 8.0, "odkd-m-s0": 12.0}
    queue = [("teacher_st", ()), ("teacher_pt", ()), ("scratch-m-s0", ()),
             ("fpd_pt-m-s0", ("pt",)), ("fpd_st-m-s0", ("st",)), ("odkd-m-s0", ("pt", "st"))]
    # slot A: ST 0-30, fpd_st 30-38; slot B: PT 0-10, scratch 10-15, fpd_pt 15-27, odkd 30-42
    # (odkd is listed after fpd_st and waits for the ST like it)
    assert wr.replay(times, queue, jobs=2) == pytest.approx(42.0)
    assert wr.replay(times, queue, jobs=1) == pytest.approx(sum(times.values()))
    # a run that needs a teacher nobody timed is an error, not a wrong wall
    with pytest.raises(SystemExit, match="wait for teachers"):
        wr.replay({"odkd-m-s0": 1.0}, [("odkd-m-s0", ("pt", "st"))], jobs=2)


def test_the_queue_is_the_experiments_own(load_tool):
    # order and teachers come from odkd.experiment's job builders, not from a copy in the tool
    queue = load_tool("wall_replay").experiment_jobs("converged")
    assert [n for n, _ in queue[:4]] == ["teacher_st", "teacher_pt", "scratch-litehrnet_18-s0",
                                         "fpd_pt-litehrnet_18-s0"]
    needs = dict(queue)
    assert needs["scratch-litehrnet_18-s1"] == ()
    assert needs["fpd_pt-litehrnet_18-s1"] == ("pt",)
    assert needs["fpd_st-litehrnet_18-s1"] == ("st",)
    assert needs["odkd-litehrnet_18-s2"] == ("pt", "st")


def test_replaying_a_whole_committed_log_gives_its_own_wall(monkeypatch, capsys, load_tool):
    log = ROOT / "results" / "converged_full_fcfb964_epyc" / "experiment.log"
    if not log.exists():
        pytest.skip(f"{log} is not in this checkout")
    monkeypatch.setattr("sys.argv", ["wall_replay.py", str(log)])
    load_tool("wall_replay").main()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.endswith("replayed wall with 2 jobs: 108.8 min")  # its last `done` line
