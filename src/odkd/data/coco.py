"""Parse and validate COCO ``person_keypoints`` json (COCO, OCHuman, custom sets) and COCO
detection results into flat :class:`PersonRecord` lists.

Everything a user can get wrong in these files raises :class:`odkd.errors.DataError` naming the
file and the field. People we deliberately leave out (crowds, unlabelled people when training,
boxes outside the image) are not errors: they are counted in ``skipped`` and reported by
:meth:`CocoPoseSet.summary`.

pycocotools' ``COCO`` class is not used for parsing because it validates nothing (a malformed
annotation surfaces later as a KeyError deep inside training); evaluation still uses it.
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from odkd.errors import DataError
from odkd.keypoints import flip_pairs_from_names, upper_body_ids_from_names

# Human-readable names of the skip reasons used in ``summary()``.
SKIP_REASONS = {
    "crowd": "crowd",
    "no_keypoints": "no keypoints",
    "degenerate_bbox": "degenerate bbox",
    "bbox_outside_image": "bbox outside image",
    "zero_area": "zero area",
    "other_category": "other category",
    "low_score": "below score threshold",
    "unknown_image": "unknown image",
}


@dataclass
class PersonRecord:
    """One person instance: a GT annotation or a detection box."""

    image_id: int
    file_name: str                  # absolute path of the image
    width: int
    height: int
    bbox: list[float]               # [x, y, w, h], clipped to the image
    keypoints: np.ndarray           # (K, 3) float32: x, y, visibility (zeros for detections)
    num_keypoints: int
    area: float
    segmentation: Any               # raw json (polygons or RLE) or None
    ann_id: int                     # annotation id (detections: index in the results file)
    score: float = 1.0              # 1.0 for GT boxes, detector score otherwise
    iscrowd: int = 0
    source: str = ""                # the json file the record came from (for error messages)


@dataclass
class CocoPoseSet:
    ann_file: str
    image_dir: str
    images: dict[int, dict]         # id -> {"id", "file_name", "path", "width", "height"}
    keypoint_names: list[str]
    skeleton: list[list[int]]       # 1-based pairs, as in the json
    flip_pairs: list[list[int]]
    upper_body_ids: list[int]
    records: list[PersonRecord]
    skipped: dict[str, int] = field(default_factory=dict)
    category_id: int = 1            # id of the person category in this file

    @property
    def num_joints(self) -> int:
        return len(self.keypoint_names)

    def summary(self) -> str:
        """E.g. ``test_coco.json: 14 persons from 4 images (skipped: 2 crowd, 1 no keypoints)``."""
        n_img = len({r.image_id for r in self.records})
        text = f"{os.path.basename(self.ann_file)}: {len(self.records)} persons from {n_img} images"
        return text + format_skips(self.skipped)


def detections_summary(det_file: str, records: list[PersonRecord],
                       skipped: dict[str, int]) -> str:
    """E.g. ``dets.json: 90 boxes from 4 images (skipped: 28 below score threshold)``."""
    n_img = len({r.image_id for r in records})
    return (f"{os.path.basename(det_file)}: {len(records)} boxes from {n_img} images"
            + format_skips(skipped))


def format_skips(skipped: dict[str, int]) -> str:
    parts = [f"{n} {SKIP_REASONS.get(k, k.replace('_', ' '))}"
             for k, n in sorted(skipped.items()) if n]
    return f" (skipped: {', '.join(parts)})" if parts else ""


# ----------------------------------------------------------------------------------- helpers

def read_json(path: str, what: str) -> Any:
    """Parse a JSON file; DataError naming the file (and line/column) when it can't."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
                        ) from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 JSON file ({e.reason})") from None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


BOX_RULES = ("odkd", "hrnet")


def clip_box(box: list[float], width: int, height: int, rule: str = "odkd"
             ) -> tuple[list[float] | None, str]:
    """Clip ``[x, y, w, h]`` to the image; returns (box, "") or (None, skip reason).

    ``rule="odkd"``: the box covers [x, x + w) and is clipped to [0, width].
    ``rule="hrnet"``: the official HRNet GT rule: x2 = min(width - 1, max(0, x) + max(0, w - 1))
    (so the box shrinks by one pixel, measured from the clipped x), kept when x2 >= x1.
    """
    x, y, w, h = box
    if rule == "hrnet":
        x1, y1 = max(0.0, x), max(0.0, y)
        x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
        y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
        if x2 < x1 or y2 < y1:
            return None, "bbox_outside_image"
        if x2 == x1 and y2 == y1:  # zero crop size: no affine exists
            return None, "degenerate_bbox"
        return [x1, y1, x2 - x1, y2 - y1], ""
    if w <= 0 or h <= 0:
        return None, "degenerate_bbox"
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = min(float(width), x + w), min(float(height), y + h)
    if x2 <= x1 or y2 <= y1:
        return None, "bbox_outside_image"
    return [x1, y1, x2 - x1, y2 - y1], ""


