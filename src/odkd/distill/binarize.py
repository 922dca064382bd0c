"""Target binarization: cut a heatmap at ``tau`` times its own peak.

A teacher's heatmap is noisy away from its peak (second modes on the other wrist, a halo on
occluded joints). The paper's remedy is to keep only the confident region around each peak:

* ``hard``: 1 where ``value > tau * peak``, 0 elsewhere (a disc around the peak);
* ``mask``: the values above ``tau * peak`` are kept as they are, the rest are zeroed;
* ``none``: the heatmaps are returned unchanged.

The peak is taken **per map** (per sample and joint), never over the batch, so a weak but
correct teacher map is not wiped out by a confident map of another joint.

Sub-pixel accuracy. A hard target is flat on top, so a student trained on it cannot localise the
joint by the height of a single pixel; the location is carried by the *shape* of the region
instead. Cutting a Gaussian centred at a float location ``(cx, cy)`` at ``tau * peak`` gives a
disc centred at ``(cx, cy)``, whose centroid is therefore ``(cx, cy)`` up to the pixel
quantisation of its boundary (measured at sigma=2: within about 0.15 px for tau=0.5 and 0.3 px
for tau=0.3 or 0.7, against up to 0.5 px for the integer argmax). ``mask`` targets keep the
Gaussian inside the disc, so their weighted centroid is closer still (about 0.1 px at tau=0.5).
A student trained with MSE on such targets predicts a smooth blob around the disc; the decoders
in ``odkd.codec.decode`` (quarter offset / DARK) work on that smooth prediction, so decoding stays
sub-pixel accurate. No soft-argmax is needed for this, and this module only builds targets.
"""
from __future__ import annotations

import torch

from odkd.config import ConfigError

BINARIZE_MODES: tuple[str, ...] = ("none", "hard", "mask")

# A map whose peak is at or below this is treated as empty (unlabelled joint, all-zero target):
# thresholding it at tau * ~0 would turn numerical noise into a full-size disc.
PEAK_EPS = 1e-6


def check_binarize(mode: str, tau: float) -> None:
    """Raise :class:`ConfigError` naming the ``distill.*`` field when mode or tau is invalid."""
    if mode not in BINARIZE_MODES:
        raise ConfigError(f"distill.binarize_mode: unknown mode {mode!r}; "
                          f"choose one of {list(BINARIZE_MODES)}")
    # tau >= 1 would leave nothing (strictly above the peak); tau < 0 keeps everything.
    if not 0.0 <= tau < 1.0:
        raise ConfigError(f"distill.binarize_tau: expected 0 <= tau < 1, got {tau!r}")


@torch.no_grad()
def binarize(heatmaps: torch.Tensor, mode: str, tau: float) -> torch.Tensor:
    """Binarize targets ``(N, K, h, w)`` per map at ``tau * peak`` (see the module docstring).

    Returns a new float tensor for ``hard``/``mask`` and the input itself for ``none``. Maps
    whose peak is ``<= PEAK_EPS`` come back all zero. Targets need no gradient, hence no_grad.
    """
    check_binarize(mode, tau)
    if heatmaps.dim() != 4:
        raise ValueError(f"binarize expects (N, K, h, w) heatmaps, got shape {tuple(heatmaps.shape)}")
    if mode == "none":
        return heatmaps
    hm = heatmaps.float()
    peak = hm.amax(dim=(2, 3), keepdim=True)                   # (N, K, 1, 1): per map
    keep = (hm > tau * peak) & (peak > PEAK_EPS)
    if mode == "hard":
        return keep.to(hm.dtype)
    return torch.where(keep, hm, torch.zeros_like(hm))
