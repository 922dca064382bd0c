"""Per-person evaluation of teachers (and students, through the checkpoint teacher) on a
COCO-format set under the protocol of :mod:`odkd.eval.pck`: one crop per annotated person on
the protocol box, PCK@0.2 over the limb joints, how well the confidence ranks correct joints,
mask IoU where the annotation has a segmentation, and COCO-format results for OKS AP.

``odkd teachers eval`` and ``odkd eval --metric pck`` both run :func:`score_people`, so a
teacher and a student are scored by the same code.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np


def confidence_auc(pred: np.ndarray, gt: np.ndarray, alpha: float = 0.2) -> float:
    """How well the teacher's confidence tells its correct limb joints from its wrong ones:
    the probability that a correct joint (PCK@alpha) has a higher confidence than a wrong one
    (ROC AUC by ranks; ties count half). A distillation loss weighted by confidence needs this
    high; PCK does not look at confidence at all."""
    from odkd.eval.pck import LIMB_IDS, TORSO
    from odkd.keypoints import COCO_KEYPOINTS

    a, b = (COCO_KEYPOINTS.index(n) for n in TORSO)
    norm = np.linalg.norm(gt[:, a, :2] - gt[:, b, :2], axis=1)
    dist = np.linalg.norm(pred[:, LIMB_IDS, :2] - gt[:, LIMB_IDS, :2], axis=2)
    scored = (gt[:, LIMB_IDS, 2] > 0) & (norm[:, None] > 0)
    hit = (dist <= alpha * norm[:, None])[scored]
    conf = pred[:, LIMB_IDS, 2][scored]
    n_pos, n_neg = int(hit.sum()), int((~hit).sum())
    if not n_pos or not n_neg:
        return float("nan")
    # average ranks (ties share theirs), then Mann-Whitney U / (n_pos n_neg)
    order = np.argsort(conf, kind="mergesort")
    ranks = np.empty(len(conf))
    sc = conf[order]
    i = 0
    while i < len(sc):
        j = i
        while j + 1 < len(sc) and sc[j + 1] == sc[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[hit].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of a probability mask (> 0.5) and a {0, 1} mask; 1 when both are empty."""
    p, g = pred > 0.5, gt > 0.5
    union = (p | g).sum()
    return float((p & g).sum() / union) if union else 1.0


@dataclass
class PeopleScores:
    """What :func:`score_people` collected, per teacher name."""
    people: int                                      # annotations looked at
    gts: np.ndarray                                  # (P, K, 3) of the labelled people
    preds: dict[str, np.ndarray] = field(default_factory=dict)    # (P, K, 3) image x, y, conf
    results: dict[str, list[dict]] = field(default_factory=dict)  # COCO results (+ ann_id)
    ious: dict[str, list[float]] = field(default_factory=dict)
    wall: float = 0.0