def _check_box(box: Any, where: str) -> list[float]:
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_num(v) for v in box):
        raise DataError(f"{where} field bbox: expected [x, y, w, h] of 4 numbers, got "
                        f"{_short(box)}")
    return [float(v) for v in box]


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


def _person_category(data: dict, path: str) -> dict:
    cats = data["categories"]
    with_kpts = [c for c in cats if isinstance(c, dict) and "keypoints" in c]
    if not with_kpts:
        raise DataError(f"{path}: field categories: no category with 'keypoints' names "
                        "(expected a COCO person_keypoints file)")
    person = [c for c in with_kpts if c.get("name") == "person"]
    cat = (person or with_kpts)[0]
    if not _is_int(cat.get("id")):
        raise DataError(f"{path}: field categories[].id: expected an integer, got "
                        f"{_short(cat.get('id'))}")
    names = cat["keypoints"]
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) for n in names)):
        raise DataError(f"{path}: field categories[].keypoints: expected a non-empty list of "
                        f"keypoint names, got {_short(names)}")
    return cat


def _check_pairs(pairs: Any, k: int, field_name: str) -> list[list[int]]:
    ok = isinstance(pairs, (list, tuple)) and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_int(i) and 0 <= i < k for i in p)
        for p in pairs)
    if not ok:
        raise DataError(f"{field_name}: expected [[left, right], ...] with 0-based indices < {k}, "
                        f"got {_short(pairs)}")
    return [[int(a), int(b)] for a, b in pairs]


def _check_ids(ids: Any, k: int, field_name: str) -> list[int]:
    if not isinstance(ids, (list, tuple)) or not all(_is_int(i) and 0 <= i < k for i in ids):
        raise DataError(f"{field_name}: expected a list of 0-based joint indices < {k}, "
                        f"got {_short(ids)}")
    return [int(i) for i in ids]


def _check_images(data: dict, path: str) -> dict[int, dict]:
    """The ``images`` entries by id, each checked (integer id, size, file name)."""
    images: dict[int, dict] = {}
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        if not isinstance(img, dict):
            raise DataError(f"{where}: expected an object, got {_short(img)}")
        for key in ("id", "width", "height"):
            if not _is_int(img.get(key)):
                raise DataError(f"{where} field {key}: expected an integer, got "
                                f"{_short(img.get(key))}")
        if img["width"] <= 0 or img["height"] <= 0:
            raise DataError(f"{where} field width/height: must be positive, got "
                            f"{img['width']}x{img['height']}")
        if not isinstance(img.get("file_name"), str) or not img["file_name"]:
            raise DataError(f"{where} field file_name: expected a file name, got "
                            f"{_short(img.get('file_name'))}")
        if img["id"] in images:
            raise DataError(f"{where} field id: duplicate image id {img['id']}")
        images[img["id"]] = img
    return images


def _check_annotation(ann: Any, i: int, path: str, k: int, cat_id: int, images: dict,
                      seen_ids: set) -> bool:
    """Check one ``annotations`` entry; False when it belongs to another category."""
    if not isinstance(ann, dict):
        raise DataError(f"{path}: annotations[{i}]: expected an object, got {_short(ann)}")
    ann_id = ann.get("id")
    if not _is_int(ann_id):
        raise DataError(f"{path}: annotations[{i}] field id: expected an integer, got "
                        f"{_short(ann_id)}")
    where = f"{path}: annotation {ann_id}"
    if ann_id in seen_ids:
        raise DataError(f"{where} field id: duplicate annotation id")
    seen_ids.add(ann_id)
    if ann.get("category_id", cat_id) != cat_id:
        return False
    image_id = ann.get("image_id")
    if not _is_int(image_id) or image_id not in images:
        raise DataError(f"{where} field image_id: {_short(image_id)} is not the id of an "
                        "entry in images")
    kp = ann.get("keypoints")
    if not isinstance(kp, list) or len(kp) != 3 * k:
        got = f"length {len(kp)}" if isinstance(kp, list) else _short(kp)
        raise DataError(f"{where} field keypoints: expected a list of length {3 * k} "
                        f"(3 x {k} keypoints), got {got}")
    if not all(_is_num(v) for v in kp):
        raise DataError(f"{where} field keypoints: expected numbers, got {_short(kp)}")
    _check_box(ann.get("bbox"), where)
    area = ann.get("area")
    if area is not None and not _is_num(area):
        raise DataError(f"{where} field area: expected a number, got {_short(area)}")
    return True


