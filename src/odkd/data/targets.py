"""Training targets: Gaussian keypoint heatmaps, target weights and the instance-mask target.

Heatmap coordinates follow odkd.data.geometry: the affine from ``get_affine_transform(center,
scale, rot, heatmap_size)`` maps image points straight to heatmap coordinates, and heatmap pixel
centres sit on integer coordinates.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from odkd.errors import DataError

# Sub-pixels per heatmap pixel (per axis) used by warp_mask to measure coverage.
_MASK_SUPERSAMPLE = 4


def encode_heatmaps(kpts_hm: np.ndarray, heatmap_size, sigma: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Unbiased Gaussian heatmaps for (K, 3) keypoints ``[x, y, v]`` in heatmap coordinates.

    Each map is ``exp(-((x - mu_x)^2 + (y - mu_y)^2) / (2 sigma^2))`` centred on the exact float
    location (no rounding, so sub-pixel positions survive encoding), truncated to the square
    window ``|x - mu_x| <= 3 sigma, |y - mu_y| <= 3 sigma``. The 2-D Gaussian is separable, so
    exponentials are only evaluated along each axis (O(K (w + h))) and the window is applied
    through the 1-D factors.

    A joint gets weight 0 (and an all-zero map) when it is unlabelled (``v == 0``), its
    coordinates are not finite, or its 3-sigma window contains no heatmap pixel centre.

    Returns ``heatmaps`` float32 (K, h, w) and ``target_weight`` float32 (K,).
    """
    kpts = np.asarray(kpts_hm, dtype=np.float64)
    if kpts.ndim != 2 or kpts.shape[1] < 3:
        raise ValueError(f"encode_heatmaps expects (K, 3) keypoints, got shape {kpts.shape}")
    if sigma <= 0:
        raise ValueError(f"encode_heatmaps: sigma must be > 0, got {sigma}")
    w, h = int(heatmap_size[0]), int(heatmap_size[1])
    mu_x, mu_y, vis = kpts[:, 0], kpts[:, 1], kpts[:, 2]
    radius = 3.0 * float(sigma)

    finite = np.isfinite(mu_x) & np.isfinite(mu_y)
    mu_x = np.where(finite, mu_x, 0.0)
    mu_y = np.where(finite, mu_y, 0.0)
    # Some pixel centre in [0, w-1] x [0, h-1] must lie inside the window.
    overlaps = ((mu_x + radius >= 0) & (mu_x - radius <= w - 1)
                & (mu_y + radius >= 0) & (mu_y - radius <= h - 1))
    valid = finite & (vis > 0) & overlaps

    dx = np.arange(w, dtype=np.float64)[None, :] - mu_x[:, None]          # (K, w)
    dy = np.arange(h, dtype=np.float64)[None, :] - mu_y[:, None]          # (K, h)
    two_s2 = 2.0 * float(sigma) ** 2
    gx = np.where(np.abs(dx) <= radius, np.exp(-dx * dx / two_s2), 0.0)
    gy = np.where(np.abs(dy) <= radius, np.exp(-dy * dy / two_s2), 0.0)
    gx *= valid[:, None]
    heatmaps = gy[:, :, None] * gx[:, None, :]                              # (K, h, w)
    return heatmaps.astype(np.float32), valid.astype(np.float32)


