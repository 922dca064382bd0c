"""What every importer shares: the COCO person category, image / annotation entries, masks as
RLE, the counts printed by ``odkd data import`` and the one atomic write of the json."""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from odkd.errors import DataError
from odkd.keypoints import COCO_KEYPOINTS, COCO_SKELETON
from odkd.utils import atomic_write_text

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NUM_COCO = len(COCO_KEYPOINTS)


def person_category() -> dict:
    return {"id": 1, "name": "person", "supercategory": "person",
            "keypoints": list(COCO_KEYPOINTS), "skeleton": [list(s) for s in COCO_SKELETON]}


@dataclass
class ImportResult:
    """A COCO person_keypoints dict plus where its images are and what was left out.

    ``image_root``: the folder the images' ``file_name`` are relative to (pass it to
    ``odkd eval --images``). ``skipped``: reason -> count of things not imported.
    """
    coco: dict
    image_root: str
    skipped: Counter = field(default_factory=Counter)

    def counts(self) -> dict:
        anns = self.coco["annotations"]
        return {
            "images": len(self.coco["images"]),
            "people": len(anns),
            "labelled_joints": int(sum(a["num_keypoints"] for a in anns)),
            "visible_joints": int(sum(1 for a in anns for v in a["keypoints"][2::3] if v == 2)),
            "masks": int(sum(1 for a in anns if a.get("segmentation"))),
            "skipped": dict(sorted(self.skipped.items())),
        }

    def summary(self) -> str:
        c = self.counts()
        text = (f"{c['images']} images, {c['people']} people, {c['labelled_joints']} labelled "
                f"joints ({c['visible_joints']} visible), {c['masks']} masks")
        if c["skipped"]:
            text += "; left out: " + ", ".join(f"{n} {k}" for k, n in c["skipped"].items())
        return text


def new_coco(description: str, source: str) -> dict:
    return {"info": {"description": description, "source": os.path.abspath(source)},
            "licenses": [], "images": [], "annotations": [], "categories": [person_category()]}


def image_entry(image_id: int, file_name: str, width: int, height: int, **extra) -> dict:
    return {"id": int(image_id), "file_name": file_name, "width": int(width),
            "height": int(height), **extra}


def annotation_entry(ann_id: int, image_id: int, bbox, keypoints: np.ndarray | None = None,
                     segmentation: dict | None = None, area: float | None = None,
                     **extra) -> dict:
    """One person. ``keypoints`` (17, 3) in COCO order (None: unlabelled, all zero);
    ``area`` defaults to the mask area, else the box area (what COCOeval scales OKS by)."""
    kp = np.zeros((NUM_COCO, 3)) if keypoints is None else np.asarray(keypoints, np.float64)
    if kp.shape != (NUM_COCO, 3):
        raise ValueError(f"keypoints must be ({NUM_COCO}, 3), got {kp.shape}")
    x, y, w, h = (float(v) for v in bbox)
    if area is None:
        area = float(segmentation["area"]) if segmentation else w * h
    ann = {"id": int(ann_id), "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
           "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
           "area": round(float(area), 2),
           "keypoints": [round(float(v), 2) if i % 3 < 2 else int(v)
                         for i, v in enumerate(kp.ravel())],
           "num_keypoints": int((kp[:, 2] > 0).sum())}
    if segmentation:
        ann["segmentation"] = {"size": segmentation["size"], "counts": segmentation["counts"]}
    ann.update(extra)
    return ann


def add_detections(result: ImportResult, detect, detector: str) -> None:
    """Person boxes for every image of an unlabelled set from ``detect`` (RGB image ->
    (boxes x, y, w, h, scores)); images where it finds nobody stay in the set without
    annotations and are counted."""
    coco = result.coco
    anns = coco["annotations"]
    nobody = 0
    for im in coco["images"]:
        path = os.path.join(result.image_root, im["file_name"])
        rgb = cv2.cvtColor(read_image(path, "image"), cv2.COLOR_BGR2RGB)
        boxes, scores = detect(rgb)
        if len(boxes) == 0:
            nobody += 1
        for box, score in zip(np.asarray(boxes, np.float64), np.asarray(scores, np.float64)):
            anns.append(annotation_entry(len(anns) + 1, im["id"], box, None,
                                         score=round(float(score), 4),
                                         box_source=f"detector:{detector}"))
    if nobody:
        result.skipped["images where the detector found no person (no annotation)"] = nobody


def mask_to_rle(mask: np.ndarray) -> dict:
    """Binary (H, W) mask -> COCO compressed RLE (json-ready) with its pixel ``area``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii"),
            "area": float(mask_utils.area(rle))}


def mask_box(mask: np.ndarray) -> list[float] | None:
    """Tight [x, y, w, h] of a binary mask's pixels (pixel centres at integers), or None."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1)]


def read_image(path: str, what: str, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    """Decode an image; DataError naming it when it is missing or not an image."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    img = cv2.imread(path, flags)
    if img is None:
        raise DataError(f"{path}: not a readable image ({what})")
    return img


def check_out_path(out: str) -> str:
    if not out:
        raise DataError("--out: give the json file to write")
    if os.path.isdir(out):
        raise DataError(f"{out}: --out is a folder; give the json file to write")
    return out


def write_coco(result: ImportResult, out: str) -> str:
    """Write the json atomically; ``info.image_root`` is stored relative to the json's folder
    so a dataset folder can move with its json."""
    check_out_path(out)
    out_dir = os.path.dirname(os.path.abspath(out))
    coco = dict(result.coco)
    coco["info"] = dict(coco.get("info", {}),
                        image_root=os.path.relpath(os.path.abspath(result.image_root), out_dir))
    atomic_write_text(out, json.dumps(coco) + "\n")
    return out
