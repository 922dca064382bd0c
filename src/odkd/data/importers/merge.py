"""Several COCO person_keypoints jsons -> one, for training on several sets at once.

Image and annotation ids are renumbered; file names become relative to the deepest folder that
holds every set's images (written as ``info.image_root``); each image keeps a ``source`` naming
its json. The sets must share the keypoint names.
"""
from __future__ import annotations

import json
import os

from odkd.data.importers.common import ImportResult, new_coco
from odkd.errors import DataError


def _read(path: str) -> tuple[dict, str]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read a COCO json ({e})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: field {key}: absent or not a list")
    root = data.get("info", {}).get("image_root")
    if root is None:
        raise DataError(f"{path}: field info.image_root: absent (import it with `odkd data "
                        "import`, which writes it)")
    return data, os.path.join(os.path.dirname(os.path.abspath(path)), root)


def merge_coco(paths: list[str]) -> ImportResult:
    if len(paths) < 2:
        raise DataError("data merge: give at least two jsons")
    sets = [(p,) + _read(p) for p in paths]
    names = None
    for p, data, _ in sets:
        person = [c for c in data["categories"] if c.get("id") == 1]
        kp = person[0].get("keypoints") if person else None
        if names is None:
            names = kp
        elif kp != names:
            raise DataError(f"{p}: field categories[].keypoints differs from {paths[0]}'s; "
                            "only sets with the same keypoints can be merged")
    roots = [os.path.abspath(root) for _, _, root in sets]
    common = os.path.commonpath(roots)
    coco = new_coco("merged: " + ", ".join(os.path.basename(p) for p in paths), paths[0])
    coco["info"]["source"] = [os.path.abspath(p) for p in paths]
    for (p, data, _), root in zip(sets, roots):
        ids = {}
        for im in data["images"]:
            ids[im["id"]] = len(coco["images"]) + 1
            coco["images"].append(dict(im, id=ids[im["id"]], source=os.path.basename(p),
                                       file_name=os.path.relpath(
                                           os.path.join(root, im["file_name"]), common)))
        for ann in data["annotations"]:
            if ann.get("image_id") not in ids:
                raise DataError(f"{p}: annotation {ann.get('id')} field image_id: "
                                f"{ann.get('image_id')!r} is not an image of this file")
            coco["annotations"].append(dict(ann, id=len(coco["annotations"]) + 1,
                                            image_id=ids[ann["image_id"]]))
    return ImportResult(coco=coco, image_root=common)