def encode_heatmaps_torch(kpts_hm: torch.Tensor, heatmap_size, sigma: float
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`encode_heatmaps` on the tensor's device (the device augmentation's
    targets): (B, K, 3) -> (B, K, h, w), (B, K)."""
    w, h = int(heatmap_size[0]), int(heatmap_size[1])
    k = kpts_hm.double()
    mu_x, mu_y, vis = k[..., 0], k[..., 1], k[..., 2]
    radius = 3.0 * float(sigma)
    finite = torch.isfinite(mu_x) & torch.isfinite(mu_y)
    mu_x = torch.where(finite, mu_x, torch.zeros_like(mu_x))
    mu_y = torch.where(finite, mu_y, torch.zeros_like(mu_y))
    overlaps = ((mu_x + radius >= 0) & (mu_x - radius <= w - 1)
                & (mu_y + radius >= 0) & (mu_y - radius <= h - 1))
    valid = finite & (vis > 0) & overlaps
    dev = kpts_hm.device
    dx = torch.arange(w, dtype=torch.float64, device=dev) - mu_x[..., None]     # (B, K, w)
    dy = torch.arange(h, dtype=torch.float64, device=dev) - mu_y[..., None]     # (B, K, h)
    two_s2 = 2.0 * float(sigma) ** 2
    gx = torch.where(dx.abs() <= radius, torch.exp(-dx * dx / two_s2), torch.zeros_like(dx))
    gy = torch.where(dy.abs() <= radius, torch.exp(-dy * dy / two_s2), torch.zeros_like(dy))
    gx = gx * valid[..., None]
    heat = gy.float()[..., :, None] * gx.float()[..., None, :]
    return heat, valid.float()


def warp_mask(mask: np.ndarray, mat: np.ndarray, heatmap_size) -> np.ndarray:
    """Warp an (H, W) image-space instance mask into heatmap space with the 2x3 ``mat``.

    Area-correct: the mask is sampled on a 4x4 grid of sub-pixels per heatmap pixel and a
    heatmap pixel is set when at least half of it is covered. (Plain ``warpAffine`` with
    INTER_LINEAR samples one point per output pixel and aliases thin limbs away when the crop is
    downscaled a lot; OpenCV has no INTER_AREA for affine warps.)

    Returns float32 (h, w) with values in {0, 1}.
    """
    w, h = int(heatmap_size[0]), int(heatmap_size[1])
    s = _MASK_SUPERSAMPLE
    # Heatmap pixel i covers [i - 0.5, i + 0.5]; its sub-pixel centres are
    # i - 0.5 + (j + 0.5) / s, i.e. supersampled coordinate X_s = s * (X + 0.5) - 0.5.
    up = np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])
    full = np.vstack([np.asarray(mat, dtype=np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])
    mat_s = (up @ full)[:2]
    src = (np.asarray(mask) > 0).astype(np.float32)
    fine = cv2.warpAffine(src, mat_s, (w * s, h * s), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    coverage = fine.reshape(h, s, w, s).mean(axis=(1, 3))
    return (coverage >= 0.5).astype(np.float32)


def ann_to_mask(segmentation: Any, height: int, width: int, where: str = "") -> np.ndarray:
    """COCO ``segmentation`` (polygons, uncompressed RLE or compressed RLE) -> (H, W) uint8 mask.

    Multiple polygons are merged. Polygons with fewer than 3 points are skipped (zero area; and
    pycocotools would misread a 4-number polygon as a box). An empty polygon list gives an
    all-zero mask; deciding that such an annotation has no usable mask is the caller's job.
    ``where`` (e.g. ``"train.json: annotation id 12"``) prefixes error messages.
    Raises DataError on anything else.
    """
    prefix = f"{where}: " if where else ""
    height, width = int(height), int(width)
    try:
        if isinstance(segmentation, list):
            polys = []
            for i, poly in enumerate(segmentation):
                if not isinstance(poly, (list, tuple)):
                    raise DataError(f"{prefix}segmentation[{i}] is not a list of coordinates")
                arr = np.asarray(poly, dtype=np.float64).ravel()
                if arr.size % 2 or not np.all(np.isfinite(arr)):
                    raise DataError(f"{prefix}segmentation[{i}] must hold an even number of "
                                    "finite coordinates")
                if arr.size >= 6:
                    polys.append(arr.tolist())
            if not polys:
                return np.zeros((height, width), dtype=np.uint8)
            rle = mask_utils.merge(mask_utils.frPyObjects(polys, height, width))
        elif isinstance(segmentation, dict):
            size = segmentation.get("size")
            counts = segmentation.get("counts")
            if (not isinstance(size, (list, tuple)) or len(size) != 2
                    or [int(size[0]), int(size[1])] != [height, width]):
                raise DataError(f"{prefix}segmentation.size {size!r} does not match the image "
                                f"size [height, width] = [{height}, {width}]")
            if isinstance(counts, list):
                if (not all(isinstance(c, (int, np.integer)) and c >= 0 for c in counts)
                        or sum(counts) != height * width):
                    raise DataError(f"{prefix}segmentation.counts (uncompressed RLE) must be "
                                    f"non-negative integers summing to {height * width}")
                rle = mask_utils.frPyObjects(segmentation, height, width)
            elif isinstance(counts, (str, bytes)):
                rle = {"size": [height, width],
                       "counts": counts.encode() if isinstance(counts, str) else counts}
            else:
                raise DataError(f"{prefix}segmentation.counts must be a list or a string")
        else:
            raise DataError(f"{prefix}segmentation must be a polygon list or an RLE dict, got "
                            f"{type(segmentation).__name__}")
        mask = mask_utils.decode(rle)
    except DataError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        # pycocotools validates RLE strings (2.0.8+) and raises ValueError on garbage.
        raise DataError(f"{prefix}invalid segmentation ({e})") from None
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return np.ascontiguousarray(mask, dtype=np.uint8)
