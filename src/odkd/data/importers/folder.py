"""A folder of photos -> COCO images with no labels (an unlabelled set).

Without person boxes the set lists its images and no annotations: a detector (or the user)
adds the boxes. ``whole_image_box=True`` instead gives each image one person box covering the
whole image (for photos of one person framed as a crop), marked ``"box_source": "whole_image"``.
Files with an image extension that do not decode are left out and counted; a folder with no
readable image is an error.
"""
from __future__ import annotations

import os
from collections import Counter

import cv2

from odkd.data.importers.common import (IMAGE_EXTENSIONS, ImportResult, annotation_entry,
                                        image_entry, new_coco)
from odkd.errors import DataError


def list_images(src: str, recursive: bool = False) -> list[str]:
    """Image files under ``src`` (relative paths, sorted)."""
    if not os.path.isdir(src):
        raise DataError(f"image folder not found: {src}")
    found = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [os.path.relpath(os.path.join(root, f), src) for f in files
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return sorted(found)


def whole_image_annotation(ann_id: int, image_id: int, w: int, h: int) -> dict:
    return annotation_entry(ann_id, image_id, [0, 0, w, h], None, box_source="whole_image")


def import_folder(src: str, whole_image_box: bool = False, recursive: bool = False
                  ) -> ImportResult:
    names = list_images(src, recursive)
    if not names:
        raise DataError(f"{src}: no images ({', '.join(IMAGE_EXTENSIONS)})"
                        f"{'' if recursive else ' (add --recursive for subfolders)'}")
    coco = new_coco("image folder, imported by odkd data import folder", src)
    skipped: Counter = Counter()
    unreadable = []
    for name in names:
        img = cv2.imread(os.path.join(src, name), cv2.IMREAD_COLOR)
        if img is None:
            unreadable.append(name)
            continue
        h, w = img.shape[:2]
        image_id = len(coco["images"]) + 1
        coco["images"].append(image_entry(image_id, name, w, h))
        if whole_image_box:
            coco["annotations"].append(whole_image_annotation(image_id, image_id, w, h))
    if unreadable:
        skipped[f"unreadable images (e.g. {unreadable[0]})"] = len(unreadable)
    if not coco["images"]:
        raise DataError(f"{src}: none of its {len(names)} image file(s) could be read "
                        f"(e.g. {unreadable[0]})")
    return ImportResult(coco, src, skipped)