@dataclass
class PersonKeypointsFile:
    """A checked person_keypoints json: the raw ``data`` (untouched), its person category,
    the images by id, and the person annotations (other categories left out)."""
    data: dict
    category: dict
    images: dict[int, dict]
    annotations: list[dict]


def read_person_keypoints(ann_file: str) -> PersonKeypointsFile:
    """Read and check a COCO person_keypoints json with the rules every reader in odkd shares
    (``load_coco`` for training and evaluation records, ``coco_eval`` for COCOeval's ground
    truth), so a file accepted by one is accepted by the other."""
    data = read_json(ann_file, "annotation file")
    if not isinstance(data, dict):
        raise DataError(f"{ann_file}: top level must be an object with images/annotations/"
                        f"categories, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{ann_file}: field {key}: expected a list, got "
                            f"{type(data.get(key)).__name__ if key in data else 'nothing'}")
    cat = _person_category(data, ann_file)
    k = len(cat["keypoints"])
    images = _check_images(data, ann_file)
    seen: set[int] = set()
    anns = [a for i, a in enumerate(data["annotations"])
            if _check_annotation(a, i, ann_file, k, cat["id"], images, seen)]
    return PersonKeypointsFile(data, cat, images, anns)


def check_image_files(paths: list[str], source: str) -> None:
    """Raise one DataError listing the first few missing images and how many are missing."""
    missing = sorted({p for p in paths if not os.path.isfile(p)})
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise DataError(f"{source}: {len(missing)} image file(s) referenced by field file_name "
                        f"not found: {shown} (check the image folder)")


# ------------------------------------------------------------------------------- GT annotations

def load_coco(ann_file: str, image_dir: str, *, train: bool, flip_pairs=None,
              upper_body_ids=None, check_images: bool = True, box_rule: str = "odkd",
              unlabelled: bool = False) -> CocoPoseSet:
    """Load a COCO person_keypoints json.

    ``train=True`` drops crowds and people without labelled keypoints (nothing to learn).
    ``train=False`` keeps every non-crowd person with a box, which is the set mmpose's
    ``use_gt_bbox`` evaluates. Records are sorted by (image id, annotation id).
    ``box_rule``: how GT boxes are clipped (see :func:`clip_box`). An empty ``image_dir``
    means the json's ``info.image_root`` (relative to the json), which ``odkd data import``
    writes. ``unlabelled=True`` also keeps people without keypoints (distillation from real
    teachers needs only their boxes).
    """
    if box_rule not in BOX_RULES:
        raise ValueError(f"box_rule must be one of {BOX_RULES}, got {box_rule!r}")
    f = read_person_keypoints(ann_file)
    if not image_dir:
        root = f.data.get("info", {}).get("image_root")
        if root is None:
            raise DataError(f"{ann_file}: field info.image_root: absent; give the image "
                            "folder (data.train_images / data.val_images / --images)")
        image_dir = os.path.join(os.path.dirname(os.path.abspath(ann_file)), root)
    cat = f.category
    names: list[str] = list(cat["keypoints"])
    k = len(names)
    skeleton = cat.get("skeleton") or []
    if flip_pairs is None:
        flip_pairs = flip_pairs_from_names(names)
    flip_pairs = _check_pairs(flip_pairs, k, "data.flip_pairs")
    if upper_body_ids is None:
        upper_body_ids = upper_body_ids_from_names(names)
    upper_body_ids = _check_ids(upper_body_ids, k, "data.upper_body_ids")
    images = {i: {"id": i, "file_name": img["file_name"],
                  "path": os.path.abspath(os.path.join(image_dir, img["file_name"])),
                  "width": img["width"], "height": img["height"]}
              for i, img in f.images.items()}

    skipped: Counter[str] = Counter()
    if len(f.annotations) < len(f.data["annotations"]):
        skipped["other_category"] = len(f.data["annotations"]) - len(f.annotations)
    records: list[PersonRecord] = []
    for ann in f.annotations:  # every field checked by read_person_keypoints
        img = images[ann["image_id"]]
        kpts = np.asarray(ann["keypoints"], dtype=np.float32).reshape(k, 3)
        num_kpts = int((kpts[:, 2] > 0).sum())
        if int(bool(ann.get("iscrowd", 0))):
            skipped["crowd"] += 1
            continue
        area = ann.get("area")
        box, reason = clip_box([float(v) for v in ann["bbox"]], img["width"], img["height"],
                               box_rule)
        if box is None:
            skipped[reason] += 1
            continue
        if area is None:
            area = box[2] * box[3]
        if area <= 0:
            skipped["zero_area"] += 1
            continue
        if num_kpts == 0 and not unlabelled:
            # Training has nothing to learn from them, and COCOeval ignores them, so a GT-box
            # prediction for one would only count as a false positive (HRNet skips them too).
            skipped["no_keypoints"] += 1
            continue
        seg = ann.get("segmentation") or None  # [] and {} mean "no mask"
        records.append(PersonRecord(
            image_id=ann["image_id"], file_name=img["path"], width=img["width"],
            height=img["height"], bbox=box, keypoints=kpts, num_keypoints=num_kpts,
            area=float(area), segmentation=seg, ann_id=ann["id"], score=1.0, iscrowd=0,
            source=ann_file))
    records.sort(key=lambda r: (r.image_id, r.ann_id))
    if check_images:
        check_image_files([r.file_name for r in records], ann_file)
    return CocoPoseSet(
        ann_file=ann_file, image_dir=image_dir, images=images, keypoint_names=names,
        skeleton=[list(s) for s in skeleton], flip_pairs=flip_pairs,
        upper_body_ids=upper_body_ids, records=records, skipped=dict(skipped),
        category_id=cat["id"])


