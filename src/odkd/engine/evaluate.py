"""Evaluation: model (or GT oracle) heatmaps -> decode -> rescoring + OKS-NMS -> COCOeval.

The oracle path feeds heatmaps encoded from the ground truth through exactly the same
decode/NMS/eval code a model uses, so it measures the pipeline's quantisation ceiling.
"""
from __future__ import annotations

import json
import os
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import pycocotools.mask as mask_utils
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from odkd.codec import PROTOCOLS, HeatmapCodec, predict_heatmaps  # noqa: F401 (config.py cites PROTOCOLS here)
from odkd.config import Config, ConfigError
from odkd.data.coco import (CocoPoseSet, PersonRecord, detections_summary, format_skips,
                            load_coco, load_detections)
from odkd.data.dataset import TopDownDataset
from odkd.engine import dist as odist
from odkd.errors import DataError, OdkdError
from odkd.eval.coco_eval import evaluate_coco, rescore_and_nms, write_metrics
from odkd.models.fold import scoring_model


PCK_THR = 0.1
# eval.protocol: "odkd" (default, exact geometry) or "hrnet" (the official HRNet test rules, to
# reproduce its numbers for the same checkpoint). The differences, all in box handling,
# decoding and the flip shift (docs/method.md "Evaluation"):
#   GT boxes         odkd [x, x + w) clipped to [0, W]; hrnet w - 1, h - 1, clipped to W-1, H-1
#   detection boxes  odkd clipped to the image (dropped when outside); hrnet used as given
#   quarter offset   odkd per axis where 1 <= x <= w-2; hrnet both axes, 2 <= x, y <= w-2, h-2
#   max <= 0         odkd keeps the argmax; hrnet puts the joint at heatmap (0, 0)
#   flip shift       odkd (stride - 1) / stride px (exact); hrnet 1 px
# The last three are HeatmapCodec's (codec.PROTOCOLS), the box rules are applied here.
AMP_MODES = ("none", "bf16")


def check_eval_config(cfg: Config) -> HeatmapCodec:
    """ConfigError for eval settings that would otherwise fail (or be ignored) mid-run; returns
    the codec of ``cfg`` (it checks decoder and protocol)."""
    if cfg.eval.amp not in AMP_MODES:
        raise ConfigError(f"eval.amp: expected one of {', '.join(AMP_MODES)}, got "
                          f"{cfg.eval.amp!r}")
    return HeatmapCodec.from_config(cfg)


def attach_gt_to_detections(dets: list[PersonRecord], gt: list[PersonRecord]
                            ) -> list[PersonRecord]:
    """Oracle with detection boxes: give each detection the keypoints of the GT person it
    overlaps most (IoU >= 0.1), so the oracle heatmaps are encoded inside the detection crop."""
    by_image: dict[int, list[PersonRecord]] = {}
    for r in gt:
        by_image.setdefault(r.image_id, []).append(r)
    out = []
    for d in dets:
        cands = by_image.get(d.image_id, [])
        if cands:
            # pycocotools' box IoU (xywh boxes, no crowd regions)
            ious = mask_utils.iou([list(d.bbox)], [list(g.bbox) for g in cands],
                                  [0] * len(cands))[0]
            j = int(np.argmax(ious))
            if ious[j] >= 0.1:
                best = cands[j]
                d = replace(d, keypoints=best.keypoints.copy(), segmentation=best.segmentation)
        out.append(d)
    return out


def build_eval_records(cfg: Config, ann_file: str, image_dir: str, boxes: str,
                       oracle: bool = False, skipped: dict | None = None
                       ) -> tuple[CocoPoseSet, list[PersonRecord]]:
    """(GT set, records to predict) for ``boxes`` 'gt' or a detection file, under
    ``cfg.eval.protocol``'s box rules. DataError when there is nothing to evaluate: a score of
    0 for an empty set would look like a result. ``skipped`` (when given) receives the
    detection skip counts."""
    check_eval_config(cfg)
    hrnet = cfg.eval.protocol == "hrnet"
    coco = load_coco(ann_file, image_dir, train=False, flip_pairs=cfg.data.flip_pairs,
                     upper_body_ids=cfg.data.upper_body_ids,
                     box_rule="hrnet" if hrnet else "odkd")
    if not coco.records:
        raise DataError(f"{ann_file}: field annotations: no person to evaluate (needs a "
                        "non-crowd person with labelled keypoints and a box inside its image)"
                        + format_skips(coco.skipped))
    if boxes == "gt":
        return coco, list(coco.records)
    if not os.path.exists(boxes):
        raise OdkdError(f"--boxes: detection file not found: {boxes} (or use 'gt')")
    counts: dict[str, int] = {} if skipped is None else skipped
    dets = load_detections(boxes, coco, cfg.data.det_score_thr, skipped=counts, clip=not hrnet)
    if not dets:
        raise DataError(f"{boxes}: field bbox: no usable detection box "
                        f"({detections_summary(boxes, dets, counts)})")
    if oracle:
        dets = attach_gt_to_detections(dets, coco.records)
    return coco, dets


