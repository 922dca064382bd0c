"""A Lite-HRNet-like student (after Yu et al., "Lite-HRNet", CVPR 2021).

Written from the paper's description; it follows Lite-HRNet-18's layout (about 1.1M params) but
is **not** weight compatible with the official or mmpose checkpoints (module names differ).

Layout
------
* Stem: 3x3 stride-2 conv, then a ShuffleNet-style stride-2 block -> 32 channels at stride 4.
* Three stages of multi-resolution modules with (2, 3, 4) branches of (40, 80, 160, 320) channels
  and (2, 4, 2) modules. A transition before each stage adapts channels and opens the new,
  half-resolution branch with a strided depthwise-separable conv.
* Each module: ``num_blocks`` conditional channel weighting blocks, then HRNet-style fusion.
  The block replaces the costly 1x1 convs of a shuffle block with cheap weights:
  split each branch's channels in half; one half passes through; the other half is
  (1) re-weighted by *cross-resolution* weights computed from all branches pooled to the
  smallest resolution, (2) filtered by a 3x3 depthwise conv, (3) re-weighted by a per-branch
  *spatial* (squeeze-excite) weight; then both halves are concatenated and channel-shuffled.
* Fusion: branch j -> branch i via 1x1 conv + upsampling (j lower res) or a chain of strided
  depthwise-separable convs (j higher res); the sum is ReLU'd.
* Iterative head: from the lowest to the highest resolution, upsample, add and refine with a
  depthwise-separable conv; the stride-4 output (40 ch) feeds the 1x1 ``final_layer`` and,
  optionally, the 1x1 ``mask_layer``.

Resampling uses explicit target sizes (not scale factors) so inputs whose sides are multiples of
4 but not of 32 (e.g. the 64x48 crops of the tests) work: strided convs round up, and every
upsample goes to the exact size of the branch it joins.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from odkd.errors import OdkdError


class Pointwise(nn.Conv2d):
    """A 1x1 conv (same parameters and state_dict as ``nn.Conv2d``) that runs as a matrix
    product on channels_last CPU tensors.

    Why: a channels_last tensor is an (N*H*W, C) matrix in memory, so a 1x1 conv is one GEMM
    on it with no copy. oneDNN's convolution adds a fixed cost per call that dominates at
    Lite-HRNet's small maps (205 of its 302 convs are 1x1, many on 1x1 or 6x4 maps): fwd + bwd
    of all 1x1 convs of a batch-16 64x96 step took 147 ms as convs and 89 ms as matmuls at one
    thread on an AVX2 EPYC (docs/performance.md). NCHW inputs and other devices keep
    the conv kernel (cuDNN has no such overhead; the ONNX export traces NCHW)."""

    def __init__(self, cin: int, cout: int, bias: bool = True):
        super().__init__(cin, cout, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous(
                memory_format=torch.channels_last) and not torch.jit.is_tracing():
            y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
            return y.permute(0, 3, 1, 2)  # NHWC memory: channels_last again, no copy
        return super().forward(x)


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    conv = (Pointwise(cin, cout, bias=False) if k == 1 and stride == 1 and groups == 1
            else nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False))
    layers: list[nn.Module] = [
        conv,
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _dw_sep(cin: int, cout: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """3x3 depthwise conv + BN, then 1x1 pointwise conv + BN (+ ReLU)."""
    return nn.Sequential(
        _conv_bn(cin, cin, 3, stride, groups=cin, relu=False),
        _conv_bn(cin, cout, 1, relu=relu),
    )


def _dims(x: torch.Tensor) -> tuple[int, ...]:
    """``x.shape`` as plain ints. Why: traced for ONNX, shapes read from a tensor become
    Shape / Gather / Unsqueeze / Concat nodes computed on every run (the batch axis is dynamic,
    so onnxruntime cannot fold them): about 1,300 such nodes and a fifth of Lite-HRNet-18's
    onnxruntime time. As ints they are constants in the graph; reshapes then take the batch as
    -1, the one dimension left free."""
    return tuple(int(v) for v in x.shape)


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x.chunk(2, dim=1)``; traced for ONNX, with the split point a constant (chunk traces it
    from the shape). Eager runs keep chunk: on channels_last tensors the slices' backward sums
    gradients in another order, and trained weights would no longer be bit-identical to
    those of the same seed before."""
    if not torch.onnx.is_in_onnx_export():
        return x.chunk(2, dim=1)
    c = _dims(x)[1]
    return x[:, :(c + 1) // 2], x[:, (c + 1) // 2:]


def _resize_to(x: torch.Tensor, like: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` resized to the spatial size of ``like`` (nearest, or bilinear without aligned
    corners). Where that size is a whole multiple of ``x``'s, given as a scale factor: the same
    values (the sampling positions are ``(i + 0.5) / s - 0.5`` either way), and the ONNX
    Resize then needs no shape computed at run time."""
    (h, w), (th, tw) = _dims(x)[-2:], _dims(like)[-2:]
    extra = {} if mode == "nearest" else {"align_corners": False}
    if th % h == 0 and tw % w == 0:
        return F.interpolate(x, scale_factor=(float(th // h), float(tw // w)), mode=mode,
                             **extra)
    return F.interpolate(x, size=(th, tw), mode=mode, **extra)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: interleave the channels of ``groups`` equal groups."""
    _, c, h, w = _dims(x)
    n = -1
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        # Shuffle in NHWC memory and stay channels_last: the NCHW reshape below would copy a
        # channels_last tensor into NCHW and the next conv would copy it back (same values).
        y = x.permute(0, 2, 3, 1).reshape(n, h, w, groups, c // groups).transpose(3, 4)
        return y.reshape(n, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def shuffle_cat(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``channel_shuffle(torch.cat([a, b], dim=1), 2)`` in one copy: channels a0, b0, a1, b1..."""
    _, c, h, w = _dims(a)
    n = -1
    if a.stride(1) == 1 and h * w > 1:
        # channels_last (or a channel slice of one): interleave along NHWC's innermost dim
        y = torch.stack([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)], dim=4)
        return y.reshape(n, h, w, 2 * c).permute(0, 3, 1, 2)
    return torch.stack([a, b], dim=2).reshape(n, 2 * c, h, w)


class Stem(nn.Module):
    """Stride-4 stem: 3x3 s2 conv, then a two-path stride-2 shuffle block."""

    def __init__(self, in_channels: int = 3, channels: int = 32):
        super().__init__()
        half = channels // 2
        self.conv1 = _conv_bn(in_channels, channels, 3, stride=2)
        # Path A: strided depthwise + pointwise on one half of the channels.
        self.branch_a = nn.Sequential(
            _conv_bn(half, half, 3, stride=2, groups=half, relu=False),
            _conv_bn(half, half, 1),
        )
        # Path B: pointwise expand, strided depthwise, pointwise project on the other half.
        self.branch_b = nn.Sequential(
            _conv_bn(half, channels, 1),
            _conv_bn(channels, channels, 3, stride=2, groups=channels, relu=False),
            _conv_bn(channels, channels - half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        a, b = _halves(x)
        return shuffle_cat(self.branch_a(a), self.branch_b(b))


def _adaptive_pool_matrix(n: int, m: int, like: torch.Tensor) -> torch.Tensor:
    """(m, n) matrix whose row i averages the inputs of adaptive average pooling's bin i:
    ``floor(i * n / m)`` up to ``ceil((i + 1) * n / m)``, as torch's kernel does."""
    mat = torch.zeros(m, n, dtype=like.dtype, device=like.device)
    for i in range(m):
        a, b = (i * n) // m, -((-(i + 1) * n) // m)
        mat[i, a:b] = 1.0 / (b - a)
    return mat


def _pool_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Average-pool ``x`` to ``size``: adaptive average pooling, in a form the legacy ONNX
    exporter can write at every input size. Where the sizes divide (every input side a
    multiple of 32) it is a plain avg_pool2d; elsewhere two matrix products with fixed
    averaging matrices, since the exporter refuses adaptive_avg_pool2d at sizes that do not
    divide. Both compute the same bin means as adaptive_avg_pool2d."""
    h, w = _dims(x)[-2:]
    th, tw = int(size[0]), int(size[1])
    if h % th == 0 and w % tw == 0:
        return F.avg_pool2d(x, kernel_size=(h // th, w // tw))
    return _adaptive_pool_matrix(h, th, x) @ x @ _adaptive_pool_matrix(w, tw, x).t()


class CrossResolutionWeighting(nn.Module):
    """Channel weights for every branch, computed jointly from all branches."""

    def __init__(self, channels: Sequence[int], reduce_ratio: int = 8):
        super().__init__()
        self.channels = list(channels)
        total = sum(self.channels)
        mid = max(1, total // reduce_ratio)
        self.reduce = _conv_bn(total, mid, 1)
        self.expand = nn.Sequential(Pointwise(mid, total, bias=False),
                                    nn.BatchNorm2d(total), nn.Sigmoid())

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        size = xs[-1].shape[-2:]
        pooled = [_pool_to(x, size) for x in xs[:-1]] + [xs[-1]]
        weights = self.expand(self.reduce(torch.cat(pooled, dim=1))).split(self.channels, dim=1)
        return [x * _resize_to(w, x, "nearest")
                for x, w in zip(xs, weights)]


class SpatialWeighting(nn.Module):
    """Squeeze-and-excite channel weights from one branch's global context."""

    def __init__(self, channels: int, ratio: int = 4):
        super().__init__()
        mid = max(1, channels // ratio)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            Pointwise(channels, mid), nn.ReLU(inplace=True),
            Pointwise(mid, channels), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x)


class ConditionalChannelWeighting(nn.Module):
    """Lite-HRNet's block: shuffle block whose 1x1 convs are replaced by cheap weightings."""

    def __init__(self, channels: Sequence[int], reduce_ratio: int = 8):
        super().__init__()
        half = [c // 2 for c in channels]
        self.cross = CrossResolutionWeighting(half, reduce_ratio)
        self.depthwise = nn.ModuleList(_conv_bn(c, c, 3, groups=c, relu=False) for c in half)
        self.spatial = nn.ModuleList(SpatialWeighting(c) for c in half)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        keep, work = zip(*(_halves(x) for x in xs))
        work = self.cross(list(work))
        work = [sw(dw(w)) for w, dw, sw in zip(work, self.depthwise, self.spatial)]
        return [shuffle_cat(k, w) for k, w in zip(keep, work)]


class Fuse(nn.Module):
    """HRNet-style exchange: every output branch sums all input branches, then ReLU."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        n = len(channels)
        self.paths = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # lower resolution: match channels, upsampled in forward
                    row.append(_conv_bn(channels[j], channels[i], 1, relu=False))
                else:  # higher resolution: (i - j) strided depthwise-separable convs
                    steps = [_dw_sep(channels[j], channels[j], stride=2) for _ in range(i - j - 1)]
                    steps.append(_dw_sep(channels[j], channels[i], stride=2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.paths.append(row)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = []
        for i, row in enumerate(self.paths):
            acc = xs[i]
            for j, path in enumerate(row):
                if j == i:
                    continue
                y = path(xs[j])
                if j > i:
                    y = _resize_to(y, xs[i], "nearest")
                acc = acc + y
            outs.append(self.relu(acc))
        return outs


class LiteModule(nn.Module):
    def __init__(self, channels: Sequence[int], num_blocks: int, reduce_ratio: int):
        super().__init__()
        self.blocks = nn.ModuleList(ConditionalChannelWeighting(channels, reduce_ratio)
                                    for _ in range(num_blocks))
        self.fuse = Fuse(channels) if len(channels) > 1 else None

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        for block in self.blocks:
            xs = block(xs)
        return self.fuse(xs) if self.fuse is not None else xs


class Transition(nn.Module):
    """Adapts existing branches' channels and opens a new half-resolution branch."""

    def __init__(self, cin: Sequence[int], cout: Sequence[int]):
        super().__init__()
        self.layers = nn.ModuleList()
        for i, c in enumerate(cout):
            if i < len(cin):
                self.layers.append(nn.Identity() if cin[i] == c else _dw_sep(cin[i], c))
            else:
                self.layers.append(_dw_sep(cin[-1], c, stride=2))
        self.num_in = len(cin)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [layer(xs[min(i, self.num_in - 1)]) for i, layer in enumerate(self.layers)]


class IterativeHead(nn.Module):
    """Low-to-high refinement: upsample, add, depthwise-separable conv; returns stride-4 map."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        rev = list(channels)[::-1]
        outs = rev[1:] + rev[-1:]
        self.projects = nn.ModuleList(_dw_sep_relu(ci, co) for ci, co in zip(rev, outs))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        last: torch.Tensor | None = None
        for x, proj in zip(xs[::-1], self.projects):
            if last is not None:
                x = x + _resize_to(last, x, "bilinear")
            last = proj(x)
        assert last is not None
        return last


def _dw_sep_relu(cin: int, cout: int) -> nn.Sequential:
    """Depthwise-separable conv with BN + ReLU after both convs (the head's refinement unit)."""
    return nn.Sequential(_conv_bn(cin, cin, 3, groups=cin), _conv_bn(cin, cout, 1))


class LiteHRNet(nn.Module):
    def __init__(self, num_joints: int = 17, with_mask: bool = False, stem_channels: int = 32,
                 num_modules: Sequence[int] = (2, 4, 2),
                 stage_channels: Sequence[Sequence[int]] = ((40, 80), (40, 80, 160),
                                                            (40, 80, 160, 320)),
                 num_blocks: int = 2, reduce_ratio: int = 8):
        super().__init__()
        if num_joints < 1:
            raise OdkdError(f"num_joints must be >= 1, got {num_joints}")
        if len(num_modules) != len(stage_channels):
            raise OdkdError("num_modules and stage_channels must have one entry per stage")
        if any(c % 2 for chans in stage_channels for c in chans) or stem_channels % 2:
            raise OdkdError("Lite-HRNet channel counts must be even (blocks split channels in half)")
        self.num_joints = num_joints
        self.with_mask = with_mask
        self.stem = Stem(3, stem_channels)
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev: Sequence[int] = (stem_channels,)
        for n_mod, chans in zip(num_modules, stage_channels):
            self.transitions.append(Transition(prev, chans))
            self.stages.append(nn.Sequential(*(LiteModule(chans, num_blocks, reduce_ratio)
                                               for _ in range(n_mod))))
            prev = chans
        self.head = IterativeHead(prev)
        self.final_layer = Pointwise(prev[0], num_joints)
        self.mask_layer = Pointwise(prev[0], 1) if with_mask else None
        self._init_weights()

    def _init_weights(self) -> None:
        # Lite-HRNet / HRNet init: small normal conv weights, BN at identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        xs = [self.stem(x)]
        for transition, stage in zip(self.transitions, self.stages):
            xs = transition(xs)
            for module in stage:
                xs = module(xs)
        f = self.head(xs)
        out = {"heatmaps": self.final_layer(f)}
        if self.mask_layer is not None:
            out["mask"] = self.mask_layer(f)
        return out


def litehrnet_18(num_joints: int = 17, with_mask: bool = False) -> LiteHRNet:
    """Lite-HRNet-18-like: modules (2, 4, 2), branches of (40, 80, 160, 320) channels."""
    return LiteHRNet(num_joints, with_mask, num_modules=(2, 4, 2))
