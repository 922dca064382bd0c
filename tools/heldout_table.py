"""Compact held-out table from an experiment's results.csv (the tables of docs/results.md):
AP mean ± std per method and seed-by-seed AP differences, in points: their mean ± std, the
seed spread (the larger std over seeds of the two methods) and on how many seeds the first
method is ahead.

Usage: python tools/heldout_table.py results/converged/results.csv [MORE.csv ...]

Several CSVs (separate runs of the same experiment, each with its own teachers) are pooled: a
row's mean ± std runs over every (CSV, seed), and differences pair runs of the same CSV and
seed only; the per-seed column lists the CSVs in the order given, separated by ";". A run
that a later CSV lists again (same method, seed and APs: an experiment that reused finished
runs) is counted once, in the first CSV, and pairs only there.
"""
import collections
import csv
import os
import sys

from odkd.experiment.report import _comparisons, _mean_std, ahead  # the experiment's pairs and stats

SPLITS = ("heldout_val", "heldout_occluded")
# rows in this order first, then any other method in the order the CSV lists it
ORDER = ("teacher_pt", "teacher_st", "scratch", "fpd_pt", "fpd_st", "odkd", "odkd_no_seg",
         "odkd_no_bin", "simultaneous", "reverse", "pt_only", "st_only")


def methods_in(ap: dict) -> list:
    seen = list(dict.fromkeys(m for m, _ in ap))
    return [m for m in ORDER if m in seen] + [m for m in seen if m not in ORDER]


def _per_seed(keys: list, diffs: list) -> str:
    groups: dict = {}
    for (source, _), d in zip(keys, diffs):
        groups.setdefault(source, []).append(f"{d:+.1f}")
    return " ; ".join(" / ".join(g) for g in groups.values())


def main(*paths: str) -> None:
    ap = collections.defaultdict(dict)  # (method, split) -> {(CSV index, seed): AP in points}
    seen: dict = {}  # (method, seed, AP on each split) -> CSV index that has that run
    for i, path in enumerate(paths):
        runs = collections.defaultdict(dict)
        for r in csv.DictReader(open(path)):
            if r["split"] in SPLITS:
                runs[(r["method"], int(r["seed"]))][r["split"]] = 100 * float(r["AP"])
        for (method, seed), by_split in runs.items():
            ident = (method, seed, tuple(sorted(by_split.items())))
            if ident in seen:
                # an experiment that reused finished runs (e.g. the ablation's scratch rows) lists
                # them again: pooled, they would count twice
                print(f"{path}: {method} seed {seed} is the same run as in "
                      f"{paths[seen[ident]]}; counted once", file=sys.stderr)
                continue
            seen[ident] = i
            for split, v in by_split.items():
                ap[(method, split)][(i, seed)] = v
    print(f"| method | {'seeds' if len(paths) == 1 else 'runs'} | heldout_val AP | "
          "heldout_occluded AP |\n|---|---|---|---|")
    methods = methods_in(ap)
    for m in methods:
        if (m, SPLITS[0]) in ap:
            cells = [_mean_std(list(ap[(m, sp)].values())) for sp in SPLITS]
            print(f"| {m} | {len(ap[(m, SPLITS[0])])} | "
                  + " | ".join(f"{mean:.1f} ± {sd:.1f}" for mean, sd in cells) + " |")
    print("\n| comparison | heldout_val per seed | mean ± std | spread | ahead "
          "| heldout_occluded per seed | mean ± std | spread | ahead |\n"
          "|---|---|---|---|---|---|---|---|---|")
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
            print(f"| {a} − {b} | " + " | ".join(cells) + " |")


USAGE = "usage: python tools/heldout_table.py RESULTS.csv [MORE.csv ...]"

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        print(USAGE)
        sys.exit(2)
    if args[0] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    missing = [p for p in args if not os.path.isfile(p)]
    if missing:
        sys.exit(f"heldout_table: {missing[0]}: no such file (expected an experiment's "
                 "results.csv)")
    main(*args)