def run_evaluation(cfg: Config, model, coco: CocoPoseSet, records: list[PersonRecord],
                   device: torch.device, out_dir: str | None = None, oracle: bool = False,
                   progress: bool = True, desc: str = "eval",
                   codec: HeatmapCodec | None = None) -> dict:
    """Predict every record (sharded across ranks under torchrun), then COCO-evaluate on rank 0.

    ``codec`` (default: from ``cfg``) encodes the oracle's heatmaps, undoes the flip test and
    decodes; inference takes the same object (``TopDownPredictor.codec``).

    Every image of ``coco.ann_file`` is scored (as the official tools do), so people in
    images without a box count as misses. Returns the metrics dict (AP, AP50, AP75, APm, APl,
    AR, plus PCK with GT boxes) on every rank; ``metrics.json`` holds the same keys.
    """
    cfg_codec = check_eval_config(cfg)
    codec = codec or cfg_codec
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) \
        if torch.distributed.is_initialized() else (0, 1)
    shard = records[rank::world]
    ds = TopDownDataset(shard, coco.flip_pairs, coco.upper_body_ids, cfg.data, train=False,
                        return_image_mask=False, codec=codec)
    loader = DataLoader(ds, batch_size=cfg.eval.batch_size, shuffle=False,
                        num_workers=cfg.data.workers, pin_memory=device.type == "cuda")
    # torch models are scored through an eval copy with BatchNorm folded, in channels_last
    # (1.6x a CPU flip-test forward; odkd.models.fold, the rule inference uses too); the
    # model itself, possibly mid-training, is left as it is.
    channels_last = False
    if model is not None:
        model, channels_last = scoring_model(model, device)
    kpts, box_scores, areas, image_ids, pck_hits = [], [], [], [], []
    it = tqdm(loader, desc=desc, disable=not (progress and rank == 0), leave=False)
    for batch in it:
        if oracle:
            heat = batch["heatmap"].float()
        else:
            images = batch["image"].to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            # eval.amp, not train.amp: a bf16-trained model is still scored in fp32.
            amp = torch.autocast(device.type, dtype=torch.bfloat16) \
                if cfg.eval.amp == "bf16" else nullcontext()
            with amp:
                heat, _ = predict_heatmaps(model, images, codec, coco.flip_pairs,
                                           cfg.eval.flip_test)
            heat = heat.float().cpu()
        centers, scales = batch["center"].numpy(), batch["scale"].numpy()
        preds, maxvals = codec.decode(heat.numpy(), centers, scales)
        kpts.append(np.concatenate([preds, maxvals[..., None]], axis=2))
        box_scores.append(batch["score"].numpy())
        areas.append(scales[:, 0] * scales[:, 1])  # HRNet's crop-area convention for OKS
        image_ids.append(batch["image_id"].numpy())
        pck_hits.append(pck_hits_batch(preds, batch["keypoints"].numpy(), scales,
                                       cfg.data.padding))
    k = coco.num_joints
    part = (np.concatenate(kpts) if kpts else np.zeros((0, k, 3)),
            np.concatenate(box_scores) if box_scores else np.zeros(0),
            np.concatenate(areas) if areas else np.zeros(0),
            np.concatenate(image_ids) if image_ids else np.zeros(0, dtype=np.int64),
            np.concatenate(pck_hits) if pck_hits else np.zeros(0))

    gathered = odist.all_gather_objects(part)
    metrics = None
    if rank == 0:
        cat = [np.concatenate([g[i] for g in gathered]) for i in range(5)]
        metrics = score_instances(cfg, coco, *cat, out_dir=out_dir)
    return odist.broadcast_object(metrics)


