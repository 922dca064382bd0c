"""``odkd results save`` / ``restore``: keep an experiment's finished runs in git, and put them
back so ``odkd experiment`` skips them.

``save`` copies, for every run folder under OUT/teachers and OUT/runs: config.yaml, done.json,
log.csv, train.log and each eval_<split>/{metrics,summary}.json (the per-detection
results.json files are left out: 360 KB each). Teachers also keep their weights-only best.pt
(Lite-HRNet-18: 5 MB): retrained teachers come out close but not bit-identical on another
machine, so a later experiment that adds rows (e.g. the ablation's ``simultaneous`` /
``reverse``) must distil from these very files to compare with the runs kept there. Student
weights are not kept (the table needs only their evaluations); ``weights=False`` keeps no
teacher weights either (logs only, e.g. what a GPU call brings back).

``restore`` copies the same files back under OUT. The experiment then finds each run finished
(done.json + every split's summary.json) and skips it; the restored teachers' best.pt is what
the new runs load.
"""
from __future__ import annotations

import glob
import os
import shutil

from odkd.errors import DataError
from odkd.utils import atomic_write_bytes

RUN_FILES = ("config.yaml", "done.json", "log.csv", "train.log")
EVAL_FILES = ("metrics.json", "summary.json")
KINDS = ("teachers", "runs")


def _copy_run(src: str, dst: str, weights: bool) -> int:
    n = 0
    names = list(RUN_FILES) + (["best.pt"] if weights else [])
    for ev in sorted(glob.glob(os.path.join(src, "eval_*"))):
        names += [os.path.join(os.path.basename(ev), f) for f in EVAL_FILES]
    for name in names:
        s, d = os.path.join(src, name), os.path.join(dst, name)
        if os.path.isfile(s):
            # atomic: an interrupted copy must not leave a truncated done.json or best.pt
            # that a later experiment takes for a finished run
            with open(s, "rb") as f:
                atomic_write_bytes(d, f.read())
            shutil.copystat(s, d)
            n += 1
    return n


def copy_tree(src_root: str, dst_root: str, weights: bool = True) -> int:
    """Copy every finished run (one with done.json) under SRC/{teachers,runs}; returns runs.
    ``weights=False`` leaves the teachers' best.pt out too (logs only)."""
    if not os.path.isdir(src_root):
        raise DataError(f"{src_root}: no such folder (expected an experiment's out= folder "
                        "or a saved results/*/logs folder)")
    if not any(os.path.isdir(os.path.join(src_root, k)) for k in KINDS):
        raise DataError(f"{src_root}: no teachers/ or runs/ folder in it (expected an "
                        "experiment's out= folder or a saved results/*/logs folder)")
    runs = 0
    for kind in KINDS:
        for d in sorted(glob.glob(os.path.join(src_root, kind, "*"))):
            if not os.path.isfile(os.path.join(d, "done.json")):
                continue  # unfinished: the experiment retrains (or resumes) it
            _copy_run(d, os.path.join(dst_root, kind, os.path.basename(d)),
                      weights=weights and kind == "teachers")
            runs += 1
    return runs
