"""TUD pedestrians (``*.idl`` boxes, ``*-annopoints.al`` body points, ``maps/`` masks) -> COCO.

``.idl``: one line per image, ``"name.png": (x1, y1, x2, y2):score, (...):score;`` (the last
line ends with ``.``; ``:score`` is optional). ``.al``: XML ``annotationlist`` / ``annotation``
/ ``annorect`` with x1..y2 and ``annopoints`` / ``point`` (id, x, y). ``maps/NAME-map.png``:
the image's person mask, black/white.

TUD's 11 points mark feet, lower legs, upper legs, torso and head of a side view and do not
say which leg is the person's left, so no COCO joint is filled (v=0 throughout; a guessed side
would teach wrong flips). They are kept per person in ``tud_points`` (x, y, v for ids 1-11,
v=2 where given, names in ``info.tud_point_names``: read off the images). The mask becomes the
person's RLE ``segmentation`` when the image has one person (the map is not per instance);
an ``X-flipped.png`` image without a map of its own takes ``X``'s map mirrored.
"""
from __future__ import annotations

import glob
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter

import cv2
import numpy as np

from odkd.data.importers.common import (ImportResult, annotation_entry, image_entry,
                                        mask_to_rle, new_coco, read_image)
from odkd.errors import DataError

TUD_POINT_NAMES = ["foot_a_heel", "foot_a_toe", "ankle_a", "knee_a", "foot_b_heel",
                   "foot_b_toe", "ankle_b", "knee_b", "hip", "neck", "head"]

_NUM = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_LINE = re.compile(r'\s*"(?P<name>[^"]+)"\s*(?::(?P<rects>.*?))?\s*[;.]?\s*$')
_RECT = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\)"
                   rf"(?:\s*:\s*({_NUM}))?(?:\s*/\s*\d+)?")


def parse_idl(path: str) -> list[tuple[str, list[tuple[float, float, float, float]]]]:
    """(image name, [(x1, y1, x2, y2), ...]) per line of an .idl file."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text .idl file") from None
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE.fullmatch(line)
        if not m:
            raise DataError(f"{path}: line {lineno}: expected '\"image name\": (x1, y1, x2, y2)"
                            f"[:score], ...;', got {line[:80]!r}")
        rects_text = m.group("rects") or ""
        rects = [tuple(float(g) for g in r.groups()[:4]) for r in _RECT.finditer(rects_text)]
        # whatever the rectangles leave over must be separators, or the line is malformed
        rest = _RECT.sub("", rects_text).replace(",", "").strip()
        if rest:
            raise DataError(f"{path}: line {lineno}: field rectangles: cannot read "
                            f"{rest[:60]!r} (expected (x1, y1, x2, y2)[:score])")
        out.append((m.group("name"), rects))
    if not out:
        raise DataError(f"{path}: no image lines")
    return out


def _num(el: ET.Element, tag: str, where: str) -> float:
    child = el.find(tag)
    try:
        return float(child.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        got = "nothing" if child is None else repr(child.text)
        raise DataError(f"{where} field {tag}: expected a number, got {got}") from None


def parse_al(path: str) -> dict[str, list[tuple[tuple[float, ...], np.ndarray]]]:
    """image name -> [((x1, y1, x2, y2), points (11, 3)), ...] of an .al annotation list."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: malformed XML at line {e.position[0]} column "
                        f"{e.position[1]}") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if root.tag != "annotationlist":
        raise DataError(f"{path}: root element is <{root.tag}>, expected <annotationlist>")
    out: dict[str, list] = {}
    for ai, ann in enumerate(root.findall("annotation")):
        name_el = ann.find("image/name")
        if name_el is None or not (name_el.text or "").strip():
            raise DataError(f"{path}: annotation {ai + 1} field image/name: missing")
        name = name_el.text.strip()
        for ri, rect in enumerate(ann.findall("annorect")):
            where = f"{path}: annotation {ai + 1} ({name}) annorect {ri + 1}"
            box = tuple(_num(rect, k, where) for k in ("x1", "y1", "x2", "y2"))
            pts = np.zeros((len(TUD_POINT_NAMES), 3))
            for point in rect.findall("annopoints/point"):
                pid = _num(point, "id", where + " point")
                if pid != int(pid) or not 1 <= pid <= len(TUD_POINT_NAMES):
                    raise DataError(f"{where} point field id: expected 1-"
                                    f"{len(TUD_POINT_NAMES)}, got {pid:g}")
                pts[int(pid) - 1] = (_num(point, "x", where + " point"),
                                     _num(point, "y", where + " point"), 2)
            out.setdefault(name, []).append((box, pts))
    if not out:
        raise DataError(f"{path}: no <annotation> with an image name")
    return out