def score_instances(cfg: Config, coco: CocoPoseSet, keypoints, box_scores, areas, image_ids,
                    pck_hits, out_dir: str | None = None) -> dict:
    """Predicted people (image keypoints with scores (N, K, 3), box scores, crop areas, image
    ids) -> rescoring, OKS-NMS, COCOeval and the bbox PCK of :func:`pck_hits_batch`; models
    and teachers are scored here alike."""
    results = rescore_and_nms(keypoints, box_scores, areas, image_ids,
                              oks_thr=cfg.eval.oks_nms_thr, in_vis_thr=cfg.eval.in_vis_thr,
                              rescore=cfg.eval.rescore, category_id=coco.category_id)
    metrics = evaluate_coco(coco.ann_file, results, out_dir=out_dir)
    # PCK needs GT keypoints in the crop, so detection boxes (no keypoints) have none.
    if pck_hits.size:
        metrics["PCK"] = float(pck_hits.mean())
        if out_dir is not None:
            write_metrics(out_dir, metrics)
    return metrics


def run_teacher_evaluation(cfg: Config, teacher, coco: CocoPoseSet,
                           records: list[PersonRecord], out_dir: str | None = None,
                           progress: bool = True) -> dict:
    """COCO evaluation of a real-image teacher (:mod:`odkd.teachers`) on ``records``: each box
    becomes a crop at the teacher's own aspect ratio (``box_to_center_scale`` with
    ``data.padding``), which the teacher re-crops from the source image at its input size; its
    image keypoints and confidences then go through :func:`score_instances`, as a model's do.
    One process, one crop at a time (the runtimes take batch 1)."""
    from odkd.data.dataset import read_image
    from odkd.geometry import box_to_center_scale

    kp_t = getattr(teacher, "keypoints_teacher", teacher)
    aspect = kp_t.input_size[0] / kp_t.input_size[1]
    k = coco.num_joints
    kpts, box_scores, areas, image_ids, pck_hits = [], [], [], [], []
    path, image = None, None
    for rec in tqdm(records, desc="eval", disable=not progress, leave=False):
        if rec.file_name != path:
            path, image = rec.file_name, read_image(rec.file_name)
        center, scale = box_to_center_scale(rec.bbox, aspect, cfg.data.padding)
        kp = kp_t.predict(image, [center], [scale])[0]["keypoints_image"]
        kpts.append(kp)
        box_scores.append(rec.score)
        areas.append(float(scale[0] * scale[1]))   # the crop area, as for models
        image_ids.append(rec.image_id)
        pck_hits.append(pck_hits_batch(kp[None, :, :2], rec.keypoints[None].astype(np.float64),
                                       scale[None], cfg.data.padding))
    return score_instances(cfg, coco, np.array(kpts, dtype=np.float64).reshape(-1, k, 3),
                           np.array(box_scores), np.array(areas),
                           np.array(image_ids, dtype=np.int64),
                           np.concatenate(pck_hits) if pck_hits else np.zeros(0),
                           out_dir=out_dir)


def pck_hits_batch(preds: np.ndarray, gt: np.ndarray, scales: np.ndarray, padding: float,
                   thr: float = PCK_THR) -> np.ndarray:
    """Per labelled keypoint: 1 when the prediction lies within ``thr`` x the longer side of
    the person box (the aspect-fixed box: crop side / padding). PCK (as in mmpose's bbox-normalised PCK) is
    reported beside COCO AP because it still separates models whose AP is near 0.
    Ground-truth boxes only: detection crops carry no keypoints and give no hits."""
    labelled = gt[..., 2] > 0
    if not labelled.any():
        return np.zeros(0)
    box_side = scales.max(axis=1) / padding
    err = np.linalg.norm(preds - gt[..., :2], axis=2) / box_side[:, None]
    return (err[labelled] <= thr).astype(np.float64)


def format_metrics(m: dict) -> str:
    """Table of the metrics; pycocotools' -1 ("no person in this size range") prints n/a."""
    keys = ["AP", "AP50", "AP75", "APm", "APl", "AR"] + (["PCK"] if "PCK" in m else [])
    head = " | ".join(f"{k:>6}" for k in keys)
    vals = " | ".join("   n/a" if m[k] is None or m[k] < 0 or m[k] != m[k] else f"{m[k]:6.4f}"
                      for k in keys)
    return f"{head}\n{vals}"
