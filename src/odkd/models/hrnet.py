"""HRNet (pose_hrnet) for top-down heatmap pose estimation.

Parameter names, order and shapes match ``PoseHighResolutionNet`` of the official
deep-high-resolution-net.pytorch repository (lib/models/pose_hrnet.py), so the official COCO
checkpoints load with ``strict=True``. The layouts are pinned in ``shared/formats`` and checked
by tests/test_hrnet.py. Naming traps this module reproduces on purpose:

* stage4's last module fuses only into branch 0 (multi-scale output off);
* a transition slot that keeps its width is ``None`` (no keys); a width-changing slot is
  ``Sequential(conv, BN, ReLU)`` (``transitionN.i.0.*``) while a new branch is a Sequential of
  such Sequentials (``transitionN.i.0.0.*``);
* fuse up-paths are conv1x1, BN, nearest upsample; down-paths are chains of strided conv3x3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from odkd.errors import OdkdError

BN_MOMENTUM = 0.1


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = _bn(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = _bn(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = _bn(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


def _make_blocks(block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int,
                 num_blocks: int) -> nn.Sequential:
    """``num_blocks`` residual blocks; the first gets a 1x1 projection if the width changes."""
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * block.expansion, kernel_size=1, bias=False),
            _bn(planes * block.expansion),
        )
    layers = [block(inplanes, planes, 1, downsample)]
    layers += [block(planes * block.expansion, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by an all-to-all fusion (sum)."""

    def __init__(self, channels: list[int], num_blocks: int, multi_scale_output: bool) -> None:
        super().__init__()
        n = len(channels)
        self.branches = nn.ModuleList(
            _make_blocks(BasicBlock, c, c, num_blocks) for c in channels)
        # Without multi-scale output only branch 0 (the highest resolution) is produced.
        self.fuse_layers = self._make_fuse_layers(channels, n if multi_scale_output else 1)
        self.relu = nn.ReLU(inplace=False)

    @staticmethod
    def _make_fuse_layers(channels: list[int], num_outputs: int) -> nn.ModuleList | None:
        n = len(channels)
        if n == 1:
            return None
        fuse = nn.ModuleList()
        for i in range(num_outputs):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:    # lower resolution -> upsample
                    row.append(nn.Sequential(
                        nn.Conv2d(channels[j], channels[i], kernel_size=1, bias=False),
                        _bn(channels[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                    ))
                elif j == i:
                    row.append(None)
                else:        # higher resolution -> (i - j) strided convs, ReLU between them
                    steps = []
                    for k in range(i - j):
                        if k == i - j - 1:
                            steps.append(nn.Sequential(
                                _conv3x3(channels[j], channels[i], 2), _bn(channels[i])))
                        else:
                            steps.append(nn.Sequential(
                                _conv3x3(channels[j], channels[j], 2), _bn(channels[j]),
                                nn.ReLU(inplace=True)))
                    row.append(nn.Sequential(*steps))
            fuse.append(row)
        return fuse

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        out = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j, layer in enumerate(row):
                if j != i:
                    y = y + layer(xs[j])
            out.append(self.relu(y))
        return out


@dataclass(frozen=True)
class StageSpec:
    num_modules: int
    channels: tuple[int, ...]   # one width per branch, highest resolution first
    num_blocks: int = 4         # BasicBlocks per branch


def _make_transition(pre: list[int], cur: list[int]) -> nn.ModuleList:
    """Adapt the previous stage's outputs to the next stage's branches.

    Existing branches get a conv only when their width changes (else ``None``); each new branch
    is made from the last previous branch by strided conv3x3s.
    """
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(pre):
            if pre[i] != c:
                layers.append(nn.Sequential(_conv3x3(pre[i], c), _bn(c), nn.ReLU(inplace=True)))
            else:
                layers.append(None)
        else:
            steps = []
            for k in range(i + 1 - len(pre)):
                cin = pre[-1]
                cout = c if k == i - len(pre) else cin
                steps.append(nn.Sequential(_conv3x3(cin, cout, 2), _bn(cout),
                                           nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*steps))
    return layers


class PoseHighResolutionNet(nn.Module):
    """HRNet backbone + 1x1 heatmap head (+ optional 1x1 mask head ``mask_layer``)."""

    def __init__(self, stages: tuple[StageSpec, StageSpec, StageSpec], num_joints: int = 17,
                 with_mask: bool = False, name: str = "hrnet") -> None:
        super().__init__()
        self.odkd_name = name
        self.num_joints = num_joints
        self.with_mask = with_mask

        # Stem: two stride-2 convs (input / 4), then 4 Bottlenecks to 256 channels.
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _make_blocks(Bottleneck, 64, 64, 4)

        # Attribute assignment order fixes the state_dict order: transition1, stage2, ...
        s2, s3, s4 = stages
        self.transition1 = _make_transition([64 * Bottleneck.expansion], list(s2.channels))
        self.stage2 = self._make_stage(s2, multi_scale_output=True)
        self.transition2 = _make_transition(list(s2.channels), list(s3.channels))
        self.stage3 = self._make_stage(s3, multi_scale_output=True)
        self.transition3 = _make_transition(list(s3.channels), list(s4.channels))
        self.stage4 = self._make_stage(s4, multi_scale_output=False)

        self.final_layer = nn.Conv2d(s4.channels[0], num_joints, kernel_size=1)
        self.mask_layer = nn.Conv2d(s4.channels[0], 1, kernel_size=1) if with_mask else None
        self._init_weights()

    @staticmethod
    def _make_stage(spec: StageSpec, multi_scale_output: bool) -> nn.Sequential:
        modules = []
        for m in range(spec.num_modules):
            # Only the stage's last module may drop the multi-scale output.
            last = m == spec.num_modules - 1
            modules.append(HighResolutionModule(
                list(spec.channels), spec.num_blocks, multi_scale_output or not last))
        return nn.Sequential(*modules)

    def _init_weights(self) -> None:
        # As upstream: N(0, 0.001) convs, zero conv biases, identity BatchNorms.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @staticmethod
    def _transition(layers: nn.ModuleList, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(layers):
            src = xs[i] if i < len(xs) else xs[-1]   # new branches grow from the lowest res
            out.append(src if layer is None else layer(src))
        return out

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # The fixed-factor upsamples of the fuse layers only line up when the 1/32 branch is
        # exact; fail with a readable message rather than a tensor-size mismatch deep inside.
        h, w = x.shape[-2:]
        if not torch.jit.is_tracing() and (h % 32 or w % 32):
            raise OdkdError(f"{self.odkd_name}: input height and width must be multiples of 32 "
                            f"(got {h}x{w}); e.g. data.input_size [192, 256] or [64, 64]")
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        ys = self.stage2(self._transition(self.transition1, [x]))
        ys = self.stage3(self._transition(self.transition2, ys))
        ys = self.stage4(self._transition(self.transition3, ys))
        feat = ys[0]
        out = {"heatmaps": self.final_layer(feat)}
        if self.mask_layer is not None:
            out["mask"] = self.mask_layer(feat)
        return out


def _stages(c: int) -> tuple[StageSpec, StageSpec, StageSpec]:
    """The official W32/W48 schedule (1/4/3 modules), scaled to base width ``c``."""
    return (StageSpec(1, (c, 2 * c)),
            StageSpec(4, (c, 2 * c, 4 * c)),
            StageSpec(3, (c, 2 * c, 4 * c, 8 * c)))


def hrnet_w16(num_joints: int = 17, with_mask: bool = False) -> PoseHighResolutionNet:
    """Small HRNet (branch widths 16/32/64/128) with the W32 module counts; no official weights."""
    return PoseHighResolutionNet(_stages(16), num_joints, with_mask, name="hrnet_w16")


def hrnet_w32(num_joints: int = 17, with_mask: bool = False) -> PoseHighResolutionNet:
    return PoseHighResolutionNet(_stages(32), num_joints, with_mask, name="hrnet_w32")


def hrnet_w48(num_joints: int = 17, with_mask: bool = False) -> PoseHighResolutionNet:
    return PoseHighResolutionNet(_stages(48), num_joints, with_mask, name="hrnet_w48")
