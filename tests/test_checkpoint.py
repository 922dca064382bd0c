from pathlib import Path

import numpy as np
import pytest
import torch

from odkd.cli import main as cli_main
from odkd.errors import CheckpointError
from odkd.models.checkpoint import (build_from_checkpoint, detect_format, extract_state_dict,
                                    load_weights, read_checkpoint, save_checkpoint)
from odkd.models.hrnet import hrnet_w16, hrnet_w32

# Copies of ../shared/formats (key names and shapes, no weights), so these layout checks
# run on any clone; test_hrnet checks the copies against ../shared when it is there.
FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Give every tensor (BN buffers included) distinctive values so equality means something."""
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                v.copy_(torch.rand_like(v) + 0.5 if "running_var" in k else torch.randn_like(v))
            else:
                v.fill_(7)
    return model


@pytest.fixture(scope="module")
def source_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return dict(_randomised(hrnet_w16()).state_dict())


def _prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def _mmpose(sd, head_prefix, v1):
    out = {}
    if v1:  # mmpose 1.x saves the data preprocessor's normalisation buffers first
        out["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)
        out["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)
    for k, v in sd.items():
        out[(head_prefix if k.startswith("final_layer.") else "backbone.") + k] = v
    meta = {"epoch": 210, "mmpose_version": "1.3.1" if v1 else "0.29.0"}
    if v1:  # numpy data in meta, as mmengine writes it
        meta["dataset_meta"] = {"sigmas": np.full(17, 0.05, dtype=np.float32),
                                "flip_indices": [0, 2, 1]}
    return {"meta": meta, "state_dict": out}


WRAPPERS = {
    "official": (lambda sd: dict(sd), "official"),
    "official_training": (lambda sd: {
        "epoch": 140, "model": "pose_hrnet", "perf": 0.74,
        "state_dict": _prefixed(sd, "module."), "best_state_dict": dict(sd),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}},
        "official_training"),
    "official_best_only": (lambda sd: {"epoch": 3, "best_state_dict": dict(sd)},
                           "official_training"),
    "mmpose0": (lambda sd: _mmpose(sd, "keypoint_head.", v1=False), "mmpose"),
    "mmpose1": (lambda sd: _mmpose(sd, "head.", v1=True), "mmpose"),
    "module_prefixed": (lambda sd: _prefixed(sd, "module."), "module_prefixed"),
}


def _assert_same(model, sd):
    got = model.state_dict()
    assert list(got) == list(sd)
    for k, v in sd.items():
        assert torch.equal(got[k], v), k


@pytest.mark.parametrize("kind", list(WRAPPERS))
def test_foreign_formats_load_strict(kind, source_sd, tmp_path, capsys):
    wrap, fmt = WRAPPERS[kind]
    obj = wrap(source_sd)
    assert detect_format(obj) == fmt
    path = tmp_path / f"{kind}.pth"
    torch.save(obj, path)
    torch.manual_seed(1)
    model = hrnet_w16()
    assert not torch.equal(model.conv1.weight, source_sd["conv1.weight"])
    assert load_weights(model, path) == fmt
    _assert_same(model, source_sd)
    assert str(path) in capsys.readouterr().out


def test_missing_key_is_named(source_sd):
    sd = dict(source_sd)
    del sd["stage3.1.branches.2.3.conv2.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing key\(s\): stage3\.1\.branches\.2\.3\."
                                              r"conv2\.weight"):
        load_weights(hrnet_w16(), sd)


def test_unexpected_key_is_named_with_file(source_sd, tmp_path):
    obj = _mmpose(source_sd, "head.", v1=True)
    obj["state_dict"]["head.deconv_layers.0.weight"] = torch.zeros(1)
    path = tmp_path / "extra.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(hrnet_w16(), path)
    msg = str(info.value)
    assert str(path) in msg and "mmpose" in msg
    assert "1 unexpected key(s): head.deconv_layers.0.weight" in msg
    assert "missing" not in msg


def test_shape_mismatch_and_long_lists_are_summarised(source_sd):
    with pytest.raises(CheckpointError, match=r"final_layer\.weight checkpoint \(17, 16, 1, 1\) "
                                              r"vs model \(5, 16, 1, 1\)"):
        load_weights(hrnet_w16(num_joints=5), source_sd)
    sd = {k: v for k, v in source_sd.items() if not k.startswith("stage4.")}
    with pytest.raises(CheckpointError, match=r"missing key\(s\): .*\(\d+ more\)") as info:
        load_weights(hrnet_w16(), sd)
    assert "stage4.0.branches.0.0.conv1.weight" in str(info.value)


def test_old_files_without_bn_counters_load(source_sd):
    sd = {k: v for k, v in source_sd.items() if not k.endswith("num_batches_tracked")}
    model = hrnet_w16()
    assert load_weights(model, sd, verbose=False) == "official"
    assert model.bn1.num_batches_tracked.item() == 0
    assert torch.equal(model.bn1.running_var, source_sd["bn1.running_var"])


def test_new_mask_head_only_when_asked(source_sd):
    model = hrnet_w16(with_mask=True)
    with pytest.raises(CheckpointError, match="mask_layer.weight, mask_layer.bias"):
        load_weights(model, source_sd)
    fresh = model.mask_layer.weight.clone()
    load_weights(model, source_sd, init_missing=("mask_layer.",))
    assert torch.equal(model.mask_layer.weight, fresh)
    assert torch.equal(model.final_layer.weight, source_sd["final_layer.weight"])


def test_odkd_round_trip(tmp_path):
    torch.manual_seed(2)
    model = _randomised(hrnet_w16(num_joints=5, with_mask=True))
    path = tmp_path / "sub" / "ck.pth"
    save_checkpoint(path, torch.nn.DataParallel(model), extra={"epoch": 3, "best_ap": 0.5})
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == "odkd" and raw["version"] == 1
    assert raw["model"] == {"name": "hrnet_w16", "num_joints": 5, "with_mask": True}
    assert raw["epoch"] == 3
    assert not any(k.startswith("module.") for k in raw["state_dict"])
    ck = read_checkpoint(path)
    assert detect_format(ck) == "odkd"
    sd, fmt = extract_state_dict(ck)
    assert fmt == "odkd" and list(sd) == list(model.state_dict())

    rebuilt = build_from_checkpoint(path, verbose=False)
    assert (rebuilt.odkd_name, rebuilt.num_joints, rebuilt.with_mask) == ("hrnet_w16", 5, True)
    _assert_same(rebuilt, model.state_dict())
    with pytest.raises(CheckpointError, match="model.name='hrnet_w16'"):
        build_from_checkpoint(path, name="hrnet_w32")
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(path, model, extra={"state_dict": {}})


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pth")
    bad = tmp_path / "corrupt.pth"
    good = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(3)}, good)
    bad.write_bytes(good.read_bytes()[:40])    # truncated zip
    with pytest.raises(CheckpointError, match=f"{bad}: cannot read checkpoint"):
        read_checkpoint(bad)
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "cfg": Path("x")}, unsafe)   # arbitrary object: refused
    with pytest.raises(CheckpointError, match="weights_only"):
        read_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="unrecognised checkpoint"):
        detect_format({"epoch": 1, "weights": [1, 2]})


def test_foreign_build_needs_name_and_infers_joints(tmp_path):
    torch.manual_seed(3)
    sd = _randomised(hrnet_w16(num_joints=5)).state_dict()
    path = tmp_path / "plain.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="pass the model name"):
        build_from_checkpoint(path)
    model = build_from_checkpoint(path, name="hrnet_w16", verbose=False)
    assert model.num_joints == 5 and not model.with_mask
    _assert_same(model, sd)


def _official_layout(width: str) -> dict[str, torch.Tensor]:
    path = FORMATS / f"hrnet_{width}_official_state_dict.txt"
    sd = {}
    for line in path.read_text().splitlines():
        key, shape = line.split("\t")
        if shape:
            sd[key] = torch.zeros(tuple(int(d) for d in shape.split(",")))
        else:   # 0-d num_batches_tracked
            sd[key] = torch.zeros((), dtype=torch.long)
    return sd


@pytest.mark.parametrize("wrapper", ["official", "mmpose0", "mmpose1"])
def test_official_w32_layout_loads(wrapper):
    sd = _official_layout("w32")
    wrap, fmt = WRAPPERS[wrapper]
    model = hrnet_w32()
    assert load_weights(model, wrap(sd), verbose=False) == fmt
    assert torch.count_nonzero(model.stage4[2].fuse_layers[0][3][0].weight) == 0


def test_cli_convert(source_sd, tmp_path, capsys):
    src = tmp_path / "mmpose.pth"
    torch.save(_mmpose(source_sd, "keypoint_head.", v1=False), src)
    dst = tmp_path / "out" / "odkd.pth"
    assert cli_main(["convert", str(src), str(dst), "--model", "hrnet_w16"]) == 0
    out = capsys.readouterr().out
    n_params = sum(v.numel() for k, v in source_sd.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert "mmpose" in out and f"{n_params:,} parameters" in out
    ck = read_checkpoint(dst)
    assert ck["format"] == "odkd" and ck["source_format"] == "mmpose"
    _assert_same(build_from_checkpoint(dst, verbose=False), source_sd)

    # Foreign files need --model; the CLI reports it as one error line, exit code 2.
    assert cli_main(["convert", str(src), str(tmp_path / "x.pth")]) == 2
    assert "pass the model name" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists()


@pytest.mark.parametrize("key, value, message", [
    ("stage2.0.branches.0.0.bn1.running_var", -1.0, r"running_var has \d+ negative value"),
    ("conv1.weight", float("nan"), r"conv1.weight has \d+ non-finite value"),
])
def test_nan_producing_weights_are_refused(source_sd, tmp_path, key, value, message):
    sd = {k: v.clone() for k, v in source_sd.items()}
    assert key in sd
    sd[key].view(-1)[0] = value
    path = tmp_path / "bad.pth"
    torch.save(sd, path)   # official layout, as an official W32 file
    with pytest.raises(CheckpointError, match=f"{path}: {key}.*" + message.split(" has ")[1]):
        build_from_checkpoint(path, name="hrnet_w16", verbose=False)


def test_unreadable_reasons_are_named(tmp_path):
    noise = tmp_path / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(noise)
    reason = str(e.value).split("cannot read checkpoint:", 1)[1].strip()
    assert reason and "\n" not in str(e.value) and "PyTorch 2.6" not in str(e.value)

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match=r"refused: the file asks to import and call "
                                              r"(builtins\.)?print") as e:
        read_checkpoint(evil)
    assert "\n" not in str(e.value) and "PyTorch 2.6" not in str(e.value)
