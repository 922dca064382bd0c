"""Compact held-out table from an experiment's results.csv (README "Converged ablation rows"):
AP mean ± std per method and seed-by-seed AP differences, in points.

Usage: python tools/heldout_table.py results/converged/results.csv
"""
import collections
import csv
import sys

from odkd.experiment import _mean_std  # the experiment's own mean / sample std

SPLITS = ("heldout_val", "heldout_occluded")
# rows in this order first, then any other method in the order the CSV lists it
ORDER = ("teacher_pt", "teacher_st", "scratch", "fpd_pt", "fpd_st", "odkd", "odkd_no_seg",
         "odkd_no_bin", "simultaneous", "reverse")


def methods_in(ap: dict) -> list:
    seen = list(dict.fromkeys(m for m, _ in ap))
    return [m for m in ORDER if m in seen] + [m for m in seen if m not in ORDER]


def pairs_for(methods: list) -> list:
    """Every student row against scratch, then ODKD against every other student row."""
    students = [m for m in methods if not m.startswith("teacher_")]
    out = [(m, "scratch") for m in students if m != "scratch" and "scratch" in students]
    if "odkd" in students:
        out += [("odkd", m) for m in students if m not in ("odkd", "scratch")]
    return out


def main(path: str) -> None:
    ap = collections.defaultdict(dict)  # (method, split) -> {seed: AP in points}
    for r in csv.DictReader(open(path)):
        if r["split"] in SPLITS:
            ap[(r["method"], r["split"])][int(r["seed"])] = 100 * float(r["AP"])
    print("| method | seeds | heldout_val AP | heldout_occluded AP |\n|---|---|---|---|")
    methods = methods_in(ap)
    for m in methods:
        if (m, SPLITS[0]) in ap:
            cells = [_mean_std(list(ap[(m, sp)].values())) for sp in SPLITS]
            print(f"| {m} | {len(ap[(m, SPLITS[0])])} | "
                  + " | ".join(f"{mean:.1f} ± {sd:.1f}" for mean, sd in cells) + " |")
    print("\n| comparison | heldout_val per seed | mean | spread | heldout_occluded per seed "
          "| mean | spread |\n|---|---|---|---|---|---|---|")
    for a, b in pairs_for(methods):
        cells = []
        for sp in SPLITS:
            A, B = ap[(a, sp)], ap[(b, sp)]
            seeds = sorted(set(A) & set(B))
            diffs = [A[s] - B[s] for s in seeds]
            spread = max(_mean_std([X[s] for s in seeds])[1] for X in (A, B))
            cells += [" / ".join(f"{x:+.1f}" for x in diffs),
                      f"{_mean_std(diffs)[0]:+.1f}", f"{spread:.1f}"]
        print(f"| {a} − {b} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
