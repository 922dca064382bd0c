"""Heatmaps -> image keypoints: argmax + quarter offset (HRNet) or DARK; flip-test ``flip_back``.

Heatmap coordinates are those of :mod:`odkd.geometry`: ``get_affine_transform(center, scale, 0,
(w, h))`` maps image points to heatmap points, so its inverse maps decoded points back.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from odkd.geometry import affine_points, get_affine_transform


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x)


def get_max_preds(heatmaps) -> tuple[np.ndarray, np.ndarray]:
    """Integer argmax of each (h, w) map of (N, K, h, w) heatmaps.

    Returns ``coords`` float32 (N, K, 2) as (x, y) heatmap pixels and ``maxvals`` float32 (N, K).
    """
    hm = _to_numpy(heatmaps)
    if hm.ndim != 4:
        raise ValueError(f"get_max_preds expects (N, K, h, w) heatmaps, got shape {hm.shape}")
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    return coords, maxvals.astype(np.float32)


def _quarter_offset(hm: np.ndarray, coords: np.ndarray, protocol: str = "odkd") -> np.ndarray:
    """Move 0.25 px from the argmax towards the higher neighbour on each axis.

    ``protocol="odkd"``: each axis on its own wherever both neighbours exist (1 <= x <= w-2).
    ``protocol="hrnet"``: the official rule, both axes or neither, and only when
    2 <= x <= w-2 and 2 <= y <= h-2 (it also skips the first interior row/column).
    """
    n, k, h, w = hm.shape
    x = coords[..., 0].astype(np.int64)
    y = coords[..., 1].astype(np.int64)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    xl, xr = np.clip(x - 1, 0, w - 1), np.clip(x + 1, 0, w - 1)
    yu, yd = np.clip(y - 1, 0, h - 1), np.clip(y + 1, 0, h - 1)
    diff_x = hm[ni, ki, y, xr] - hm[ni, ki, y, xl]
    diff_y = hm[ni, ki, yd, x] - hm[ni, ki, yu, x]
    if protocol == "hrnet":
        inside_x = inside_y = (x >= 2) & (x <= w - 2) & (y >= 2) & (y <= h - 2)
    else:
        # A border max has no neighbour on that axis to compare; the other axis still can.
        inside_x = (x >= 1) & (x <= w - 2)
        inside_y = (y >= 1) & (y <= h - 2)
    out = coords.astype(np.float32).copy()
    out[..., 0] += np.where(inside_x, np.sign(diff_x) * 0.25, 0.0)
    out[..., 1] += np.where(inside_y, np.sign(diff_y) * 0.25, 0.0)
    return out


def _dark_offset(hm: np.ndarray, coords: np.ndarray, kernel: int) -> np.ndarray:
    """DARK (Zhang et al., CVPR 2020): blur each map with a Gaussian so it is closer to the
    Gaussian the model was trained on, take the log (a Gaussian becomes a quadratic), and refine
    the argmax with one Newton step ``-H^-1 grad`` from finite differences.

    Central differences with a 1-pixel step are exact for a quadratic, so only a 1-pixel border
    is needed (the paper's code uses 2-pixel steps for the second derivatives). The Newton step
    reads the blurred map at the 3x3 patch around each argmax only, so only those nine values
    are computed: each a ``kernel`` x ``kernel`` Gaussian-weighted sum of the zero-padded map
    (what ``cv2.GaussianBlur`` with ``BORDER_CONSTANT`` gives there), not a blur of every map.
    The paper's rescaling of the blurred map to the original peak is left out: a constant
    factor adds a constant to the log and leaves every difference, hence the step, unchanged.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"dark_kernel must be a positive odd integer, got {kernel}")
    n, k, h, w = hm.shape
    r = kernel // 2
    g = cv2.getGaussianKernel(kernel, 0).astype(np.float64)[:, 0]   # OpenCV's sigma for ksize
    # the separable blur at 3 positions as a matrix: column j of ``band`` is g shifted by j
    band = np.zeros((kernel + 2, 3))
    for j in range(3):
        band[j:j + kernel, j] = g
    x = coords[..., 0].astype(np.int64).reshape(-1)
    y = coords[..., 1].astype(np.int64).reshape(-1)
    ok = ((x >= 1) & (x <= w - 2) & (y >= 1) & (y <= h - 2)).reshape(n, k)
    xs, ys = np.clip(x, 1, max(w - 2, 1)), np.clip(y, 1, max(h - 2, 1))
    # each map zero-padded by r + 1: the window of every 3x3 patch lies inside
    p = r + 1
    pad = np.zeros((n * k, h + 2 * p, w + 2 * p), np.float32)
    pad[:, p:p + h, p:p + w] = hm.reshape(n * k, h, w)
    span = np.arange(kernel + 2)
    rows = (ys[:, None] + span[None, :])[:, :, None]        # patch centre y-1 .. y+1, +-r
    cols = (xs[:, None] + span[None, :])[:, None, :]
    win = pad[np.arange(n * k)[:, None, None], rows, cols].astype(np.float64)
    blurred = band.T @ (win @ band)                         # (n*k, 3, 3): rows y-1..y+1
    lb = np.log(np.clip(blurred, 1e-10, None)).reshape(n, k, 3, 3)

    def at(dy, dx):
        return lb[..., 1 + dy, 1 + dx]

    c = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = at(0, 1) - 2 * c + at(0, -1)
    dyy = at(1, 0) - 2 * c + at(-1, 0)
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    # Newton step only at a proper maximum (negative-definite Hessian).
    ok &= (det > 1e-12) & (dxx < 0)
    safe = np.where(ok, det, 1.0)
    off_x = -(dyy * dx - dxy * dy) / safe
    off_y = -(dxx * dy - dxy * dx) / safe
    # A step beyond one pixel means the local quadratic model is meaningless there.
    off_x = np.where(ok, np.clip(off_x, -1.0, 1.0), 0.0)
    off_y = np.where(ok, np.clip(off_y, -1.0, 1.0), 0.0)
    out = coords.astype(np.float32).copy()
    out[..., 0] += off_x.astype(np.float32)
    out[..., 1] += off_y.astype(np.float32)
    return out

