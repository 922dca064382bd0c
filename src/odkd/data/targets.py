"""The instance-mask target (warped to heatmap resolution) and COCO segmentation decoding. The
keypoint heatmaps are the codec's (:mod:`odkd.codec.encode`).

Heatmap coordinates follow :mod:`odkd.geometry`: the affine from ``get_affine_transform(center,
scale, rot, heatmap_size)`` maps image points straight to heatmap coordinates, and heatmap pixel
centres sit on integer coordinates.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from odkd.errors import DataError

# Sub-pixels per heatmap pixel (per axis) used by warp_mask to measure coverage.
_MASK_SUPERSAMPLE = 4


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