def protocol_crop(a: dict, joints_k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(center, scale) of the protocol box of annotation ``a``: from its ``lsp_joints`` when
    present (all 14 LSP joints, head top included), else its keypoints, else the same rule on
    its box's corners; None when it has none of them."""
    from odkd.eval.pck import protocol_box

    gt = np.asarray(a["keypoints"], np.float64).reshape(joints_k, 3)
    joints = np.asarray(a["lsp_joints"], np.float64).reshape(-1, 3) \
        if "lsp_joints" in a else gt
    if (joints[:, 2] > 0).any():
        x, y, w, h = protocol_box(joints)
    elif a.get("bbox") and a["bbox"][2] > 0 and a["bbox"][3] > 0:
        bx, by, bw, bh = a["bbox"]
        x, y, w, h = protocol_box(np.array([[bx, by], [bx + bw, by + bh]]))
    else:
        return None
    return np.array([x + w / 2, y + h / 2]), np.array([w, h])


def image_folder(f, ann_file: str, images: str | None) -> str:
    """``images``, or the json's ``info.image_root`` relative to the json."""
    from odkd.errors import DataError

    if images is not None:
        return images
    root = f.data.get("info", {}).get("image_root")
    if root is None:
        raise DataError(f"{ann_file}: field info.image_root: absent; give --images")
    return os.path.join(os.path.dirname(os.path.abspath(ann_file)), root)


def score_people(ann_file: str, images: str | None, teachers: dict, limit: int | None = None,
                 mask_size: int = 64, progress: bool = True) -> PeopleScores:
    """Run each teacher (``{name: teacher}``; a composite gives keypoints and mask from its
    two) once per annotated person on the protocol crop. Several teachers take turns on each
    person, so a slower stretch of the machine falls on all of them alike."""
    import cv2

    from odkd.data.coco import read_person_keypoints
    from odkd.data.targets import ann_to_mask, warp_mask
    from odkd.errors import DataError
    from odkd.geometry import get_affine_transform

    f = read_person_keypoints(ann_file)
    images = image_folder(f, ann_file, images)
    anns = [a for a in f.annotations if not a.get("iscrowd", 0)]
    anns = sorted(anns, key=lambda a: (a["image_id"], a["id"]))[:limit]
    if not anns:
        raise DataError(f"{ann_file}: no person annotations to score")
    pairs = {}
    for name, t in teachers.items():
        kp_t = getattr(t, "keypoints_teacher", t)
        pairs[name] = (kp_t, getattr(t, "mask_teacher", t if t.has_mask else None))
    k = len(f.category["keypoints"])
    size = (mask_size, mask_size)
    preds: dict[str, list] = {n: [] for n in pairs}
    ious: dict[str, list[float]] = {n: [] for n in pairs}
    gts, results = [], {n: [] for n in pairs}
    t0 = time.perf_counter()
    image_id, image = None, None
    for i, a in enumerate(anns):
        if a["image_id"] != image_id:
            path = os.path.join(images, f.images[a["image_id"]]["file_name"])
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                raise DataError(f"{ann_file}: image {a['image_id']} field file_name: "
                                f"{path} is missing or not an image")
            image_id, image = a["image_id"], np.ascontiguousarray(bgr[:, :, ::-1])
        gt = np.asarray(a["keypoints"], np.float64).reshape(k, 3)
        labelled = bool((gt[:, 2] > 0).any())
        crop = protocol_crop(a, k)
        if crop is None:
            continue
        center, scale = crop
        gt_mask = None
        if a.get("segmentation") and any(m is not None for _, m in pairs.values()):
            # the student's mask target: the instance mask in the crop's heatmap frame
            img = f.images[a["image_id"]]
            full = ann_to_mask(a["segmentation"], img["height"], img["width"],
                               where=f"{ann_file}: annotation id {a['id']}")
            gt_mask = warp_mask(full, get_affine_transform(center, scale, 0.0, size), size)
        if labelled:
            gts.append(gt)
        for name, (kp_t, mask_t) in pairs.items():
            if not labelled and (gt_mask is None or mask_t is None):
                continue
            p = kp_t.predict(image, [center], [scale])[0]
            if labelled:
                kp = p["keypoints_image"]
                preds[name].append(kp)
                results[name].append({"image_id": a["image_id"], "ann_id": a["id"],
                                      "category_id": 1,
                                      "keypoints": [round(float(v), 2) for v in kp.ravel()],
                                      "score": float(kp[:, 2].mean())})
            if gt_mask is not None and mask_t is not None:
                pm = p if mask_t is kp_t else mask_t.predict(image, [center], [scale])[0]
                m = kp_t.to_student(pm, center, scale, 0.0, size)["mask"]
                ious[name].append(mask_iou(m, gt_mask))
        if progress and (i + 1) % 200 == 0:
            print(f"  {i + 1}/{len(anns)} people", file=sys.stderr)
    if not gts and not any(ious.values()):
        raise DataError(f"{ann_file}: nothing to score: no person has labelled joints or (for a "
                        "mask teacher) a segmentation")
    return PeopleScores(people=len(anns), gts=np.array(gts),
                        preds={n: np.array(v) for n, v in preds.items()}, results=results,
                        ious=ious, wall=time.perf_counter() - t0)


def teacher_report(name: str, teacher, scores: PeopleScores, alpha: float = 0.2,
                   mask_size: int = 64) -> tuple[dict, list[str]]:
    """(report dict, summary parts) of one teacher: PCK, confidence AUC, mask IoU, latency."""
    from odkd.eval.pck import pck

    kp_t = getattr(teacher, "keypoints_teacher", teacher)
    mask_t = getattr(teacher, "mask_teacher", teacher if teacher.has_mask else None)
    report: dict = {"teacher": name}
    for key in ("confidence", "keypoints"):   # BlazePose's choices, when it has them
        v = getattr(kp_t.codec, key, None)
        if isinstance(v, str):
            report[key] = v
    parts = []
    if len(scores.gts):
        pred = scores.preds[name]
        res = pck(pred, scores.gts, alpha)
        auc = confidence_auc(pred, scores.gts, alpha)
        report.update(res.as_dict(), confidence_auc=auc)
        parts.append(f"{res.summary()}; confidence AUC {auc:.3f}")
    if scores.ious[name]:
        iou = float(np.mean(scores.ious[name]))
        report.update(mask_iou=iou, mask_people=len(scores.ious[name]), mask_size=mask_size)
        parts.append(f"mask IoU {iou:.3f} over {len(scores.ious[name])} people "
                     f"({mask_size}x{mask_size} crop frame, > 0.5)")
    if parts:
        secs = np.array(kp_t.model_seconds + (mask_t.model_seconds if mask_t not in (None, kp_t)
                                              else []))
        report.update(latency_ms_mean=float(1000 * secs.mean()),
                      latency_ms_median=float(1000 * np.median(secs)))
    return report, parts
