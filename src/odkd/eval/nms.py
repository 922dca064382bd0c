"""Object keypoint similarity (OKS) and greedy OKS-NMS over pose instances of one image.

Same definition as pycocotools' ``computeOks`` (and HRNet's ``oks_nms``), written with numpy
because pycocotools only exposes it inside COCOeval.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from odkd.keypoints import COCO_SIGMAS


def oks_iou(g: np.ndarray, d: np.ndarray, area_g: float, area_d, sigmas=COCO_SIGMAS,
            vis_thr: float | None = None) -> np.ndarray:
    """OKS between one instance ``g`` (K, 3) and ``d`` (M, K, 3), areas ``area_g`` and
    ``area_d`` (M,). When ``vis_thr`` is given only joints whose third column exceeds it in both
    instances count; an instance with no such joint gets OKS 0. Returns (M,) float64.
    """
    g = np.asarray(g, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64).reshape(-1, *g.shape)
    sig = np.asarray(sigmas, dtype=np.float64)
    if sig.shape != (g.shape[0],):
        raise ValueError(f"oks_iou: {sig.shape[0]} sigmas for {g.shape[0]} keypoints")
    variances = (2.0 * sig) ** 2
    area_d = np.broadcast_to(np.asarray(area_d, dtype=np.float64), (d.shape[0],))
    scale = (float(area_g) + area_d) / 2.0 + np.spacing(1)                 # (M,)
    sq = ((d[..., 0] - g[None, :, 0]) ** 2 + (d[..., 1] - g[None, :, 1]) ** 2)  # (M, K)
    e = sq / variances[None, :] / scale[:, None] / 2.0
    if vis_thr is None:
        sel = np.ones_like(e, dtype=bool)
    else:
        sel = (g[None, :, 2] > vis_thr) & (d[..., 2] > vis_thr)
    count = sel.sum(axis=1)
    total = np.where(sel, np.exp(-e), 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def oks_nms(kpts_list: Sequence[np.ndarray], scores, areas, thr: float = 0.9,
            sigmas=COCO_SIGMAS, vis_thr: float | None = None) -> list[int]:
    """Greedy NMS: repeatedly keep the highest-scoring instance and drop every remaining one
    whose OKS with it exceeds ``thr``. Returns kept indices, highest score first."""
    n = len(kpts_list)
    if n == 0:
        return []
    kpts = np.stack([np.asarray(k, dtype=np.float64) for k in kpts_list])
    scores = np.asarray(scores, dtype=np.float64).reshape(n)
    areas = np.asarray(areas, dtype=np.float64).reshape(n)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        if rest.size == 0:
            break
        oks = oks_iou(kpts[i], kpts[rest], areas[i], areas[rest], sigmas, vis_thr)
        order = rest[oks <= thr]
    return keep
