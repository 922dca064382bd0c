from pathlib import Path

import pytest
import torch

from odkd.errors import OdkdError
from odkd.models.hrnet import hrnet_w16, hrnet_w32, hrnet_w48

# Copies of ../shared/formats (key names and shapes, no weights), so these layout checks
# run on any clone; test_hrnet checks the copies against ../shared when it is there.
FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"
BUILDERS = {"w32": hrnet_w32, "w48": hrnet_w48}


def read_layout(width: str) -> list[tuple[str, tuple[int, ...]]]:
    path = FORMATS / f"hrnet_{width}_official_state_dict.txt"
    rows = []
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        rows.append((key, tuple(int(d) for d in shape.split(",")) if shape else ()))
    return rows


def meta_model(builder, **kw):
    # Meta tensors: shapes only, no memory or init cost (W48 has 64M parameters).
    with torch.device("meta"):
        return builder(**kw)


@pytest.mark.parametrize("width", ["w32", "w48"])
def test_state_dict_matches_official_layout(width):
    expected = read_layout(width)
    model = meta_model(BUILDERS[width])
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert len(got) == len(expected) == 1754
    # Same keys, same shapes, same order.
    assert got == expected


def test_fixture_layouts_are_copies_of_shared():
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "formats"
    if not shared.is_dir():
        pytest.skip("../shared/formats not present (the layout tests use the fixture copies)")
    for name in ("hrnet_w32_official_state_dict.txt", "hrnet_w48_official_state_dict.txt",
                 "README.md"):
        assert (FORMATS / name).read_bytes() == (shared / name).read_bytes(), name


@pytest.mark.parametrize("width,count", [("w32", 28_536_113), ("w48", 63_595_745)])
def test_parameter_counts_match_official(width, count):
    model = meta_model(BUILDERS[width])
    assert sum(p.numel() for p in model.parameters()) == count


def test_layout_traps():
    model = meta_model(hrnet_w32)
    # Multi-scale output off in stage4's last module: it only fuses into branch 0.
    assert len(model.stage4[2].fuse_layers) == 1
    assert len(model.stage4[1].fuse_layers) == 4
    # Width-keeping transition slots are None; stage2 -> stage3 only grows a branch.
    assert model.transition2[0] is None and model.transition2[1] is None
    keys = model.state_dict().keys()
    assert "transition1.0.0.weight" in keys          # width change 256 -> 32
    assert "transition1.1.0.0.weight" in keys        # new branch
    assert isinstance(model.stage2[0].fuse_layers[0][1][2], torch.nn.Upsample)


def test_w16_forward_shapes_and_mask():
    torch.manual_seed(0)
    model = hrnet_w16().eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"hrnet_w16 parameters: {n_params:,}")
    assert 5_000_000 < n_params < 10_000_000
    assert (model.odkd_name, model.num_joints, model.with_mask) == ("hrnet_w16", 17, False)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        out = model(x)
    assert set(out) == {"heatmaps"}
    assert out["heatmaps"].shape == (1, 17, 16, 24)

    masked = hrnet_w16(num_joints=5, with_mask=True).eval()
    plain_keys = set(model.state_dict())
    extra = [k for k in masked.state_dict() if k not in plain_keys]
    assert extra == ["mask_layer.weight", "mask_layer.bias"]
    with torch.no_grad():
        out = masked(x)
    assert set(out) == {"heatmaps", "mask"}
    assert out["heatmaps"].shape == (1, 5, 16, 24)
    assert out["mask"].shape == (1, 1, 16, 24)


def test_w32_forward_shape():
    model = hrnet_w32(num_joints=17).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 192))
    assert out["heatmaps"].shape == (1, 17, 64, 48)


def test_every_parameter_is_used():
    # Catches a forward that skips a branch, fuse path or transition.
    torch.manual_seed(0)
    model = hrnet_w16(with_mask=True)
    out = model(torch.randn(1, 3, 64, 64))
    (out["heatmaps"].sum() + out["mask"].sum()).backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert unused == []


def test_init_like_official():
    torch.manual_seed(0)
    model = hrnet_w16()
    w = model.stage4[0].branches[3][0].conv1.weight
    assert abs(w.std().item() - 0.001) < 1e-4
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    assert torch.all(model.final_layer.bias == 0)


def test_input_not_multiple_of_32_is_clear_error():
    with pytest.raises(OdkdError, match="multiples of 32"):
        hrnet_w16()(torch.randn(1, 3, 64, 48))
