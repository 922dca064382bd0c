"""Keep an experiment's finished runs in git, and put them back so `odkd experiment` skips them.

    python tools/runs_archive.py save    runs/converged results/converged/logs
    python tools/runs_archive.py restore results/converged/logs runs/converged

`save` copies, for every run folder under OUT/teachers and OUT/runs: config.yaml, done.json,
log.csv, train.log and each eval_<split>/{metrics,summary}.json (the per-detection
results.json files are left out: 360 KB each). Teachers also keep their weights-only best.pt
(Lite-HRNet-18: 5 MB): retrained teachers come out close but not bit-identical on another
machine, so a later experiment that adds rows (e.g. the ablation's `simultaneous` / `reverse`)
must distil from these very files to compare with the runs kept here. Student weights are
not kept (the table needs only their evaluations); `save --no-weights` keeps no teacher
weights either (logs only, e.g. what a GPU call brings back).

`restore` copies the same files back under OUT. The experiment then finds each run finished
(done.json + every split's summary.json) and skips it; the restored teachers' best.pt is what
the new runs load.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys

RUN_FILES = ("config.yaml", "done.json", "log.csv", "train.log")
EVAL_FILES = ("metrics.json", "summary.json")


def _copy_run(src: str, dst: str, weights: bool) -> int:
    n = 0
    names = list(RUN_FILES) + (["best.pt"] if weights else [])
    for ev in sorted(glob.glob(os.path.join(src, "eval_*"))):
        names += [os.path.join(os.path.basename(ev), f) for f in EVAL_FILES]
    for name in names:
        s = os.path.join(src, name)
        if os.path.isfile(s):
            os.makedirs(os.path.dirname(os.path.join(dst, name)), exist_ok=True)
            shutil.copy2(s, os.path.join(dst, name))
            n += 1
    return n


def copy_tree(src_root: str, dst_root: str, weights: bool = True) -> int:
    """Copy every finished run (one with done.json) under SRC/{teachers,runs}; returns runs.
    ``weights=False`` leaves the teachers' best.pt out too (logs only)."""
    runs = 0
    for kind in ("teachers", "runs"):
        for d in sorted(glob.glob(os.path.join(src_root, kind, "*"))):
            if not os.path.isfile(os.path.join(d, "done.json")):
                continue  # unfinished: the experiment retrains (or resumes) it
            _copy_run(d, os.path.join(dst_root, kind, os.path.basename(d)),
                      weights=weights and kind == "teachers")
            runs += 1
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("action", choices=["save", "restore"])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--no-weights", action="store_true",
                    help="leave the teachers' best.pt out as well (logs and evaluations only)")
    a = ap.parse_args()
    if not os.path.isdir(a.src):
        print(f"runs_archive: {a.src}: no such folder", file=sys.stderr)
        return 2
    n = copy_tree(a.src, a.dst, weights=not a.no_weights)
    print(f"runs_archive: {a.action}d {n} finished runs from {a.src} to {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
