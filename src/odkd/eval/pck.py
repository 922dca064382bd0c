"""PCK on 14-joint sets (LSP) with the torso normaliser, the protocol's person box, and OKS AP
over the labelled joints.

Protocol: the person box is the extent of the ground-truth joints made square and enlarged
1.25x (:func:`protocol_box`); a predicted joint is correct when it lies within ``alpha`` x the
distance from the ground-truth right shoulder to the left hip (:func:`pck`, ``alpha`` 0.2),
scored over the 12 limb joints (shoulders, elbows, wrists, hips, knees, ankles) that are
labelled (v > 0: LSP labels occluded joints too, at their estimated place). A person whose
right shoulder or left hip is unlabelled, or who has them at one point, has no normaliser: it
is left out and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from odkd.errors import DataError
from odkd.keypoints import COCO_KEYPOINTS

LIMB_JOINTS = ["left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
               "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
               "right_ankle"]
LIMB_IDS = [COCO_KEYPOINTS.index(n) for n in LIMB_JOINTS]
TORSO = ("right_shoulder", "left_hip")


def protocol_box(joints, enlarge: float = 1.25) -> np.ndarray:
    """``[x, y, w, h]`` (w == h): the extent of the labelled joints (rows with v > 0; all rows
    when ``joints`` has no third column), made square about its centre and enlarged
    ``enlarge`` x. Not clipped to the image: the crop pads what lies outside."""
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 2 or j.shape[1] not in (2, 3):
        raise ValueError(f"joints must be (K, 2) or (K, 3), got {j.shape}")
    xy = j[j[:, 2] > 0, :2] if j.shape[1] == 3 else j
    if len(xy) == 0:
        raise ValueError("no labelled joint: the protocol box is undefined")
    lo, hi = xy.min(0), xy.max(0)
    side = float((hi - lo).max()) * enlarge
    cx, cy = (lo + hi) / 2
    return np.array([cx - side / 2, cy - side / 2, side, side])


@dataclass
class PCKResult:
    alpha: float
    pck: float                      # correct / scored over every scored joint
    per_joint: dict[str, float]     # joint name -> PCK (nan when that joint was never scored)
    correct: dict[str, int]
    scored: dict[str, int]
    people: int                     # people scored
    skipped_no_torso: int           # people without a defined normaliser
    missing_predictions: int = 0    # people scored with no prediction (all their joints wrong)
    joints: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "pck": self.pck, "people": self.people,
                "skipped_no_torso": self.skipped_no_torso,
                "missing_predictions": self.missing_predictions,
                "per_joint": dict(self.per_joint)}

    def summary(self) -> str:
        text = (f"PCK@{self.alpha:g} {self.pck:.3f} over {sum(self.scored.values())} joints of "
                f"{self.people} people")
        if self.skipped_no_torso:
            text += f" ({self.skipped_no_torso} left out: no torso normaliser)"
        if self.missing_predictions:
            text += f" ({self.missing_predictions} with no prediction, counted wrong)"
        return text


def pck(pred, gt, alpha: float = 0.2, joints: Sequence[str] = LIMB_JOINTS,
        torso: tuple[str, str] = TORSO, names: Sequence[str] = COCO_KEYPOINTS) -> PCKResult:
    """PCK@``alpha`` of ``pred`` (N, K, >=2: x, y[, score]) against ``gt`` (N, K, 3: x, y, v),
    both in the ``names`` joint order (default COCO-17). A prediction that is NaN counts wrong.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    k = len(names)
    if g.ndim != 3 or g.shape[1:] != (k, 3):
        raise ValueError(f"gt must be (N, {k}, 3), got {g.shape}")
    if p.ndim != 3 or p.shape[:2] != g.shape[:2] or p.shape[2] < 2:
        raise ValueError(f"pred must be ({g.shape[0]}, {k}, >=2), got {p.shape}")
    idx = [list(names).index(n) for n in joints]
    a, b = (list(names).index(n) for n in torso)
    norm = np.linalg.norm(g[:, a, :2] - g[:, b, :2], axis=1)
    ok_person = (g[:, a, 2] > 0) & (g[:, b, 2] > 0) & (norm > 0)
    dist = np.linalg.norm(p[:, idx, :2] - g[:, idx, :2], axis=2)          # (N, J)
    hit = np.nan_to_num(dist, nan=np.inf) <= alpha * norm[:, None]
    scored = (g[:, idx, 2] > 0) & ok_person[:, None]
    correct = (hit & scored).sum(0)
    counted = scored.sum(0)
    total = int(counted.sum())
    return PCKResult(
        alpha=alpha, pck=float(correct.sum() / total) if total else float("nan"),
        per_joint={n: float(c / s) if s else float("nan")
                   for n, c, s in zip(joints, correct, counted)},
        correct={n: int(c) for n, c in zip(joints, correct)},
        scored={n: int(s) for n, s in zip(joints, counted)},
        people=int(ok_person.sum()), skipped_no_torso=int((~ok_person).sum()),
        joints=list(joints))


def evaluate_pck(ann_file: str, results: Sequence[dict], alpha: float = 0.2) -> PCKResult:
    """PCK of COCO-format ``results`` against a person_keypoints json (e.g. from
    ``odkd data import lsp``). A result names its person by ``ann_id`` or, on a set with one
    person per image, by ``image_id`` (the highest-scoring result of the image is used). A
    person with no result is scored with all joints wrong."""
    from odkd.data.coco import read_person_keypoints

    f = read_person_keypoints(ann_file)
    k = len(f.category["keypoints"])
    if list(f.category["keypoints"]) != list(COCO_KEYPOINTS):
        raise DataError(f"{ann_file}: field categories[].keypoints: PCK here needs the COCO-17 "
                        f"joint order, got {k} joints")
    anns = [a for a in f.annotations if not a.get("iscrowd", 0)]
    if not anns:
        raise DataError(f"{ann_file}: no person annotations to score")
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    chosen: dict[int, tuple[float, np.ndarray]] = {}  # ann id -> (score, (K, 3))
    for i, r in enumerate(results):
        try:
            kp = np.asarray(r["keypoints"], dtype=np.float64).reshape(k, 3)
            score = float(r.get("score", 1.0))
            if "ann_id" in r:
                ann_id = int(r["ann_id"])
            else:
                people = by_image.get(int(r["image_id"]), [])
                if len(people) != 1:
                    raise DataError(f"results[{i}]: image {r['image_id']} has {len(people)} "
                                    f"people in {ann_file}; give ann_id to say which one")
                ann_id = people[0]["id"]
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"results[{i}]: needs keypoints ({3 * k} numbers) and image_id or "
                            f"ann_id ({e})") from None
        if ann_id not in chosen or score > chosen[ann_id][0]:
            chosen[ann_id] = (score, kp)
    gt = np.array([np.asarray(a["keypoints"], np.float64).reshape(k, 3) for a in anns])
    nan = np.full((k, 3), np.nan)
    pred = np.array([chosen.get(a["id"], (0.0, nan))[1] for a in anns])
    res = pck(pred, gt, alpha)
    res.missing_predictions = sum(1 for a in anns if a["id"] not in chosen)
    return res


def oks_ap(ann_file: str, results: Sequence[dict], out_dir: str | None = None) -> dict:
    """COCO OKS AP of ``results`` over the labelled joints: COCOeval scores only joints with
    v > 0, so on an imported 14-joint set it scores the 12 limb joints with COCO's sigmas,
    scaled by the annotation's ``area`` (the joint-extent box area on LSP)."""
    from odkd.eval.coco_eval import evaluate_coco

    return evaluate_coco(ann_file, results, out_dir)
