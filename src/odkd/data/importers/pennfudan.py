"""Penn-Fudan pedestrians (``Annotation/*.txt`` PASCAL v1.00 boxes, ``PedMasks/*_mask.png``
instance masks, ``PNGImages/``) -> COCO boxes + RLE masks, no keypoints.

The PASCAL text gives 1-based inclusive pixel corners: COCO's box is
``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. Pedestrian k's mask is the pixels
of value k. People listed in ``added-object-list.txt`` (small or heavily occluded ones labelled
after the paper) carry ``"added": true``; ``pedestrian_id`` is k.
"""
from __future__ import annotations

import os
import re
from collections import Counter

import cv2

from odkd.data.importers.common import (ImportResult, annotation_entry, image_entry,
                                        mask_to_rle, new_coco, read_image)
from odkd.errors import DataError

_FILENAME = re.compile(r'^Image filename\s*:\s*"([^"]+)"', re.M)
_SIZE = re.compile(r"^Image size \(X x Y x C\)\s*:\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)", re.M)
_COUNT = re.compile(r"^Objects with ground truth\s*:\s*(\d+)", re.M)
_BOX = re.compile(r'^Bounding box for object (\d+)\b.*?:\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*-\s*'
                  r'\(\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*$', re.M)
_BOX_LINE = re.compile(r"^Bounding box for object", re.M)
_MASK = re.compile(r'^Pixel mask for object (\d+)\b.*?:\s*"([^"]+)"', re.M)


def parse_annotation(path: str) -> dict:
    """One PASCAL v1.00 annotation file -> {image, width, height, boxes {k: (x1, y1, x2, y2)},
    masks {k: file name}}; DataError naming the file and field when a field is missing or
    malformed."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("latin-1").replace("\r\n", "\n")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    fields = {}
    for key, rx in (("Image filename", _FILENAME), ("Image size", _SIZE),
                    ("Objects with ground truth", _COUNT)):
        m = rx.search(text)
        if not m:
            raise DataError(f"{path}: field '{key}': missing or malformed (not a PASCAL "
                            "v1.00 annotation?)")
        fields[key] = m
    boxes = {}
    for m in _BOX.finditer(text):
        k = int(m.group(1))
        if k in boxes:
            raise DataError(f"{path}: field 'Bounding box for object {k}': given twice")
        boxes[k] = tuple(int(g) for g in m.groups()[1:])
    n_lines = len(_BOX_LINE.findall(text))
    if n_lines != len(boxes):
        raise DataError(f"{path}: field 'Bounding box for object': {n_lines - len(boxes)} "
                        "line(s) not of the form (Xmin, Ymin) - (Xmax, Ymax)")
    count = int(fields["Objects with ground truth"].group(1))
    if sorted(boxes) != list(range(1, count + 1)):
        raise DataError(f"{path}: field 'Objects with ground truth' says {count}, bounding "
                        f"boxes are given for objects {sorted(boxes)}")
    for k, (x1, y1, x2, y2) in boxes.items():
        if x2 < x1 or y2 < y1:
            raise DataError(f"{path}: field 'Bounding box for object {k}': (Xmax, Ymax) "
                            f"({x2}, {y2}) is before (Xmin, Ymin) ({x1}, {y1})")
    w, h, _ = (int(g) for g in fields["Image size"].groups())
    return {"image": os.path.basename(fields["Image filename"].group(1)), "width": w,
            "height": h, "boxes": boxes,
            "masks": {int(m.group(1)): os.path.basename(m.group(2))
                      for m in _MASK.finditer(text)}}


def _added_objects(path: str) -> set[tuple[str, int]]:
    """(image file, object index) pairs of ``added-object-list.txt`` (empty if absent)."""
    if not os.path.isfile(path):
        return set()
    out = set()
    with open(path, "rb") as f:
        for lineno, line in enumerate(f.read().decode("latin-1").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(f"{path}: line {lineno}: expected 'IMAGE.png<TAB>INDEX', got "
                                f"{line[:60]!r}")
            out.add((parts[0], int(parts[1])))
    return out


def import_pennfudan(src: str) -> ImportResult:
    """Penn-Fudan folder -> COCO dict (image ids 1.. in annotation-file order)."""
    ann_dir, img_dir, mask_dir = (os.path.join(src, d)
                                  for d in ("Annotation", "PNGImages", "PedMasks"))
    for d in (ann_dir, img_dir):
        if not os.path.isdir(d):
            raise DataError(f"{src}: no {os.path.basename(d)}/ folder (expected the "
                            "PennFudanPed layout: Annotation/, PNGImages/, PedMasks/)")
    files = sorted(f for f in os.listdir(ann_dir) if f.endswith(".txt"))
    if not files:
        raise DataError(f"{ann_dir}: no .txt annotation files")
    added = _added_objects(os.path.join(src, "added-object-list.txt"))
    coco = new_coco("Penn-Fudan pedestrians, imported by odkd data import pennfudan", src)
    skipped: Counter = Counter()
    ann_id = 0
    for image_id, fname in enumerate(files, 1):
        path = os.path.join(ann_dir, fname)
        a = parse_annotation(path)
        img_path = os.path.join(img_dir, a["image"])
        h, w = read_image(img_path, f"image of {path}").shape[:2]
        if (w, h) != (a["width"], a["height"]):
            raise DataError(f"{path}: field 'Image size' says {a['width']} x {a['height']}, "
                            f"{img_path} is {w} x {h}")
        coco["images"].append(image_entry(image_id, a["image"], w, h))
        mask = None
        mask_names = set(a["masks"].values())
        if len(mask_names) > 1:
            raise DataError(f"{path}: field 'Pixel mask': objects point to different files "
                            f"{sorted(mask_names)}; expected one instance mask per image")
        if mask_names:
            mask_path = os.path.join(mask_dir, mask_names.pop())
            mask = read_image(mask_path, f"mask of {path}", cv2.IMREAD_UNCHANGED)
            if mask.ndim != 2 or mask.shape != (h, w):
                raise DataError(f"{mask_path}: expected a {w}x{h} single-channel instance "
                                f"mask, got shape {mask.shape}")
        for k, (x1, y1, x2, y2) in sorted(a["boxes"].items()):
            seg = None
            if mask is not None and k in a["masks"]:
                inst = mask == k
                seg = mask_to_rle(inst) if inst.any() else None
                if seg is None:
                    skipped["people with an empty mask"] += 1
            else:
                skipped["people without a mask"] += 1
            ann_id += 1
            coco["annotations"].append(annotation_entry(
                ann_id, image_id, [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1], None, seg,
                pedestrian_id=k, added=(a["image"], k) in added))
    return ImportResult(coco, img_dir, skipped)
