"""Top-down crop geometry shared by the data path and the decoder.

Conventions (used everywhere in odkd):
- ``center`` is the box centre (x, y) in image pixels, ``scale`` the crop size (w, h) in image
  pixels (already padded and fixed to the model aspect ratio). No HRNet-style ``/200``.
- ``output_size`` is (width, height). The same affine with ``output_size = heatmap size`` maps
  image points to heatmap coordinates, so encoding and decoding are exact inverses.
- Pixel centres sit on integer coordinates (OpenCV's convention for ``warpAffine``).
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def box_to_center_scale(box, aspect_ratio: float, padding: float = 1.25):
    """COCO ``[x, y, w, h]`` box -> (center, scale) at ``aspect_ratio`` = width / height."""
    x, y, w, h = (float(v) for v in box[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w * padding, h * padding], dtype=np.float32)
    return center, scale


def _rotate(pt, rad: float):
    s, c = math.sin(rad), math.cos(rad)
    return np.array([pt[0] * c - pt[1] * s, pt[0] * s + pt[1] * c], dtype=np.float32)


def get_affine_transform(center, scale, rot: float, output_size, inv: bool = False,
                         shift=(0.0, 0.0)) -> np.ndarray:
    """2x3 matrix mapping the (rotated) crop ``center``/``scale`` onto ``output_size``.

    ``rot`` is in degrees (counter-clockwise in the image). With ``inv=True`` the matrix maps
    output coordinates back to the image.
    """
    center = np.asarray(center, dtype=np.float32)
    scale = np.asarray(scale, dtype=np.float32)
    dst_w, dst_h = float(output_size[0]), float(output_size[1])
    src_w = float(scale[0])
    rad = math.radians(rot)
    src_dir = _rotate(np.array([0.0, src_w * -0.5], dtype=np.float32), rad)
    dst_dir = np.array([0.0, dst_w * -0.5], dtype=np.float32)
    shift = np.asarray(shift, dtype=np.float32) * scale

    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center + shift
    src[1] = center + src_dir + shift
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def _third_point(a, b):
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def affine_points(pts, mat: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine to an (..., 2) array of points."""
    pts = np.asarray(pts, dtype=np.float64)
    out = pts @ mat[:, :2].T.astype(np.float64) + mat[:, 2].astype(np.float64)
    return out.astype(np.float32)


def flip_keypoints(kpts: np.ndarray, image_width: int, flip_pairs) -> np.ndarray:
    """Mirror (K, >=2) keypoints about the vertical axis of an image ``image_width`` wide,
    swapping left/right pairs. Pixel centres: x -> width - 1 - x."""
    out = kpts.copy()
    out[:, 0] = image_width - 1 - out[:, 0]
    for a, b in flip_pairs:
        out[[a, b]] = out[[b, a]]
    return out
