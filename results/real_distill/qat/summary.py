"""Val table of the QAT runs: per (run, seed, fp32 layers) the fp32 and int8 PCK@0.2 on LSP
1-1000, the int8 cost against its own fp32 model with its paired SE, and the int8 keypoints'
median distance from the fp32 ones (torso lengths); then the mean cost per (run, layers).

Usage: python summary.py OUT_DIR LSP_VAL_JSON [SHIPPED_FP32_RESULTS SHIPPED_INT8_RESULTS]"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "int8_val"))
from paired import hits, load  # noqa: E402


def compare(ann, fp32_results, int8_results):
    gt, ref = load(ann, fp32_results)
    _, p = load(ann, int8_results)
    h0, scored, norm, idx = hits(gt, ref)
    h1 = hits(gt, p)[0]
    d = (h1.astype(int) - h0.astype(int))[scored]
    n = scored.sum()
    move = (np.linalg.norm(p[:, idx, :2] - ref[:, idx, :2], axis=2) / norm[:, None])[scored]
    return (h0[scored].mean(), h1[scored].mean(), -100 * d.sum() / n,
            100 * np.sqrt((d != 0).sum()) / n, float(np.median(move)))


def main(out, ann, shipped_fp32=None, shipped_int8=None):
    print("| run | seed | fp32 layers | fp32 PCK | int8 PCK | cost ± SE (points) | median "
          "distance to fp32 (torso) |")
    print("|---|---|---|---|---|---|---|")
    if shipped_fp32:
        f, i, c, se, mv = compare(ann, shipped_fp32, shipped_int8)
        print(f"| shipped | | declared | {f:.4f} | {i:.4f} | {c:.2f} ± {se:.2f} | {mv:.4f} |")
    means = {}
    for v in ("qat", "ctl"):
        for seed in range(10):
            fp32 = os.path.join(out, f"{v}_s{seed}_declared_val", "results.json")
            if not os.path.exists(fp32):
                continue
            for layers in ("declared", "all"):
                i8 = os.path.join(out, f"{v}_s{seed}_{layers}.int8_val", "results.json")
                f, i, c, se, mv = compare(ann, fp32, i8)
                means.setdefault((v, layers), []).append((c, mv))
                print(f"| {v} | {seed} | {layers} | {f:.4f} | {i:.4f} | {c:.2f} ± {se:.2f} | "
                      f"{mv:.4f} |")
    print()
    print("| run | fp32 layers | seeds | mean cost (points) | mean median distance |")
    print("|---|---|---|---|---|")
    for (v, layers), xs in means.items():
        c, mv = np.mean(xs, axis=0)
        print(f"| {v} | {layers} | {len(xs)} | {c:.2f} | {mv:.4f} |")


if __name__ == "__main__":
    main(*sys.argv[1:5])
