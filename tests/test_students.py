"""Student architectures: output contract, odd input sizes, backward, size vs the teachers."""
import pytest
import torch

from odkd.models import build_model
from odkd.models.litehrnet import channel_shuffle
from odkd.models.simplebaseline import simplebaseline_mobilenetv2

STUDENTS = ["mobilenetv2", "shufflenetv2", "litehrnet_18"]
HRNET_W32_PARAMS = 28_535_000  # official README: 28.5M


@pytest.mark.parametrize("name", STUDENTS)
def test_student_contract_backward_and_size(name):
    torch.manual_seed(0)
    model = build_model(name, num_joints=17, with_mask=True)
    assert model.num_joints == 17 and model.with_mask is True
    x = torch.randn(2, 3, 64, 48)  # 48 is not a multiple of 32: exercises size handling
    out = model(x)
    assert set(out) == {"heatmaps", "mask"}
    assert out["heatmaps"].shape == (2, 17, 16, 12)
    assert out["mask"].shape == (2, 1, 16, 12)
    loss = out["heatmaps"].pow(2).mean() + out["mask"].mean()
    loss.backward()
    for pname in ("final_layer.weight", "mask_layer.weight"):
        grad = dict(model.named_parameters())[pname].grad
        assert grad is not None and grad.abs().sum() > 0, pname
    # Gradients must reach the first layer too (the whole network is trained).
    first = next(p for p in model.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert sum(p.numel() for p in model.parameters()) < HRNET_W32_PARAMS / 2


@pytest.mark.parametrize("name", STUDENTS)
def test_student_without_mask_and_other_joint_count(name):
    model = build_model(name, num_joints=5, with_mask=False).eval()
    assert model.with_mask is False
    assert not any(k.startswith("mask_layer") for k in model.state_dict())
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 64, 64))
    assert list(out) == ["heatmaps"]
    assert out["heatmaps"].shape == (1, 5, 16, 16)


def test_litehrnet_is_light():
    n = sum(p.numel() for p in build_model("litehrnet_18").parameters())
    assert 0.8e6 < n < 2.0e6


def test_simplebaseline_crop_keeps_alignment():
    # For W=48 the stride-32 map has 2 columns (rounded up), so the deconvs give 16 heatmap
    # columns; the model must crop the right-hand excess (which lies in the padding), not
    # resample, so that heatmap column i stays aligned with image column 4*i.
    torch.manual_seed(0)
    m = simplebaseline_mobilenetv2(num_joints=3).eval()
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        full = m.final_layer(m.deconv_layers(m.backbone(x)))
        out = m(x)["heatmaps"]
    assert full.shape[-1] == 16 and out.shape[-1] == 12
    torch.testing.assert_close(out, full[..., :16, :12])


def test_channel_shuffle_interleaves():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_litehrnet_pool_matches_adaptive_pool():
    import torch.nn.functional as F

    from odkd.models.litehrnet import _pool_to

    x = torch.randn(2, 4, 16, 12)
    for size in [(2, 2), (4, 3), (3, 5)]:  # (3, 5) does not divide 16x12: adaptive fallback
        torch.testing.assert_close(_pool_to(x, size), F.adaptive_avg_pool2d(x, size))
