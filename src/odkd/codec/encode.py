"""Keypoints -> Gaussian heatmaps and target weights, in numpy (one person) and torch (a batch
on the device). :class:`odkd.codec.HeatmapCodec` wraps these with its sizes and sigma.

Heatmap coordinates follow :mod:`odkd.geometry`: the affine from ``get_affine_transform(center,
scale, rot, heatmap_size)`` maps image points straight to heatmap coordinates, and heatmap pixel
centres sit on integer coordinates.
"""
from __future__ import annotations

import numpy as np
import torch


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
