"""pycocotools COCOeval (iouType 'keypoints') wrapper -> metrics dict; rescoring + OKS-NMS.

``evaluate_coco`` returns exactly ``METRIC_KEYS``. pycocotools' convention is kept for a metric
with no ground truth in its range (e.g. APm when every person is large): it is ``-1.0``.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections import defaultdict
from typing import Any, Sequence

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from odkd.data.coco import read_person_keypoints
from odkd.errors import DataError
from odkd.eval.nms import oks_nms
from odkd.keypoints import COCO_SIGMAS
from odkd.utils import atomic_write_text

METRIC_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR")
# Indices of METRIC_KEYS in COCOeval.stats for iouType 'keypoints'.
_STATS_INDEX = (0, 1, 2, 3, 4, 5)


def _load_gt(ann_file: str) -> tuple[COCO, int, int]:
    """Load a person_keypoints json into a COCO object. The file is checked by the same rules
    as ``load_coco`` (``read_person_keypoints``); fields pycocotools needs but hand-made files
    may lack are filled in. Returns (coco, num_keypoints, person category id)."""
    checked = read_person_keypoints(ann_file)
    data = checked.data
    data.setdefault("info", {})
    data.setdefault("licenses", [])
    cat_id = checked.category["id"]
    for ann in checked.annotations:
        ann.setdefault("category_id", cat_id)
        ann.setdefault("iscrowd", 0)
        if "num_keypoints" not in ann:
            ann["num_keypoints"] = int(sum(1 for v in ann["keypoints"][2::3] if v > 0))
        if "area" not in ann:
            # COCO's area is the segmentation area; the box area is the closest stand-in.
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, len(checked.category["keypoints"]), cat_id


def _normalise_results(results: Sequence[dict], num_kpts: int, gt_img_ids: set,
                       ann_file: str) -> list[dict]:
    """Plain-Python COCO results (json-serialisable), validated against the ground truth."""
    out = []
    for i, r in enumerate(results):
        try:
            kp = np.asarray(r["keypoints"], dtype=np.float64).ravel()
            item = {"image_id": int(r["image_id"]),
                    "category_id": int(r.get("category_id", 1)),
                    "keypoints": [float(v) for v in kp],
                    "score": float(r["score"])}
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"results[{i}]: needs image_id, keypoints and score ({e})") from None
        if kp.size != 3 * num_kpts:
            raise DataError(f"results[{i}]: {kp.size} keypoint values, {ann_file} has "
                            f"{num_kpts} keypoints (expected {3 * num_kpts})")
        if item["image_id"] not in gt_img_ids:
            raise DataError(f"results[{i}]: image_id {item['image_id']} is not in {ann_file}")
        out.append(item)
    return out


def evaluate_coco_detailed(ann_file: str, results: Sequence[dict], out_dir: str | None = None,
                           img_ids: Sequence[int] | None = None, sigmas=None
                           ) -> tuple[dict[str, float], str]:
    """Like :func:`evaluate_coco` but also returns pycocotools' printed summary text."""
    coco_gt, num_kpts, cat_id = _load_gt(ann_file)
    gt_img_ids = set(coco_gt.getImgIds())
    if sigmas is None:
        if num_kpts != len(COCO_SIGMAS):
            raise DataError(f"{ann_file}: {num_kpts} keypoints per person; COCO OKS sigmas "
                            f"exist for {len(COCO_SIGMAS)} only, so pass sigmas")
        sigmas = COCO_SIGMAS
    sigmas = np.asarray(sigmas, dtype=np.float64)
    if sigmas.shape != (num_kpts,):
        raise DataError(f"{ann_file}: {num_kpts} keypoints but {sigmas.size} OKS sigmas")
    if img_ids is not None:
        img_ids = sorted({int(i) for i in img_ids})
        unknown = [i for i in img_ids if i not in gt_img_ids]
        if unknown:
            raise DataError(f"{ann_file}: evaluated image ids not in the file: {unknown[:5]}")

    res = _normalise_results(results, num_kpts, gt_img_ids, ann_file)
    if out_dir is not None:
        atomic_write_text(os.path.join(out_dir, "results.json"), json.dumps(res))

    if img_ids is not None:
        res_eval = [r for r in res if r["image_id"] in set(img_ids)]
    else:
        res_eval = res
    if not res_eval or (img_ids is not None and not img_ids):
        metrics = {k: 0.0 for k in METRIC_KEYS}
        summary = "no results to evaluate: all metrics 0\n"
    else:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            # loadRes annotates the dicts in place (area, bbox, id): hand it copies.
            coco_dt = coco_gt.loadRes(copy.deepcopy(res_eval))
            ev = COCOeval(coco_gt, coco_dt, "keypoints")
            ev.params.kpt_oks_sigmas = sigmas
            ev.params.catIds = [cat_id]  # the person category only, as load_coco reads it
            if img_ids is not None:
                ev.params.imgIds = img_ids
            ev.evaluate()
            ev.accumulate()
        summary_buf = io.StringIO()
        with contextlib.redirect_stdout(summary_buf):
            ev.summarize()
        summary = summary_buf.getvalue()
        metrics = {k: float(ev.stats[i]) for k, i in zip(METRIC_KEYS, _STATS_INDEX)}

    if out_dir is not None:
        write_metrics(out_dir, metrics)
    return metrics, summary