# ----------------------------------------------------------------------------------- detections

def read_detections(det_file: str, score_thr: float = 0.0, category_id: int = 1,
                    skipped: Counter | dict | None = None, what: str = "detection file"
                    ) -> list[tuple[int, int, list[float], float]]:
    """Checked detections of a COCO results json: ``(index in the file, image_id, [x, y, w, h],
    score)`` for the ``category_id`` boxes scoring ``>= score_thr``; the others are counted
    into ``skipped`` (when given). ``odkd eval`` and ``odkd infer`` read detections here.
    ``what`` names the file in the not-found message."""
    data = read_json(det_file, what)
    if not isinstance(data, list):
        raise DataError(f"{det_file}: expected a list of detections (COCO results format), got "
                        f"{type(data).__name__}")
    out = []
    for i, det in enumerate(data):
        where = f"{det_file}: detection {i}"
        if not isinstance(det, dict):
            raise DataError(f"{where}: expected an object, got {_short(det)}")
        for key in ("image_id", "category_id"):
            if not _is_int(det.get(key)):
                raise DataError(f"{where} field {key}: expected an integer, got "
                                f"{_short(det.get(key))}")
        score = det.get("score")
        if not _is_num(score):
            raise DataError(f"{where} field score: expected a finite number, got "
                            f"{_short(score)}")
        box = _check_box(det.get("bbox"), where)
        reason = "other_category" if det["category_id"] != category_id else \
            "low_score" if score < score_thr else ""
        if reason:
            if skipped is not None:
                skipped[reason] = skipped.get(reason, 0) + 1
            continue
        out.append((i, det["image_id"], box, float(score)))
    return out


def load_detections(det_file: str, coco_set: CocoPoseSet, score_thr: float = 0.0, *,
                    check_images: bool = True, skipped: dict[str, int] | None = None,
                    clip: bool = True) -> list[PersonRecord]:
    """Person boxes from a COCO results json (``[{image_id, category_id, bbox, score}, ...]``).

    Keeps the person category with ``score >= score_thr``; boxes on images absent from
    ``coco_set`` are skipped and counted into ``skipped`` (when given) like other skips.
    ``clip=False`` keeps boxes as the detector gave them (official HRNet; only empty boxes are
    dropped), otherwise they are clipped to the image and dropped when outside it.
    """
    counts: Counter[str] = Counter()
    records: list[PersonRecord] = []
    k = coco_set.num_joints
    for i, image_id, box, score in read_detections(det_file, score_thr, coco_set.category_id,
                                                   counts):
        img = coco_set.images.get(image_id)
        if img is None:
            counts["unknown_image"] += 1
            continue
        if clip:
            box, reason = clip_box(box, img["width"], img["height"])
        else:
            reason = "degenerate_bbox" if box[2] <= 0 or box[3] <= 0 else ""
            box = None if reason else box
        if box is None:
            counts[reason] += 1
            continue
        records.append(PersonRecord(
            image_id=img["id"], file_name=img["path"], width=img["width"], height=img["height"],
            bbox=box, keypoints=np.zeros((k, 3), np.float32), num_keypoints=0,
            area=box[2] * box[3], segmentation=None, ann_id=i, score=float(score), iscrowd=0,
            source=det_file))
    records.sort(key=lambda r: (r.image_id, r.ann_id))
    if check_images:
        check_image_files([r.file_name for r in records], det_file)
    if skipped is not None:
        for key, n in counts.items():
            skipped[key] = skipped.get(key, 0) + n
    return records