def decode_heatmaps(heatmaps, centers, scales, method: str = "quarter", dark_kernel: int = 11,
                    protocol: str = "odkd", offset=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Decode (N, K, h, w) heatmaps of crops given by ``centers``/``scales`` (N, 2) in image
    pixels into image keypoints.

    ``method``: ``"quarter"`` (argmax + 0.25 px towards the higher neighbour) or ``"dark"``.
    ``protocol="hrnet"`` applies the official HRNet rules (quarter method only): a map whose
    maximum is not positive puts its joint at heatmap (0, 0), the crop corner, and the quarter
    offset uses HRNet's border rule (see ``_quarter_offset``). odkd keeps the argmax there.
    Returns ``preds`` float32 (N, K, 2) image (x, y) and ``maxvals`` float32 (N, K), the raw
    heatmap maxima used as keypoint scores. ``offset`` (x, y) heatmap cells are added to the
    decoded peaks (``data.heatmap_offset``).
    """
    if protocol not in ("odkd", "hrnet"):
        raise ValueError(f"unknown protocol {protocol!r}; choose 'odkd' or 'hrnet'")
    if protocol == "hrnet" and method != "quarter":
        raise ValueError("protocol 'hrnet' decodes with the quarter offset only")
    hm = _to_numpy(heatmaps).astype(np.float32)
    coords, maxvals = get_max_preds(hm)
    if protocol == "hrnet":
        coords = np.where((maxvals > 0)[..., None], coords, 0.0).astype(np.float32)
    if method == "quarter":
        coords = _quarter_offset(hm, coords, protocol)
    elif method == "dark":
        coords = _dark_offset(hm, coords, dark_kernel)
    else:
        raise ValueError(f"unknown decode method {method!r}; choose 'quarter' or 'dark'")
    if offset[0] or offset[1]:
        coords = (coords + np.asarray(offset, np.float32)).astype(np.float32)
    n, _, h, w = hm.shape
    centers = np.asarray(centers, dtype=np.float32).reshape(n, 2)
    scales = np.asarray(scales, dtype=np.float32).reshape(n, 2)
    preds = np.empty_like(coords)
    for i in range(n):
        inv = get_affine_transform(centers[i], scales[i], 0.0, (w, h), inv=True)
        preds[i] = affine_points(coords[i], inv)
    return preds, maxvals


def flip_back(heatmaps, flip_pairs: Sequence[Sequence[int]], shift: bool | float = True,
              stride: int = 4):
    """Undo a horizontal flip of the network input on its (N, K, h, w) heatmaps (torch or numpy;
    the same type comes back): mirror along the width, swap left/right channels, then shift right.

    Why a shift: the flip test mirrors the *input* crop, ``u -> W - 1 - u`` (input pixels), and
    odkd's geometry puts input pixel ``u`` at heatmap coordinate ``u / stride`` (both grids are
    the same crop sampled at different resolutions, see geometry.get_affine_transform). So a
    joint at heatmap ``x`` appears in the flipped maps at ``(W - 1 - stride x) / stride =
    w - x - 1/stride``, and mirroring the maps (``x' -> w - 1 - x'``) brings it back to
    ``x - (stride - 1) / stride``: the flipped crop's grid is offset by ``stride - 1`` input
    pixels. ``shift=True`` compensates exactly with a ``(stride - 1) / stride`` heatmap-pixel
    shift (0.75 for stride 4) by linear interpolation; HRNet's integer 1-pixel shift
    (``shift=1.0``) over-corrects by ``1 / stride`` and biases flip-averaged predictions by
    +1/8 px to the right; ``shift=False`` (0) biases them by -3/8 px. A float gives the shift in
    heatmap pixels. Edge columns are replicated.
    """
    if shift is True:
        amount = (stride - 1) / stride
    elif shift is False:
        amount = 0.0
    else:
        amount = float(shift)
    if amount < 0:
        raise ValueError(f"flip_back: shift must be >= 0, got {shift}")
    is_torch = isinstance(heatmaps, torch.Tensor)
    if heatmaps.ndim != 4:
        raise ValueError(f"flip_back expects (N, K, h, w) heatmaps, got shape {tuple(heatmaps.shape)}")
    k, w = heatmaps.shape[1], heatmaps.shape[3]
    perm = np.arange(k)
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a

    def take(x, idx: np.ndarray, dim: int):
        if is_torch:
            return x.index_select(dim, torch.from_numpy(idx).to(x.device))
        return np.take(x, idx, axis=dim)

    out = take(heatmaps, perm, 1)
    out = take(out, np.arange(w - 1, -1, -1), 3)
    if amount > 0:
        whole = int(np.floor(amount))
        frac = amount - whole
        cols = np.arange(w)
        base = take(out, np.clip(cols - whole, 0, w - 1), 3)
        if frac > 1e-9:
            prev = take(out, np.clip(cols - whole - 1, 0, w - 1), 3)
            out = base * (1.0 - frac) + prev * frac
        else:
            out = base
    return out