def write_metrics(out_dir: str, metrics: dict) -> None:
    """``out_dir/metrics.json``, atomically (pycocotools' -1 "no data" is kept as is)."""
    atomic_write_text(os.path.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2) + "\n")


def evaluate_coco(ann_file: str, results: Sequence[dict], out_dir: str | None = None,
                  img_ids: Sequence[int] | None = None, sigmas=None) -> dict[str, float]:
    """COCO keypoint AP of ``results`` (COCO results format: image_id, category_id,
    keypoints (3K floats), score) against ``ann_file``.

    Every image of ``ann_file`` is scored, as the official tools do: a person in an image with
    no result is a miss. ``img_ids`` restricts evaluation to those images (not the official
    protocol; for a deliberate subset only). Empty results give
    all-zero metrics. With ``out_dir``, ``results.json`` and ``metrics.json`` (exactly the keys
    AP, AP50, AP75, APm, APl, AR) are written atomically. ``sigmas``: per-keypoint OKS sigmas
    (default COCO's, which need 17 keypoints).
    """
    return evaluate_coco_detailed(ann_file, results, out_dir, img_ids, sigmas)[0]


def rescore_and_nms(keypoints, box_scores, areas, image_ids, oks_thr: float = 0.9,
                    in_vis_thr: float = 0.2, rescore: bool = True, sigmas=None,
                    category_id: int = 1, return_kept: bool = False):
    """Per-instance predictions -> COCO result dicts, HRNet style.

    ``keypoints`` (N, K, 3): image x, y and keypoint score; ``box_scores``, ``areas`` (crop
    area, used by OKS) and ``image_ids`` (N,). With ``rescore`` the instance score is the box
    score times the mean of the keypoint scores above ``in_vis_thr`` (0 when none is). Then
    OKS-NMS at ``oks_thr`` runs per image (``oks_thr >= 1`` keeps everything).
    Results come grouped by image id, highest score first. With ``return_kept`` the return
    value is ``(results, kept)``, ``kept[j]`` the input row of ``results[j]``.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    n = kpts.shape[0]
    if kpts.ndim != 3 or kpts.shape[2] != 3:
        raise ValueError(f"rescore_and_nms expects (N, K, 3) keypoints, got {kpts.shape}")
    box_scores = np.asarray(box_scores, dtype=np.float64).reshape(n)
    areas = np.asarray(areas, dtype=np.float64).reshape(n)
    image_ids = np.asarray(image_ids).reshape(n)
    if sigmas is None:
        if kpts.shape[1] != len(COCO_SIGMAS):
            raise ValueError(f"{kpts.shape[1]} keypoints: pass OKS sigmas (COCO's are for 17)")
        sigmas = COCO_SIGMAS
    if rescore:
        kscore = kpts[..., 2]
        above = kscore > in_vis_thr
        cnt = above.sum(axis=1)
        mean = np.where(cnt > 0, (kscore * above).sum(axis=1) / np.maximum(cnt, 1), 0.0)
        scores = box_scores * mean
    else:
        scores = box_scores

    by_image: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        by_image[int(image_ids[i])].append(i)
    out: list[dict[str, Any]] = []
    kept: list[int] = []
    for img_id in sorted(by_image):
        idx = by_image[img_id]
        keep = oks_nms([kpts[i] for i in idx], scores[idx], areas[idx], thr=oks_thr,
                       sigmas=sigmas)
        for j in keep:
            i = idx[j]
            out.append({"image_id": img_id, "category_id": int(category_id),
                        "keypoints": [float(v) for v in kpts[i].ravel()],
                        "score": float(scores[i])})
            kept.append(int(i))
    return (out, kept) if return_kept else out
