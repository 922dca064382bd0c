"""``odkd results table``: the held-out table of one or more experiments' results.csv (the
tables of docs/results.md): AP mean ± std per method and seed-by-seed AP differences, in
points: their mean ± std, the seed spread (the larger std over seeds of the two methods) and
on how many seeds the first method is ahead.

Several CSVs (separate runs of the same experiment, each with its own teachers) are pooled: a
row's mean ± std runs over every (CSV, seed), and differences pair runs of the same CSV and
seed only; the per-seed column lists the CSVs in the order given, separated by ";". A run
that a later CSV lists again (same method, seed and APs: an experiment that reused finished
runs) is counted once, in the first CSV, and pairs only there.
"""
from __future__ import annotations

import collections
import csv
import os

from odkd.errors import DataError
from odkd.experiment.report import _comparisons, _mean_std, ahead  # the experiment's pairs

SPLITS = ("heldout_val", "heldout_occluded")
# rows in this order first, then any other method in the order the CSV lists it
ORDER = ("teacher_pt", "teacher_st", "scratch", "fpd_pt", "fpd_st", "odkd", "odkd_no_seg",
         "odkd_no_bin", "simultaneous", "reverse", "pt_only", "st_only")
COLUMNS = ("method", "split", "seed", "AP")
EXPECTED = "expected an experiment's results.csv"


def methods_in(ap: dict) -> list:
    seen = list(dict.fromkeys(m for m, _ in ap))
    return [m for m in ORDER if m in seen] + [m for m in seen if m not in ORDER]


def _per_seed(keys: list, diffs: list) -> str:
    groups: dict = {}
    for (source, _), d in zip(keys, diffs):
        groups.setdefault(source, []).append(f"{d:+.1f}")
    return " ; ".join(" / ".join(g) for g in groups.values())


def _read(path: str) -> dict:
    """(method, seed) -> {split: AP in points} for the held-out splits of one results.csv."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file ({EXPECTED})")
    runs: dict = collections.defaultdict(dict)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r} ({EXPECTED})")
        for line, r in enumerate(reader, start=2):
            if r["split"] not in SPLITS:
                continue
            try:
                seed, value = int(r["seed"]), 100 * float(r["AP"])
            except (TypeError, ValueError):
                raise DataError(f"{path}: line {line}: seed {r['seed']!r} / AP {r['AP']!r}: "
                                "not a number") from None
            runs[(r["method"], seed)][r["split"]] = value
    return runs


def heldout_table(paths: list) -> tuple[str, list]:
    """The two markdown tables (methods; differences) for ``paths``, and the notes on runs
    that a later CSV repeats (counted once)."""
    ap = collections.defaultdict(dict)  # (method, split) -> {(CSV index, seed): AP in points}
    seen: dict = {}  # (method, seed, AP on each split) -> CSV index that has that run
    notes = []
    for i, path in enumerate(paths):
        for (method, seed), by_split in _read(path).items():
            ident = (method, seed, tuple(sorted(by_split.items())))
            if ident in seen:
                # an experiment that reused finished runs (e.g. the ablation's scratch rows) lists
                # them again: pooled, they would count twice
                notes.append(f"{path}: {method} seed {seed} is the same run as in "
                             f"{paths[seen[ident]]}; counted once")
                continue
            seen[ident] = i
            for split, v in by_split.items():
                ap[(method, split)][(i, seed)] = v
    out = [f"| method | {'seeds' if len(paths) == 1 else 'runs'} | heldout_val AP | "
           "heldout_occluded AP |", "|---|---|---|---|"]
    methods = methods_in(ap)
    for m in methods:
        if (m, SPLITS[0]) in ap:
            cells = [_mean_std(list(ap[(m, sp)].values())) for sp in SPLITS]
            out.append(f"| {m} | {len(ap[(m, SPLITS[0])])} | "
                       + " | ".join(f"{mean:.1f} ± {sd:.1f}" for mean, sd in cells) + " |")
    out += ["", "| comparison | heldout_val per seed | mean ± std | spread | ahead "
            "| heldout_occluded per seed | mean ± std | spread | ahead |",
            "|---|---|---|---|---|---|---|---|---|"]
    for a, b in _comparisons([m for m in methods if not m.startswith("teacher_")]):
        cells = []
        for sp in SPLITS:
            A, B = ap[(a, sp)], ap[(b, sp)]
            seeds = sorted(set(A) & set(B))
            if not seeds:
                break
            diffs = [A[s] - B[s] for s in seeds]
            spread = max(_mean_std([X[s] for s in seeds])[1] for X in (A, B))
            mean, sd = _mean_std(diffs)
            cells += [_per_seed(seeds, diffs), f"{mean:+.1f} ± {sd:.1f}", f"{spread:.1f}",
                      f"{ahead(diffs)}/{len(diffs)}"]
        else:
            out.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n", notes
