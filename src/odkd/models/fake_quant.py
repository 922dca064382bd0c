"""Quantization-aware training: the activations rounded in training as ``odkd export --int8``
rounds them at inference, so the weights learn to live with it.

``odkd export --int8`` gives every activation one uint8 scale per tensor. With BatchNorm
folded, MobileNetV2's channels span very different ranges, and one scale rounds the small
channels away (results/real_distill/int8_mixed). Training with that rounding in the forward
pass (straight-through gradients) lets the network move what it needs out of the small
channels. Weights are left alone: per-channel int8 rounds them far more finely.
Measured on the shipped student (results/real_distill/qat): 200 steps at the recipe's
learning rate left the int8 model as far from its fp32 one as the same steps without QAT.

Which tensors: those the int8 graph quantizes after BatchNorm folding and Conv + activation
fusion, read from the module tree:
- the output of every activation module (``nn.Identity`` too, the linear bottleneck's),
- the output of every convolution not registered right before a BatchNorm (convolutions
  with a bias, depthwise convolutions that feed a pointwise one), and of every BatchNorm not
  registered right before an activation (modules run in registration order, as in
  ``nn.Sequential`` and odkd's blocks),
- the output of every block with a residual addition (a ``residual`` attribute that is true).
Modules whose exported ONNX nodes the architecture keeps in fp32 (``default_cfg["int8_fp32"]``,
node names ``/model/<module path>/...``) are skipped, as the export skips them.

Ranges: the extremes seen so far, as the export's min-max calibration sets them (a moving
average of batch extremes trained on finer steps than the export then used: the int8 model
moved as far from its fp32 one as without QAT), widened to include 0 (the uint8 zero point
must be representable). They live in the hook object, not in the
state_dict, so a QAT checkpoint is an ordinary checkpoint; a resumed run restarts them from
its first batch. torch provides the rounding op (``fake_quantize_per_tensor_affine``); the
choice of tensors is odkd's export, which no library knows, hence written here.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
from torch import nn

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Identity, nn.Hardswish, nn.SiLU, nn.Sigmoid, nn.GELU)


def declared_fp32_nodes(model) -> tuple[str, ...]:
    """The ONNX node patterns an architecture keeps in fp32 in int8
    (``default_cfg["int8_fp32"]``; none for most): what ``odkd export --int8`` leaves in fp32
    and QAT leaves unrounded."""
    return tuple((getattr(model, "default_cfg", None) or {}).get("int8_fp32", ()))


def onnx_prefix(module_name: str) -> str:
    """The ONNX node-name prefix ``odkd export`` gives a module's nodes."""
    return "/model/" + module_name.replace(".", "/") + "/"


def quantized_outputs(model: nn.Module, fp32_nodes: Sequence[str] = ()) -> list[str]:
    """Names of the modules whose outputs the int8 export quantizes (see the module doc)."""
    skip = [re.compile(p) for p in fp32_nodes]
    bn = nn.modules.batchnorm._BatchNorm
    picked = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for i, (child_name, child) in enumerate(children):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            after = children[i + 1][1] if i + 1 < len(children) else None
            take = (isinstance(child, ACTIVATIONS)
                    # folded into the BatchNorm registered right after it / into the
                    # activation registered right after the BatchNorm
                    or (isinstance(child, nn.Conv2d) and not isinstance(after, bn))
                    or (isinstance(child, bn) and not isinstance(after, ACTIVATIONS))
                    or getattr(child, "residual", False) is True)
            if take and not any(rx.match(onnx_prefix(name)) for rx in skip):
                picked.append(name)
    return picked


class ActivationFakeQuant:
    """Forward hooks rounding the outputs of :func:`quantized_outputs` to uint8 in training
    mode; ``remove()`` takes them off. ``fp32_nodes``: default, the architecture's declared
    fp32 layers (:func:`declared_fp32_nodes`)."""

    def __init__(self, model: nn.Module, fp32_nodes: Sequence[str] | None = None) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}
        self.names = quantized_outputs(
            model, declared_fp32_nodes(model) if fp32_nodes is None else fp32_nodes)
        modules = dict(model.named_modules())
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in self.names]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs, out):
            if not module.training or not isinstance(out, torch.Tensor):
                return out
            with torch.no_grad():
                lo, hi = (float(v) for v in torch.aminmax(out))
            if name in self.ranges:
                a, b = self.ranges[name]
                lo, hi = min(lo, a), max(hi, b)
            self.ranges[name] = (lo, hi)
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            if hi - lo < 1e-8:
                return out
            scale = (hi - lo) / 255.0
            zero = int(min(max(round(-lo / scale), 0), 255))
            return torch.fake_quantize_per_tensor_affine(out.float(), scale, zero, 0, 255) \
                .to(out.dtype)
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
