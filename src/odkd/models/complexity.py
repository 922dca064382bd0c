"""Model complexity: parameter count and FLOPs of one forward pass.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (PyTorch's own counter, so no
hand-kept per-layer formulas) on a single 1x3xHxW zero image in eval mode. It counts
convolutions (incl. transposed / depthwise, groups respected) and matrix multiplies at
**2 FLOPs per multiply-accumulate**; biases, BatchNorm, activations, pooling and resampling are
not counted (they are a few percent for these networks).

Units differ between papers:
* ``gflops`` = FLOPs / 1e9 (2 per MAC) -- what this module reports as "GFLOPs".
* ``gmacs`` = MACs / 1e9 -- what mmpose and the Lite-HRNet paper call "FLOPs"/"GFLOPs".
* ``gmacs_2p30`` = MACs / 2**30 -- the unit of the official HRNet README's "GFLOPs"
  (e.g. HRNet-W32 at 256x192: "7.1"), whose summary divides multiply-adds by 1024**3.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from odkd.errors import OdkdError


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in model.parameters())


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    if len(input_size) != 2 or any(int(v) != v or v <= 0 for v in input_size):
        raise OdkdError(f"input_size must be two positive integers (width, height), got {input_size}")
    return int(input_size[0]), int(input_size[1])


def count_flops(model: nn.Module, input_size: Sequence[int] = (192, 256)) -> int:
    """FLOPs (2 per MAC) of ``model`` on one ``input_size`` = (width, height) RGB image.

    Runs in eval mode without gradients; every submodule's train/eval flag is restored after.
    """
    w, h = _check_size(input_size)
    ref = next(iter(model.parameters()), None)
    x = torch.zeros(1, 3, h, w,
                    device=ref.device if ref is not None else None,
                    dtype=ref.dtype if ref is not None else None)
    # Per-module flags (not one model.train(mode)) because a model may mix modes, e.g. a student
    # with frozen BatchNorm layers.
    modes = [(m, m.training) for m in model.modules()]
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    finally:
        for m, training in modes:
            m.training = training
    return int(counter.get_total_flops())


def complexity(model: nn.Module, input_size: Sequence[int] = (192, 256)) -> dict[str, float]:
    """``{"params", "flops", "gflops", "gmacs", "gmacs_2p30"}`` for one (width, height) input."""
    flops = count_flops(model, input_size)
    macs = flops / 2
    return {
        "params": count_params(model),
        "flops": flops,
        "gflops": flops / 1e9,
        "gmacs": macs / 1e9,
        "gmacs_2p30": macs / 2**30,
    }
