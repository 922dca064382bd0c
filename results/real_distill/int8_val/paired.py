"""Paired reading of the int8 rows: for each int8 file, its PCK@0.2 cost against the fp32
model on the same joints, the standard error of that cost (from the joints whose hit/miss
differs between the two), and how far its keypoints are from the fp32 model's (torso
lengths; no labels needed for that part).

Usage: python paired.py OUT_DIR VAL_JSON TEST_JSON   (OUT_DIR as run.sh wrote it)"""
import glob
import json
import os
import sys

import numpy as np

from odkd.data.coco import read_person_keypoints
from odkd.eval.pck import LIMB_JOINTS, TORSO
from odkd.keypoints import COCO_KEYPOINTS


def load(ann_file, results_file):
    f = read_person_keypoints(ann_file)
    gt = {a["image_id"]: np.asarray(a["keypoints"], float).reshape(17, 3)
          for a in f.annotations}
    pred = {}
    for r in json.load(open(results_file)):
        if r["image_id"] not in pred or r["score"] > pred[r["image_id"]][0]:
            pred[r["image_id"]] = (r["score"], np.asarray(r["keypoints"], float).reshape(17, 3))
    ids = sorted(gt)
    return np.array([gt[i] for i in ids]), np.array([pred[i][1] for i in ids])


def hits(gt, pred):
    idx = [COCO_KEYPOINTS.index(n) for n in LIMB_JOINTS]
    a, b = (COCO_KEYPOINTS.index(n) for n in TORSO)
    norm = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=1)
    scored = (gt[:, idx, 2] > 0) & (norm > 0)[:, None]
    dist = np.linalg.norm(pred[:, idx, :2] - gt[:, idx, :2], axis=2)
    return (dist <= 0.2 * norm[:, None]), scored, norm, idx


def main(out, val, test):
    print("| int8 file | split | PCK@0.2 | cost vs fp32 (points) | SE of cost | joints "
          "changed | median / 95th pct distance to fp32 (torso) |")
    print("|---|---|---|---|---|---|---|")
    for split, ann in (("val", val), ("test", test)):
        gt, ref = load(ann, os.path.join(out, f"fp32_{split}", "results.json"))
        h0, scored, norm, idx = hits(gt, ref)
        n = scored.sum()
        for d in sorted(glob.glob(os.path.join(out, f"*.int8_{split}"))):
            name = os.path.basename(d)[: -len(f".int8_{split}")]
            _, p = load(ann, os.path.join(d, "results.json"))
            h1, _, _, _ = hits(gt, p)
            diff = (h1.astype(int) - h0.astype(int))[scored]
            cost = -100 * diff.sum() / n
            se = 100 * np.sqrt((diff != 0).sum()) / n   # paired (McNemar-style) standard error
            move = (np.linalg.norm(p[:, idx, :2] - ref[:, idx, :2], axis=2)
                    / norm[:, None])[scored]
            print(f"| {name} | {split} | {h1[scored].mean():.4f} | {cost:.2f} | {se:.2f} | "
                  f"{(diff != 0).sum()} | {np.median(move):.4f} / {np.percentile(move, 95):.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