def _find(src: str, pattern: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(src), pattern)))


def _coco_box(r: tuple[float, ...]) -> list[float]:
    x1, y1, x2, y2 = r
    return [min(x1, x2), min(y1, y2), abs(x2 - x1), abs(y2 - y1)]


def _map_file(maps_dir: str, name: str) -> tuple[str | None, bool]:
    """(mask file, mirrored?) of image ``name``. The set's ``X-flipped.png`` images are mirror
    images of ``X.png``; one of them is published with only ``X``'s map, which mirrored
    matches its box exactly."""
    stem = os.path.splitext(name)[0]
    path = os.path.join(maps_dir, stem + "-map.png")
    if os.path.isfile(path):
        return path, False
    if stem.endswith("-flipped"):
        path = os.path.join(maps_dir, stem[:-len("-flipped")] + "-map.png")
        if os.path.isfile(path):
            return path, True
    return None, False


def import_tud(src: str) -> ImportResult:
    """TUD folder (images, one .idl, optionally its .al and maps/) -> COCO dict.

    Image ids follow the .idl's line order (1-based); people come from the .idl boxes, points
    from the .al rectangle with the same image and corners.
    """
    if os.path.isfile(src) and src.endswith(".idl"):
        idl, folder = src, os.path.dirname(os.path.abspath(src))
    elif os.path.isdir(src):
        folder = src
        idls = _find(src, "*.idl")
        if len(idls) != 1:
            raise DataError(f"{src}: expected one .idl box file, found "
                            f"{len(idls) or 'none'}{': ' + ', '.join(idls) if idls else ''}")
        idl = idls[0]
    else:
        raise DataError(f"TUD folder not found: {src}")
    stem = os.path.splitext(os.path.basename(idl))[0]
    als = _find(folder, glob.escape(stem) + "*.al") or _find(folder, "*.al")
    if len(als) > 1:
        raise DataError(f"{folder}: several .al files match {stem}: {', '.join(als)}")
    points = parse_al(als[0]) if als else {}
    maps_dir = os.path.join(folder, "maps")
    lines = parse_idl(idl)

    seen: set[str] = set()
    missing = []
    for name, _ in lines:
        if name in seen:
            raise DataError(f"{idl}: image {name} listed twice")
        seen.add(name)
        if not os.path.isfile(os.path.join(folder, name)):
            missing.append(name)
    if missing:
        raise DataError(f"{folder}: {len(missing)} image(s) named in {idl} not found: "
                        f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")

    coco = new_coco("TUD pedestrians, imported by odkd data import tud", idl)
    coco["info"]["tud_point_names"] = list(TUD_POINT_NAMES)
    skipped: Counter = Counter()
    ann_id = 0
    for image_id, (name, rects) in enumerate(lines, 1):
        h, w = read_image(os.path.join(folder, name), "TUD image").shape[:2]
        coco["images"].append(image_entry(image_id, name, w, h))
        mask = None
        map_path, mirrored = _map_file(maps_dir, name)
        if map_path is not None:
            m = read_image(map_path, "TUD mask", cv2.IMREAD_GRAYSCALE)
            if m.shape != (h, w):
                raise DataError(f"{map_path}: mask is {m.shape[1]}x{m.shape[0]}, its image "
                                f"{name} is {w}x{h}")
            mask = (m[:, ::-1] if mirrored else m) > 127
        elif rects:
            skipped["people without a mask (no maps/ file)"] += len(rects)
        if mask is not None and len(rects) > 1:
            skipped["masks shared by several people (not per instance)"] += len(rects)
            mask = None
        for r in rects:
            box = _coco_box(r)
            if box[2] <= 0 or box[3] <= 0:
                skipped["degenerate boxes"] += 1
                continue
            pts = next((p for b, p in points.get(name, []) if _coco_box(b) == box), None)
            if pts is None and points:
                skipped["people without .al points"] += 1
            ann_id += 1
            seg = mask_to_rle(mask) if mask is not None else None
            extra = {"tud_points": [round(float(t), 2) if i % 3 < 2 else int(t)
                                    for i, t in enumerate(pts.ravel())]} if pts is not None else {}
            coco["annotations"].append(annotation_entry(ann_id, image_id, box, None, seg,
                                                        **extra))
    return ImportResult(coco, folder, skipped)
