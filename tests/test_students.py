"""Student architectures: output contract, odd input sizes, backward, size vs the teachers."""
import pytest
import torch

from odkd.models import build_model
from odkd.models.litehrnet import channel_shuffle, shuffle_cat
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


CL = torch.channels_last


@pytest.mark.parametrize("channels_last", [False, True])
def test_shuffles_keep_the_layout_and_the_values(channels_last):
    # The channels_last paths only move data, so they must give exactly the NCHW result, and
    # stay channels_last (an NCHW result makes the next conv copy it back, costing CPU speed).
    x = torch.randn(2, 8, 3, 5)
    a, b = x.chunk(2, dim=1)
    want_shuffle = channel_shuffle(x, 2)
    want_cat = channel_shuffle(torch.cat([a, b], dim=1), 2)
    if channels_last:
        x = x.contiguous(memory_format=CL)
        a, b = x.chunk(2, dim=1)  # channel slices of a channels_last tensor: strided
    got_shuffle, got_cat = channel_shuffle(x, 2), shuffle_cat(a, b)
    assert torch.equal(got_shuffle, want_shuffle) and torch.equal(got_cat, want_cat)
    for y in (got_shuffle, got_cat):
        assert y.is_contiguous(memory_format=CL if channels_last else torch.contiguous_format)


def test_litehrnet_convs_see_channels_last_inputs():
    # In a channels_last Lite-HRNet every conv input is channels_last (or a channel slice of
    # one): before the layout-keeping shuffles, 119 of 302 conv inputs per forward came in
    # NCHW and were copied back, about 1.2x of a CPU training step (tools/step_pair.py).
    model = build_model("litehrnet_18", 17, True).to(memory_format=CL)
    seen = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    model(torch.randn(2, 3, 96, 64).contiguous(memory_format=CL))
    nchw = [t.shape for t in seen
            if t.stride(1) != 1 and t.shape[-1] * t.shape[-2] > 1]
    assert len(seen) > 200 and nchw == []


@pytest.mark.parametrize("shape", [(3, 40, 12, 8), (3, 20, 1, 1), (2, 16, 5, 7)])
@pytest.mark.parametrize("bias", [False, True])
def test_pointwise_matmul_path_equals_the_conv(shape, bias):
    # Lite-HRNet's 1x1 convs run as a matmul on channels_last CPU inputs (faster there):
    # same values and gradients as the conv, output stays channels_last, state_dict unchanged.
    from odkd.models.litehrnet import Pointwise

    torch.manual_seed(0)
    pw = Pointwise(shape[1], 24, bias=bias)
    conv = torch.nn.Conv2d(shape[1], 24, 1, bias=bias)
    assert list(pw.state_dict()) == list(conv.state_dict())
    conv.load_state_dict(pw.state_dict())
    x = torch.randn(shape)
    xc = x.clone().contiguous(memory_format=CL).requires_grad_()
    xr = x.clone().requires_grad_()
    got, want = pw(xc), conv(xr)
    assert got.is_contiguous(memory_format=CL)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(want)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(xc.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pw.weight.grad, conv.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(pw.bias.grad, conv.bias.grad, rtol=1e-4, atol=1e-4)


def test_litehrnet_1x1_convs_are_pointwise():
    # Every stride-1 ungrouped 1x1 conv takes the matmul path; the rest stay plain convs.
    from odkd.models.litehrnet import Pointwise

    convs = [m for m in build_model("litehrnet_18", 17, True).modules()
             if isinstance(m, torch.nn.Conv2d)]
    plain_1x1 = [m for m in convs if not isinstance(m, Pointwise)
                 and m.kernel_size == (1, 1) and m.groups == 1 and m.stride == (1, 1)]
    assert sum(isinstance(m, Pointwise) for m in convs) > 150 and plain_1x1 == []


def test_litehrnet_pool_matches_adaptive_pool():
    import torch.nn.functional as F

    from odkd.models.litehrnet import _pool_to

    # float64: the two forms sum in different orders, equal to rounding
    x = torch.randn(2, 4, 16, 12, dtype=torch.float64)
    # (3, 5), (5, 5), (7, 9) do not divide 16x12: the matrix form, the one the ONNX
    # exporter can write at such sizes (e.g. a 144x192 input pools 36x48 maps to 5x6)
    for size in [(2, 2), (4, 3), (3, 5), (5, 5), (7, 9), (16, 12), (1, 1)]:
        torch.testing.assert_close(_pool_to(x, size), F.adaptive_avg_pool2d(x, size),
                                   rtol=1e-12, atol=1e-12)


def test_litehrnet_static_shape_helpers_equal_what_they_replace():
    """_resize_to and _halves give the ONNX export constant shapes; in PyTorch they must be
    interpolate(size=...) and chunk(2) exactly."""
    import torch.nn.functional as F

    from odkd.models.litehrnet import _halves, _resize_to

    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    for target in [(6, 8), (12, 4), (3, 4), (5, 7), (9, 12)]:   # (5, 7): not a multiple
        like = torch.zeros(1, 1, *target)
        for mode, extra in (("nearest", {}), ("bilinear", {"align_corners": False})):
            torch.testing.assert_close(_resize_to(x, like, mode),
                                       F.interpolate(x, size=target, mode=mode, **extra),
                                       rtol=1e-12, atol=1e-12)
    for c in (4, 5):
        y = torch.randn(2, c, 3, 3)
        for got, want in zip(_halves(y), y.chunk(2, dim=1)):
            assert torch.equal(got, want)


def test_litehrnet_onnx_graph_computes_no_shapes(tmp_path):
    """Traced at a size whose resamplings are whole multiples, the graph holds no Shape node:
    every size is a constant, so onnxruntime does no shape arithmetic per run."""
    import onnx

    from odkd.deploy.onnx_export import export_onnx
    from odkd.spec import spec_for_model

    model = build_model("litehrnet_18").eval()
    path = str(tmp_path / "m.onnx")
    export_onnx(model, spec_for_model(model, input_size=(64, 64)), path)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert "Shape" not in ops and "Resize" in ops


def test_litehrnet_eager_halves_are_chunks():
    # The constant-split slices are for the ONNX trace only: in eager mode the halves must be
    # chunk's, whose channels_last backward trained every committed Lite-HRNet (slices sum the
    # gradients in another order, and the same seed would no longer give the same weights).
    from odkd.models.litehrnet import _halves

    x = torch.randn(2, 6, 4, 4, requires_grad=True).contiguous(memory_format=torch.channels_last)
    a, b = _halves(x)
    assert type(a.grad_fn).__name__ == type(x.chunk(2, dim=1)[0].grad_fn).__name__
    assert torch.equal(a, x[:, :3]) and torch.equal(b, x[:, 3:])
