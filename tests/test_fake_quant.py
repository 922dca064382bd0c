"""odkd.models.fake_quant: which activations quantization-aware training rounds, and how."""
from __future__ import annotations

import torch
from torch import nn

from odkd.models import build_model
from odkd.models.fake_quant import ActivationFakeQuant, quantized_outputs


def test_movenet_rounds_the_tensors_its_int8_export_quantizes():
    model = build_model("movenet_lightning", 17, False)
    every = quantized_outputs(model)
    names = quantized_outputs(model, model.default_cfg["int8_fp32"])
    # activations (the linear bottleneck's Identity too), residual sums, convs without a BN
    assert {"backbone.stem.act", "backbone.blocks.1.project.act", "backbone.blocks.2",
            "fpn.lat16", "fpn.smooth16.dw"} <= set(names)
    # a conv and BN folded into the next activation are not rounded on their own; a block
    # without a residual sum is rounded through its last activation only
    assert not {"backbone.stem.conv", "backbone.stem.bn", "backbone.blocks.1"} & set(names)
    # the layers the export keeps in fp32 are skipped
    fp32 = {"backbone.last.act", "fpn.lat4", "fpn.smooth4.pw.act", "heatmap_head.pw",
            "final_layer"}
    assert fp32 <= set(every) and not fp32 & set(names)


def test_training_forward_is_rounded_to_256_levels_and_still_learns():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
                        nn.Conv2d(8, 4, 1))
    keys = list(net.state_dict())
    x = torch.randn(4, 3, 16, 16)
    net.train()
    plain = net(x).detach()                # train mode, before any rounding
    net.eval()
    ref = net(x)
    fq = ActivationFakeQuant(net)
    assert fq.names == ["2", "3"]          # the ReLU6 and the biased last conv
    assert torch.equal(net(x), ref)        # eval mode: untouched
    net.train()
    y = net(x)
    assert y.unique().numel() <= 256 < plain.unique().numel()
    assert (y - plain).abs().max() < 0.05 * (plain.max() - plain.min())   # a rounding, no more
    lo, hi = fq.ranges["3"]
    assert lo < 0 < hi                     # the conv's output range was observed
    y.square().mean().backward()           # straight-through: gradients reach the weights
    assert net[0].weight.grad.abs().sum() > 0
    assert list(net.state_dict()) == keys  # ranges are not part of the checkpoint
    fq.remove()                            # no optimizer step was taken: the plain output
    assert torch.equal(net(x).detach(), plain)
