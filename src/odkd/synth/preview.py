"""Contact sheet: images with instance masks, boxes and skeletons, for humans to check."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from odkd.errors import DataError
from odkd.keypoints import COCO_SKELETON
from odkd.utils import atomic_write_bytes

# left limbs orange, right limbs blue, centre green (BGR) so flipped labels stand out
_LEFT, _RIGHT, _MID = (0, 140, 255), (255, 120, 0), (0, 200, 0)


def _limb_colour(a: int, b: int) -> tuple[int, int, int]:
    odd = (a % 2 == 1) + (b % 2 == 1)      # COCO: odd indices (0-based) are left joints
    if a == 0 or b == 0 or odd == 1:
        return _MID
    return _LEFT if odd == 2 else _RIGHT


def draw_annotations(img: np.ndarray, anns: list[dict], seed: int = 0, legend: bool = True
                     ) -> np.ndarray:
    """``img`` (BGR) with masks, boxes, skeletons, labelled-joint counts per person and, with
    ``legend``, the colour key."""
    out = img.copy()
    rng = np.random.default_rng(seed)
    overlay = out.copy()
    for a in anns:
        m = mask_utils.decode(a["segmentation"]).astype(bool)
        overlay[m] = rng.integers(60, 255, 3)
    out = cv2.addWeighted(out, 0.4, overlay, 0.6, 0)
    for a in anns:
        m = mask_utils.decode(a["segmentation"])
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1)
    for a in anns:
        x, y, w, h = a["bbox"]
        cv2.rectangle(out, (int(x), int(y)), (int(x + w), int(y + h)), (200, 200, 200), 1)
        k = np.array(a["keypoints"], float).reshape(-1, 3)
        for s, t in COCO_SKELETON:
            i, j = s - 1, t - 1
            if k[i, 2] > 0 and k[j, 2] > 0:
                cv2.line(out, (int(round(k[i, 0])), int(round(k[i, 1]))),
                         (int(round(k[j, 0])), int(round(k[j, 1]))), _limb_colour(i, j), 1,
                         cv2.LINE_AA)
        for i, (px, py, v) in enumerate(k):
            if v == 2:
                cv2.circle(out, (int(round(px)), int(round(py))), 2, (0, 0, 255), -1)
            elif v == 1:
                cv2.circle(out, (int(round(px)), int(round(py))), 2, (0, 255, 255), 1)
    # per person: how many joints are labelled (GT has no score; this is what a newcomer checks)
    for a in anns:
        k = np.array(a["keypoints"], float).reshape(-1, 3)
        _label(out, f"{int((k[:, 2] > 0).sum())}/{len(k)}", a["bbox"][0], a["bbox"][1])
    if legend:
        _legend(out)
    return out


_LEGEND = [("left", _LEFT, "line"), ("right", _RIGHT, "line"), ("centre", _MID, "line"),
           ("visible", (0, 0, 255), "dot"), ("occluded", (0, 255, 255), "ring")]


def _label(img: np.ndarray, text: str, x: float, y: float) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.3, 1)
    x0 = int(min(max(0, x), max(0, img.shape[1] - tw - 2)))
    y0 = int(min(max(th + base + 1, y - 1), img.shape[0] - 1))
    cv2.rectangle(img, (x0, y0 - th - base - 1), (x0 + tw + 1, y0), (0, 0, 0), -1)
    cv2.putText(img, text, (x0 + 1, y0 - base), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255),
                1, cv2.LINE_AA)


def _legend(img: np.ndarray) -> None:
    """Key of limb colours and joint marks (BGR), top-left; drawn in place."""
    line = 10
    w = 62
    cv2.rectangle(img, (0, 0), (w, line * len(_LEGEND) + 3), (0, 0, 0), -1)
    for i, (name, colour, kind) in enumerate(_LEGEND):
        y = line * i + 7
        if kind == "line":
            cv2.line(img, (3, y), (11, y), colour, 1, cv2.LINE_AA)
        else:
            cv2.circle(img, (7, y), 2, colour, -1 if kind == "dot" else 1)
        cv2.putText(img, name, (15, y + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (255, 255, 255), 1,
                    cv2.LINE_AA)


def contact_sheet(out_dir: str, split: str, path: str | None = None, num: int = 24,
                  cols: int = 6, raw: bool = True) -> str:
    """Write ``out_dir/preview_{split}.png``; with ``raw`` each tile shows image | annotated."""
    ann_path = os.path.join(out_dir, "annotations", f"person_keypoints_{split}.json")
    try:
        with open(ann_path) as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{ann_path}: cannot read ({e})") from e
    by_img: dict[int, list[dict]] = {}
    for a in doc["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    tiles = []
    for im in doc["images"][:num]:
        fp = os.path.join(out_dir, split, im["file_name"])
        img = cv2.imread(fp, cv2.IMREAD_COLOR)
        if img is None:
            raise DataError(f"{ann_path}: images[id={im['id']}].file_name {fp} cannot be read")
        ann = draw_annotations(img, by_img.get(im["id"], []), seed=im["id"])
        tiles.append(np.concatenate([img, ann], 1) if raw else ann)
    if not tiles:
        raise DataError(f"{ann_path}: no images")
    th, tw = tiles[0].shape[:2]
    cols = max(1, min(cols, len(tiles)))
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.full((rows * (th + 4), cols * (tw + 4), 3), 32, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * (th + 4): r * (th + 4) + th, c * (tw + 4): c * (tw + 4) + tw] = t
    path = path or os.path.join(out_dir, f"preview_{split}.png")
    ok, buf = cv2.imencode(".png", sheet)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
    return path
