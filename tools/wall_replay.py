"""Replay an experiment's parallel phase with measured run times (how long an
experiment would take with some runs faster or slower).

Usage: python tools/wall_replay.py LOG [LOG ...] [--set NAME=MINUTES ...] [--jobs 2]
                                  [--experiment converged_ablation]

Each LOG is an `odkd experiment` log. A run's time is read from it: from the `done` line
just before its `start` line (0 for the first runs) to its own `done` line, evaluation
included. A later LOG overrides the runs an earlier one also timed, so times measured in
different runs of the experiment can be combined into one projection; `--set` gives a run's time by hand
(a run timed outside an experiment, e.g. a teacher probe). The replay schedules like
`odkd.experiment.parallel._run_parallel`, from the experiment's own job list (`--experiment`, whose
methods must include every logged run's): teachers first (ST, then PT), then the students in
the experiment's order, each slot taking the first waiting run whose teachers are done. It prints every run's time and
the wall time of the whole phase; replaying one complete log must give that log's own wall
(up to the experiment's 2-s polling), which checks the replay.
"""
import argparse
import re

DONE = re.compile(r"\[odkd\] done (\S+) \(([\d.]+) min into the parallel phase")
START = re.compile(r"\[odkd\] start (\S+) ->")
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


def experiment_jobs(name: str) -> list:
    """(run name, teachers it waits for) in the order `odkd experiment` queues its runs."""
    from odkd.experiment.plan import _data_key, _student_jobs, _teacher_jobs, load_experiment

    exp = load_experiment(name)
    teachers = _teacher_jobs(exp, _data_key(exp))
    return [(j.name, j.needs) for j in (teachers["st"], teachers["pt"],
                                        *_student_jobs(exp, teachers))]


def replay(times: dict, queue: list, jobs: int) -> float:
    """Wall time of ``queue`` ((name, needs) in queue order) with ``times`` in minutes."""
    needs = dict(queue)
    pending = [n for n, _ in queue]
    running: dict = {}  # name -> finish time
    finished: set = set()
    now = 0.0
    while pending or running:
        while len(running) < jobs:
            ready = [n for n in pending if all(f"teacher_{t}" in finished for t in needs[n])]
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
    ap.add_argument("--experiment", default="converged_ablation",
                    help="the experiment whose job list orders the runs (default: %(default)s)")
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
    queue = [(n, needs) for n, needs in experiment_jobs(args.experiment) if n in times]
    unknown = sorted(set(order) - {n for n, _ in queue})
    if unknown:
        raise SystemExit(f"wall_replay: runs {unknown} are not in experiment {args.experiment}")
    for n, _ in queue:
        print(f"{n:32s} {times[n]:6.1f} min")
    print(f"work {sum(times.values()):.1f} run-minutes; replayed wall with {args.jobs} jobs: "
          f"{replay(times, queue, args.jobs):.1f} min")


if __name__ == "__main__":
    main()
