"""SimpleBaseline students (Xiao et al., ECCV 2018) on light torchvision backbones.

Architecture: backbone at stride 32 -> ``num_deconv`` x (ConvTranspose2d k4 s2 p1, no bias
+ BN + ReLU) -> 1x1 ``final_layer`` (heatmaps) and, optionally, a 1x1 ``mask_layer`` (instance
mask logits) on the same stride-4 features.

Widths follow mmpose's ``mobilenetv2`` / ``shufflenetv2`` SimpleBaseline configs (three 256-wide
deconvs) so that numbers stay comparable with the published students (roughly 9.6M / 7.5M params,
which is still about a third of HRNet-W32's 28.5M). Almost all head parameters sit in the first
deconv (``in_channels * 256 * 16``), so ``deconv_channels=128`` roughly halves the model when a
lighter student is wanted.

Backbones come from torchvision (the field's reference implementation) built with
``weights=None``: nothing is ever downloaded; ImageNet initialisation, if wanted, is loaded
explicitly through the checkpoint module.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torchvision

from odkd.errors import OdkdError


def _deconv_head(in_channels: int, widths: Sequence[int]) -> nn.Sequential:
    """Stack of stride-2 transposed convs; each doubles the spatial size exactly (k4 s2 p1)."""
    layers: list[nn.Module] = []
    c = in_channels
    for w in widths:
        layers += [
            nn.ConvTranspose2d(c, w, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
        ]
        c = w
    return nn.Sequential(*layers)


class SimpleBaseline(nn.Module):
    """Backbone (stride 32) + deconv head (back to stride 4) + 1x1 prediction convs."""

    def __init__(self, backbone: nn.Module, backbone_channels: int, num_joints: int = 17,
                 with_mask: bool = False, deconv_channels: Sequence[int] = (256, 256, 256)):
        super().__init__()
        if num_joints < 1:
            raise OdkdError(f"num_joints must be >= 1, got {num_joints}")
        if len(deconv_channels) != 3:
            # The backbones end at stride 32; three x2 deconvs bring them to the stride-4 heatmaps
            # that the rest of odkd (targets, decode) assumes.
            raise OdkdError(f"deconv_channels needs 3 widths (stride 32 -> 4), got {deconv_channels}")
        self.num_joints = num_joints
        self.with_mask = with_mask
        self.backbone = backbone
        self.deconv_layers = _deconv_head(backbone_channels, deconv_channels)
        c = deconv_channels[-1]
        self.final_layer = nn.Conv2d(c, num_joints, kernel_size=1)
        self.mask_layer = nn.Conv2d(c, 1, kernel_size=1) if with_mask else None
        self._init_head()

    def _init_head(self) -> None:
        # SimpleBaseline's init: tiny-std deconv/prediction weights so the initial heatmaps are ~0;
        # the backbone keeps torchvision's own initialisation.
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in (self.final_layer, self.mask_layer):
            if m is not None:
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2] // 4, x.shape[-1] // 4
        f = self.deconv_layers(self.backbone(x))
        # When H or W is not a multiple of 32 the padded strided convs round the stride-32 map up
        # (e.g. 48 -> 2 columns), so the deconvs overshoot. Cell i of the upsampled map still
        # covers input pixels near 4*i, so cropping the bottom/right excess (which lies in the
        # padding) keeps the heatmap aligned with the input; no-op for 256x192.
        f = f[..., :h, :w]
        out = {"heatmaps": self.final_layer(f)}
        if self.mask_layer is not None:
            out["mask"] = self.mask_layer(f)
        return out


def _shufflenet_v2_features(width: str = "1.0") -> tuple[nn.Module, int]:
    """ShuffleNetV2 x1.0 without its classifier: conv1, maxpool, stage2-4, conv5 (1024 ch)."""
    if width != "1.0":
        raise OdkdError(f"only ShuffleNetV2 x1.0 is wired up, got {width}")
    net = torchvision.models.shufflenet_v2_x1_0(weights=None)
    features = nn.Sequential(net.conv1, net.maxpool, net.stage2, net.stage3, net.stage4, net.conv5)
    return features, net.conv5[0].out_channels


def simplebaseline_mobilenetv2(num_joints: int = 17, with_mask: bool = False,
                               deconv_channels: Sequence[int] = (256, 256, 256)) -> SimpleBaseline:
    """MobileNetV2 (width 1.0, last 1x1 conv to 1280 ch, stride 32) + deconv head."""
    backbone = torchvision.models.mobilenet_v2(weights=None).features
    return SimpleBaseline(backbone, 1280, num_joints, with_mask, deconv_channels)


def simplebaseline_shufflenetv2(num_joints: int = 17, with_mask: bool = False,
                                deconv_channels: Sequence[int] = (256, 256, 256)) -> SimpleBaseline:
    """ShuffleNetV2 x1.0 (conv5 to 1024 ch, stride 32) + deconv head."""
    backbone, channels = _shufflenet_v2_features("1.0")
    return SimpleBaseline(backbone, channels, num_joints, with_mask, deconv_channels)
