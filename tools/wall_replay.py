"""Replay an experiment's parallel phase with measured run times (README "Converged
distillation table", budget).

Usage: python tools/wall_replay.py LOG [LOG ...] [--set NAME=MINUTES ...] [--jobs 2]

Each LOG is an `odkd experiment` log. A run's time is read from it: from the `done` line
just before its `start` line (0 for the first runs) to its own `done` line, evaluation
included. A later LOG overrides the runs an earlier one also timed, so times measured in
different sittings can be combined into one projection; `--set` gives a run's time by hand
(a run timed outside an experiment, e.g. a teacher probe). The replay schedules like
`experiment._run_parallel`: teachers first (ST, then PT), then the students seed-major, each
slot taking the first waiting run whose teachers are done. It prints every run's time and
the wall time of the whole phase; replaying one complete log must give that log's own wall
(up to the experiment's 2-s polling), which checks the replay.
"""
import argparse
import re

DONE = re.compile(r"\[odkd\] done (\S+) \(([\d.]+) min into the parallel phase")
START = re.compile(r"\[odkd\] start (\S+) ->")
NEEDS = {"scratch": (), "fpd_pt": ("pt",), "fpd_st": ("st",)}  # any other method: both
# the order of `methods:` in converged_ablation.yaml (the converged table lists its first four)
METHODS = ("scratch", "fpd_pt", "fpd_st", "odkd", "odkd_no_seg", "odkd_no_bin", "simultaneous",
           "reverse")


def read_times(path: str) -> tuple:
    """{run name: minutes} and the runs in the order the log started them."""
    started, times, now = {}, {}, 0.0
    for line in open(path, encoding="utf-8"):
        m = DONE.search(line)
        if m:
            now = float(m.group(2))
            times[m.group(1)] = now - started[m.group(1)]
            continue
        m = START.search(line)
        if m:
            started[m.group(1)] = now
    return times, list(started)


def needs(name: str) -> tuple:
    if name.startswith("teacher_"):
        return ()
    method = name.split("-")[0]
    return NEEDS.get(method, ("pt", "st"))


def order_key(name: str) -> tuple:
    if name.startswith("teacher_"):
        return (0, 0 if name == "teacher_st" else 1, 0)
    method, _student, seed = name.rsplit("-", 2)
    rank = METHODS.index(method) if method in METHODS else len(METHODS)
    return (1, int(seed[1:]), rank)  # seed-major, then the methods' order


def replay(times: dict, order: list, jobs: int) -> float:
    pending = sorted(order, key=order_key)
    running: dict = {}  # name -> finish time
    finished: set = set()
    now = 0.0
    while pending or running:
        while len(running) < jobs:
            ready = [n for n in pending if all(f"teacher_{t}" in finished for t in needs(n))]
            if not ready:
                break
            pending.remove(ready[0])
            running[ready[0]] = now + times[ready[0]]
        if not running:
            raise SystemExit(f"wall_replay: runs {pending} wait for teachers never timed")
        name = min(running, key=running.get)
        now = running.pop(name)
        finished.add(name)
    return now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=MINUTES")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    times, order = {}, []
    for path in args.logs:
        t, o = read_times(path)
        times.update(t)
        order += [n for n in o if n not in order]
    for item in args.set:
        name, _, minutes = item.partition("=")
        try:
            times[name] = float(minutes)
        except ValueError:
            raise SystemExit(f"wall_replay: --set {item}: expected NAME=MINUTES") from None
        order += [name] if name not in order else []
    missing = [n for n in order if n not in times]
    if missing:
        raise SystemExit(f"wall_replay: {args.logs[-1]}: runs started but never done: {missing}")
    for n in sorted(order, key=order_key):
        print(f"{n:32s} {times[n]:6.1f} min")
    print(f"work {sum(times.values()):.1f} run-minutes; replayed wall with {args.jobs} jobs: "
          f"{replay(times, order, args.jobs):.1f} min")


if __name__ == "__main__":
    main()
