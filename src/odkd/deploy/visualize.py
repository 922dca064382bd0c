"""Skeleton and instance-mask overlays drawn with OpenCV on RGB images.

Colours are by body side (from the keypoint names): left joints/limbs orange, right blue,
centre green, so a left/right swap is visible at a glance.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from odkd.geometry import get_affine_transform

LEFT = (255, 140, 0)
RIGHT = (30, 144, 255)
CENTER = (50, 205, 50)
MASK_COLORS = [(255, 64, 64), (64, 220, 64), (200, 64, 255), (255, 210, 0), (0, 200, 200),
               (255, 105, 180)]


def _side(name: str) -> int:
    low = name.lower()
    if low.startswith(("left", "l_")):
        return -1
    if low.startswith(("right", "r_")):
        return 1
    return 0


def _color(names: Sequence[str], idx: Sequence[int]) -> tuple[int, int, int]:
    sides = {_side(names[i]) for i in idx if i < len(names)}
    if sides == {-1}:
        return LEFT
    if sides == {1}:
        return RIGHT
    return CENTER


def paste_mask(mask_prob: np.ndarray, center, scale, image_size: tuple[int, int]) -> np.ndarray:
    """Warp a crop's (h, w) mask (probabilities, heatmap resolution) back onto the image.

    ``image_size`` is (width, height). The inverse of the crop affine at heatmap size is the
    same geometry the decoder uses for keypoints, so masks and skeletons line up.
    """
    h, w = mask_prob.shape
    inv = get_affine_transform(center, scale, 0.0, (w, h), inv=True)
    return cv2.warpAffine(mask_prob.astype(np.float32), inv, image_size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def draw_pose(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Sequence[int]],
              keypoint_names: Sequence[str] = (), kpt_thr: float = 0.2,
              masks: np.ndarray | None = None, boxes: np.ndarray | None = None,
              mask_thr: float = 0.5, mask_alpha: float = 0.45, scores=None,
              legend: bool = False) -> np.ndarray:
    """A copy of the RGB uint8 ``image`` with instances drawn on it.

    ``keypoints`` (M, K, 3): image x, y and score (or COCO visibility); joints with score
    ``<= kpt_thr`` are skipped. ``skeleton``: 1-based joint pairs (COCO json convention).
    ``masks`` (M, H, W) probabilities: pixels above ``mask_thr`` are tinted. ``boxes`` (M, 4)
    COCO [x, y, w, h] are outlined. ``scores`` (M,) are written beside each person (with the
    number of joints drawn), ``legend`` adds the colour key and the threshold in a corner.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"draw_pose expects an (H, W, 3) image, got shape {image.shape}")
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    kpts = np.asarray(keypoints, dtype=np.float32)
    if kpts.size == 0:
        kpts = np.zeros((0, 0, 3), np.float32)
    elif kpts.ndim == 2:  # a single instance
        kpts = kpts[None]
    img_h, img_w = out.shape[:2]
    # Line width and joint radius grow with the image so overlays stay legible.
    thick = max(1, int(round(np.sqrt(img_h * img_w) / 250)))
    radius = thick + 1

    if masks is not None and len(masks):
        tint = out.astype(np.float32)
        for i, m in enumerate(masks):
            sel = m > mask_thr
            color = np.array(MASK_COLORS[i % len(MASK_COLORS)], np.float32)
            tint[sel] = (1 - mask_alpha) * tint[sel] + mask_alpha * color
        out = tint.round().clip(0, 255).astype(np.uint8)

    if boxes is not None:
        for x, y, w, h in np.asarray(boxes, dtype=np.float32).reshape(-1, 4):
            cv2.rectangle(out, (int(round(x)), int(round(y))),
                          (int(round(x + w)), int(round(y + h))), (255, 255, 255), 1, cv2.LINE_AA)

    for inst in kpts:
        k = inst.shape[0]
        ok = inst[:, 2] > kpt_thr
        for a, b in skeleton:
            i, j = a - 1, b - 1
            if i < k and j < k and ok[i] and ok[j]:
                p = (int(round(inst[i, 0])), int(round(inst[i, 1])))
                q = (int(round(inst[j, 0])), int(round(inst[j, 1])))
                cv2.line(out, p, q, _color(keypoint_names, (i, j)), thick + 1, cv2.LINE_AA)
        for i in range(k):
            if ok[i]:
                c = (int(round(inst[i, 0])), int(round(inst[i, 1])))
                cv2.circle(out, c, radius, _color(keypoint_names, (i,)), -1, cv2.LINE_AA)
                cv2.circle(out, c, radius, (0, 0, 0), 1, cv2.LINE_AA)
    if scores is not None:
        for m, inst in enumerate(kpts):
            if m >= len(scores):
                break
            ok = inst[:, 2] > kpt_thr
            if boxes is not None and m < len(boxes):
                x, y = float(boxes[m][0]), float(boxes[m][1])
            elif ok.any():
                x, y = float(inst[ok, 0].min()), float(inst[ok, 1].min())
            else:  # nothing drawn: label the middle of the predicted joints
                x, y = float(np.nanmedian(inst[:, 0])), float(np.nanmedian(inst[:, 1]))
            if not (np.isfinite(x) and np.isfinite(y)):
                x, y = 2.0, 2.0
            put_label(out, f"{scores[m]:.2f} ({int(ok.sum())}/{len(inst)})", (x, y))
    if legend:
        draw_legend(out, [("left", LEFT), ("right", RIGHT), ("centre", CENTER)],
                    f"joints > {kpt_thr:g}")
    return out


def _font_scale(img: np.ndarray) -> float:
    return max(0.35, min(img.shape[:2]) / 900)


def put_label(img: np.ndarray, text: str, xy, color=(255, 255, 255)) -> None:
    """Text on a dark box just above ``xy`` (kept inside the image), drawn in place."""
    fs = _font_scale(img)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
    h, w = img.shape[:2]
    x = int(min(max(0, xy[0]), max(0, w - tw - 2)))
    y = int(min(max(th + base + 2, xy[1] - 2), h - 1))
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 2, y), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 1, y - base - 1), cv2.FONT_HERSHEY_SIMPLEX, fs, color, 1,
                cv2.LINE_AA)


def draw_legend(img: np.ndarray, entries, title: str = "") -> None:
    """Colour key (``[(name, colour), ...]``) in the top-left corner, drawn in place."""
    fs = _font_scale(img)
    (_, th), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
    line = th + base + 4
    lines = ([(title, None)] if title else []) + list(entries)
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)[0][0] for t, _ in lines)
    cv2.rectangle(img, (0, 0), (width + line + 8, line * len(lines) + 4), (0, 0, 0), -1)
    for i, (text, color) in enumerate(lines):
        y = line * (i + 1)
        x = 4
        if color is not None:
            cv2.circle(img, (4 + line // 2 - 2, y - th // 2 - 1), max(2, th // 2), color, -1)
            x = line + 4
        cv2.putText(img, text, (x, y - base + 1), cv2.FONT_HERSHEY_SIMPLEX, fs,
                    (255, 255, 255), 1, cv2.LINE_AA)


def write_image(path: str, image_rgb: np.ndarray) -> None:
    """Write an RGB image (PNG/JPEG by extension) atomically."""
    from odkd.errors import OdkdError
    from odkd.utils import atomic_write_bytes

    ext = "." + path.rsplit(".", 1)[-1] if "." in path else ".png"
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OdkdError(f"{path}: OpenCV cannot encode an image with extension {ext}")
    atomic_write_bytes(path, buf.tobytes())
