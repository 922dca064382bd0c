"""Print the model-size table of tools/model_sizes.sh from its run folders.

    python tools/sizes_table.py runs/sizes/medium --models hrnet_w32 litehrnet_18 --seeds 0 1 2

Reads RUN/log.csv (AP on the 100 val images at each evaluated epoch), the held-out AP in
RUN/heldout_{val,occluded}/metrics.json and RUN/wall_s for every RUN = DIR/MODEL_sSEED;
prints one markdown row per run, the mean ± std per model, and the first model's lead over
each other one, seed by seed (same seed = same data order and augmentation draws, so the
paired difference is the fair one).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys


def _run(d: str) -> dict | None:
    log = os.path.join(d, "log.csv")
    if not os.path.exists(log):
        return None
    rows = list(csv.DictReader(open(log)))
    curve = [(int(r["epoch"]), float(r["val_AP"])) for r in rows if r.get("val_AP")]
    held = {}
    for split in ("val", "occluded"):
        p = os.path.join(d, f"heldout_{split}", "metrics.json")
        held[split] = json.load(open(p))["AP"] if os.path.exists(p) else None
    wall_path = os.path.join(d, "wall_s")
    wall = (sum(int(x) for x in open(wall_path).read().split())
            if os.path.exists(wall_path) else None)
    return {"curve": curve, "val": held["val"], "occ": held["occluded"], "wall": wall}


def _ms(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.3f}"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--models", nargs="+", default=["hrnet_w32", "litehrnet_18"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a = ap.parse_args(argv)
    runs = {(m, s): _run(os.path.join(a.dir, f"{m}_s{s}")) for m in a.models for s in a.seeds}
    done = {k: r for k, r in runs.items()
            if r is not None and r["occ"] is not None and r["val"] is not None}
    missing = [f"{m}_s{s}" for m, s in runs if (m, s) not in done]
    if missing:
        print(f"[sizes] not finished in {a.dir}: {', '.join(missing)}", file=sys.stderr)
    if not done:
        return 1
    # the epochs every run evaluated (a run resumed with another eval_every has extra ones)
    epochs = sorted(set.intersection(*({e for e, _ in r["curve"]} for r in done.values())))
    print("| model | seed | " + " | ".join(f"val100 AP @ep{e}" for e in epochs)
          + " | held-out val AP | held-out occluded AP | wall (min) |")
    print("|---|---|" + "---|" * (len(epochs) + 3))
    for (m, s), r in done.items():
        ap_at = dict(r["curve"])
        cells = [f"{ap_at[e]:.3f}" if e in ap_at else "" for e in epochs]
        wall = f"{r['wall'] / 60:.1f}" if r["wall"] else "n/a"
        print(f"| {m} | {s} | " + " | ".join(cells)
              + f" | {r['val']:.3f} | {r['occ']:.3f} | {wall} |")
    print()
    print("| model | seeds | held-out val AP | held-out occluded AP |")
    print("|---|---|---|---|")
    for m in a.models:
        rs = [r for (mm, _), r in done.items() if mm == m]
        if rs:
            print(f"| {m} | {len(rs)} | {_ms([r['val'] for r in rs])} | "
                  f"{_ms([r['occ'] for r in rs])} |")
    big = a.models[0]
    for m in a.models[1:]:
        pairs = [(done[(big, s)], done[(m, s)]) for s in a.seeds
                 if (big, s) in done and (m, s) in done]
        if not pairs:
            continue
        dv = [b["val"] - o["val"] for b, o in pairs]
        do = [b["occ"] - o["occ"] for b, o in pairs]
        print(f"\n{big} minus {m}, seed by seed: held-out val "
              + ", ".join(f"{x:+.3f}" for x in dv) + f" (mean {statistics.mean(dv):+.3f}); "
              "occluded " + ", ".join(f"{x:+.3f}" for x in do)
              + f" (mean {statistics.mean(do):+.3f}); ahead on "
              f"{sum(x > 0 for x in dv + do)} of {len(dv + do)} comparisons")
    return 0


if __name__ == "__main__":
    sys.exit(main())
