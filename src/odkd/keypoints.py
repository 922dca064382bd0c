"""COCO-17 keypoint metadata and flip-pair derivation from keypoint names."""
from __future__ import annotations

import numpy as np

COCO_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]
# COCO skeleton, 1-based as in person_keypoints json
COCO_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
    [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]
# Per-keypoint OKS sigmas used by COCO evaluation (pycocotools' defaults for 17 joints).
COCO_SIGMAS = np.array([
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89,
]) / 10.0
COCO_UPPER_BODY = list(range(11))


def flip_pairs_from_names(names: list[str]) -> list[list[int]]:
    """Pair ``left_x``/``right_x`` (also ``l_x``/``r_x``, ``leftX``) keypoint names."""
    idx = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, n in enumerate(names):
        low = n.lower()
        for left, right in (("left_", "right_"), ("left", "right"), ("l_", "r_")):
            if low.startswith(left):
                other = right + n[len(left):]
                cands = [j for m, j in idx.items() if m.lower() == other.lower()]
                if cands:
                    pairs.append([i, cands[0]])
                break
    return pairs


def upper_body_ids_from_names(names: list[str]) -> list[int]:
    upper = ("nose", "eye", "ear", "shoulder", "elbow", "wrist", "head", "neck")
    return [i for i, n in enumerate(names) if any(u in n.lower() for u in upper)]
