"""Ground-truth losses: target-weighted joints MSE and the instance-mask loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def joints_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
               ) -> torch.Tensor:
    """HRNet's JointsMSELoss: 0.5 * mean over joints of per-joint MSE, joints weighted.

    pred/target: (N, K, h, w); weight: (N, K) or None.
    """
    # at least float32 (bf16 outputs are promoted), but float64 stays float64 (DDP test)
    dt = torch.promote_types(pred.dtype, torch.float32)
    err = (pred.to(dt) - target.to(dt)).pow(2).mean(dim=(2, 3))  # (N, K)
    if weight is not None:
        err = err * weight.to(dt).pow(2)
    return 0.5 * err.mean()


def mask_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Binary cross-entropy of mask logits (N,1,h,w) against soft or hard targets in [0,1];
    ``weight`` (N,) zeroes samples without a mask annotation."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    loss = loss.mean(dim=(1, 2, 3))
    if weight is not None:
        w = weight.float()
        return (loss * w).sum() / w.sum().clamp_min(1.0)
    return loss.mean()
