"""odkd.teachers.convert and tf_to_onnx: the TF.js fused-op patch, one-line errors for a TF.js
graph without its weights, the tolerance refusal, converted models in the cache (hash from the
manifest), a hand-made TF.js graph converted in the conversion environment (skipped when
`odkd teachers fetch` has not created it: this test never installs TensorFlow), and
movenet-thunder's parity with onnxruntime called directly (skipped when not fetched)."""
import hashlib
import json
import os

import cv2
import numpy as np
import pytest

from odkd.errors import CheckpointError
from odkd.geometry import affine_points, get_affine_transform
from odkd.teachers import convert, get_teacher, store
from conftest import make_tgz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSP_IMAGE = os.path.join(ROOT, "..", "shared", "data", "real", "lsp", "images", "im1001.jpg")


def _fused_conv(name, num_args=1, **extra):
    attr = {"T": {"type": "DT_FLOAT"}, "num_args": {"i": str(num_args)},
            "strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": {"s": "U0FNRQ=="},
            "data_format": {"s": "TkhXQw=="}, "dilations": {"list": {"i": ["1", "1", "1", "1"]}},
            "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}},        # BiasAdd, Relu
            "explicit_paddings": {"list": {}}, **extra}
    return {"name": name, "op": "_FusedConv2D", "input": ["x", "w", "b"], "attr": attr}


def test_patch_adds_targs_and_renames_depthwise():
    conv = _fused_conv("conv", num_args=2)
    dw = dict(_fused_conv("dw"), op="FusedDepthwiseConv2dNative")
    done = _fused_conv("done")
    done["attr"]["TArgs"] = {"list": {"type": ["DT_HALF"]}}
    other = {"name": "id", "op": "Identity", "input": ["conv"]}
    assert convert.patch_fused_ops([conv, dw, done, other]) == 2
    assert conv["attr"]["TArgs"] == {"list": {"type": ["DT_FLOAT", "DT_FLOAT"]}}
    assert dw["op"] == "_FusedDepthwiseConv2dNative"
    assert "explicit_paddings" not in dw["attr"] and "TArgs" not in dw["attr"]
    assert done["attr"]["TArgs"] == {"list": {"type": ["DT_HALF"]}}     # left as it was
    assert other == {"name": "id", "op": "Identity", "input": ["conv"], "attr": {}}
    bad = dict(_fused_conv("bad"), op="FusedDepthwiseConv2dNative")
    bad["attr"]["explicit_paddings"] = {"list": {"i": ["0", "0", "1", "1"]}}
    with pytest.raises(convert.ConvertError, match="node bad: explicit paddings"):
        convert.patch_fused_ops([bad])


def test_free_input_dimensions_take_the_signature_shape():
    free = {"name": "input", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [
        {"size": "1"}, {"size": "-1"}, {"size": "-1"}, {"size": "3"}]}}}}
    fixed = {"name": "other", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [
        {"size": "2"}]}}}}
    sig = {"inputs": {"input": {"name": "input:0", "tensorShape": {"dim": [
        {"size": "1"}, {"size": "256"}, {"size": "256"}, {"size": "3"}]}},
        "other": {"name": "other:0", "tensorShape": {"dim": [{"size": "5"}]}}}}
    assert convert.fix_input_shapes([free, fixed], sig) == 1
    assert [d["size"] for d in free["attr"]["shape"]["shape"]["dim"]] == ["1", "256", "256", "3"]
    assert fixed["attr"]["shape"]["shape"]["dim"] == [{"size": "2"}]      # already fixed


# ------------------------------------------------------------------ a hand-made TF.js graph
W = np.array([[0.5, -1.0, 0.25], [2.0, 0.125, -0.5]], np.float32)     # 1x1 conv, 2 -> 3
B = np.array([0.1, -0.2, 0.3], np.float32)
D = np.array([1.5, -0.75, 2.0], np.float32)                           # depthwise 1x1 scales
DB = np.array([-0.05, 0.4, 0.0], np.float32)


def _tiny_tfjs(folder, with_weights=True):
    """model.json + w.bin: x (1, 4, 4, 2) -> relu(1x1 conv + bias) -> depthwise 1x1 + bias;
    the conv weights stored as float16 (TF.js quantization), the rest float32."""
    def const(name, shape):
        return {"name": name, "op": "Const", "attr": {
            "dtype": {"type": "DT_FLOAT"},
            "value": {"tensor": {"dtype": "DT_FLOAT", "tensorShape": {
                "dim": [{"size": str(s)} for s in shape]}}}}}

    conv = _fused_conv("conv")
    conv["input"] = ["x", "w", "b"]
    dw = dict(_fused_conv("dw"), op="FusedDepthwiseConv2dNative", input=["conv", "d", "db"])
    dw["attr"]["fused_ops"] = {"list": {"s": ["Qmlhc0FkZA=="]}}          # BiasAdd
    nodes = [{"name": "x", "op": "Placeholder", "attr": {
                 "dtype": {"type": "DT_FLOAT"},
                 "shape": {"shape": {"dim": [{"size": s} for s in ("1", "4", "4", "2")]}}}},
             const("w", (1, 1, 2, 3)), const("b", (3,)), const("d", (1, 1, 3, 1)),
             const("db", (3,)), conv, dw, {"name": "out", "op": "Identity", "input": ["dw"],
                                          "attr": {"T": {"type": "DT_FLOAT"}}}]
    weights = [{"name": "w", "shape": [1, 1, 2, 3], "dtype": "float32",
                "quantization": {"dtype": "float16", "original_dtype": "float32"}},
               {"name": "b", "shape": [3], "dtype": "float32"},
               {"name": "d", "shape": [1, 1, 3, 1], "dtype": "float32"},
               {"name": "db", "shape": [3], "dtype": "float32"}]
    model = {"format": "graph-model", "modelTopology": {"node": nodes, "versions": {}},
             "signature": {"inputs": {"x:0": {"name": "x:0"}},
                           "outputs": {"out:0": {"name": "out:0"}}},
             "weightsManifest": [{"paths": ["w.bin"], "weights": weights}]}
    path = os.path.join(folder, "model.json")
    with open(path, "w") as f:
        json.dump(model, f)
    if with_weights:
        with open(os.path.join(folder, "w.bin"), "wb") as f:
            f.write(W.reshape(1, 1, 2, 3).astype("<f2").tobytes() + B.tobytes() + D.tobytes()
                    + DB.tobytes())
    return path


def _expected(x):
    return np.maximum(x @ W + B, 0) * D + DB


def test_prepare_tfjs_patches_and_dequantizes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    graph, npz = convert.prepare_tfjs(_tiny_tfjs(str(src)), str(tmp_path))
    spec = json.load(open(graph))
    ops = {n["name"]: n for n in spec["node"]}
    assert ops["conv"]["attr"]["TArgs"] == {"list": {"type": ["DT_FLOAT"]}}
    assert ops["dw"]["op"] == "_FusedDepthwiseConv2dNative"
    with np.load(npz) as z:
        w = {n: z[f"w{i}"] for i, n in enumerate(spec["weight_names"])}
    assert w["w"].dtype == np.float32 and np.array_equal(w["w"].reshape(2, 3), W)
    assert np.array_equal(w["db"], DB)


def test_tfjs_graph_without_its_weights_is_one_line(tmp_path):
    path = _tiny_tfjs(str(tmp_path), with_weights=False)
    with pytest.raises(CheckpointError) as e:
        convert.prepare_tfjs(path, str(tmp_path))
    msg = str(e.value)
    print(msg)
    assert "\n" not in msg and msg.startswith(path) and "w.bin" in msg
    (tmp_path / "w.bin").write_bytes(b"\0" * 10)             # short file: one line too
    with pytest.raises(CheckpointError, match="truncated") as e:
        convert.prepare_tfjs(path, str(tmp_path))
    assert "\n" not in str(e.value)


def test_conversion_above_tolerance_is_refused(tmp_path, monkeypatch):
    """check_onnx compares in odkd's onnxruntime; a model off by more than the tolerance is
    not returned (no TensorFlow needed: the script's run is replaced)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Identity", ["x:0"], ["y:0"])], "g",
                          [helper.make_tensor_value_info("x:0", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("y:0", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    x = np.arange(6, dtype=np.float32).reshape(2, 1, 3)

    def fake_run(cmd, what, **kw):
        out, ref = cmd[-2], cmd[-1]
        onnx.save(model, out)
        np.savez(ref, input_0=x, output_0=x + np.float32(0.5))
        return type("R", (), {"stdout": "{}\n"})()

    monkeypatch.setattr(convert, "ensure_env", lambda d, log: "python")
    monkeypatch.setattr(convert, "_run", fake_run)
    lines = []
    with pytest.raises(convert.ConvertError, match=r"differs from TensorFlow by 0.5 .*not "
                                                   r"stored") as e:
        convert.convert("ssd", "graph.pb", 1e-3, str(tmp_path), lines.append, name="m")
    assert "\n" not in str(e.value)
    assert "max |ONNX - TensorFlow| = 0.5" in lines[-1]
    data, info = convert.convert("ssd", "graph.pb", 1.0, str(tmp_path), lines.append)
    assert data == model.SerializeToString() and info["max_abs_diff"] == 0.5


def test_converted_model_is_checked_against_the_manifest(tmp_path, monkeypatch):
    src_bytes = b'{"fake": "model.json"}'
    archive = tmp_path / "pkg.tgz"
    src = store.Source("npm", "fake-pkg", "1.0.0", make_tgz(archive, {"package/m.json": src_bytes}))
    fake = store.StoredModel("fake-conv", "m.onnx", src, "package/m.json",
                             hashlib.sha256(src_bytes).hexdigest(), "onnx", convert="tfjs",
                             tolerance=1e-4)
    monkeypatch.setattr(store, "MODELS", {"fake-conv": fake})
    seen = {}

    def fake_convert(kind, source, tolerance, d, log, name=""):
        seen.update(kind=kind, source=open(source, "rb").read(), tolerance=tolerance)
        return b"onnx bytes", {"max_abs_diff": 1e-7}

    monkeypatch.setattr(convert, "convert", fake_convert)
    cache = tmp_path / "cache"
    store.fetch(None, cache=str(cache), log=lambda s: None,
                download=lambda s, w: str(archive))
    assert seen == {"kind": "tfjs", "source": src_bytes, "tolerance": 1e-4}
    man = store.read_manifest(str(cache))["fake-conv"]
    assert man["sha256"] == hashlib.sha256(b"onnx bytes").hexdigest()
    assert man["source_sha256"] == fake.sha256 and man["converted"]["max_abs_diff"] == 1e-7
    assert store.model_path("fake-conv", str(cache)) == str(cache / "m.onnx")
    (cache / "m.onnx").write_bytes(b"damaged")
    with pytest.raises(CheckpointError, match="corrupt fake-conv model") as e:
        store.model_path("fake-conv", str(cache))
    assert "\n" not in str(e.value)


def test_tiny_tfjs_graph_converts_in_the_environment(tmp_path):
    """The whole conversion of a hand-made TF.js graph in the real environment: GraphDef
    assembly (Const values, TArgs, the renamed depthwise op), TensorFlow run, tf2onnx, the
    onnxruntime check; the ONNX model computes the graph's function."""
    pytest.importorskip("onnxruntime")
    teachers_dir = store.cache_dir()
    if not convert.env_ready(teachers_dir):
        pytest.skip(f"no conversion environment in {convert.env_dir(teachers_dir)}: "
                    "`odkd teachers fetch movenet-thunder` (make teachers) creates it")
    from odkd.teachers.runtime import OnnxRunner

    src = tmp_path / "src"
    src.mkdir()
    lines = []
    data, info = convert.convert("tfjs", _tiny_tfjs(str(src)), 1e-5, teachers_dir,
                                 lines.append, name="tiny")
    print(lines[-1])
    assert info["max_abs_diff"] <= 1e-5 and info["nodes"] == 8
    path = tmp_path / "tiny.onnx"
    path.write_bytes(data)
    runner = OnnxRunner(str(path))
    x = np.random.default_rng(1).normal(size=(1, 4, 4, 2)).astype(np.float32)
    got = runner.run([x])[0]
    assert np.abs(got - _expected(x)).max() < 1e-5


# ------------------------------------------------------------------ the real converted model
def _photo():
    if os.path.isfile(LSP_IMAGE):
        return np.ascontiguousarray(cv2.imread(LSP_IMAGE)[:, :, ::-1])
    rng = np.random.default_rng(0)    # parity does not need a person, only the same input
    return cv2.GaussianBlur(rng.integers(0, 256, (180, 120, 3), dtype=np.uint8), (5, 5), 0)


@pytest.mark.parametrize("name", ["movenet-thunder", "movenet-lightning-onnx"])
def test_converted_movenet_parity_with_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    if not store.is_present(name):
        pytest.skip(f"{name} not in {store.cache_dir()}: run `odkd teachers fetch {name}` "
                    "(make teachers)")
    image = _photo()
    h, w = image.shape[:2]
    center = np.array([w / 2, h / 2], np.float32)
    scale = np.array([0.8 * w, 0.8 * w * 4 / 3], np.float32)
    rot = 15.0
    teacher = get_teacher(name, num_threads=1)
    assert teacher.input_size == ((256, 256) if name == "movenet-thunder" else (192, 192))
    out = teacher(image, [center], [scale], [rot], (48, 64))

    tw, th = teacher.input_size
    ts = np.array([max(scale[0], scale[1] * tw / th), max(scale[1], scale[0] * th / tw)])
    mat = get_affine_transform(center, ts, rot, (tw, th))
    crop = cv2.warpAffine(image, mat, (tw, th), flags=cv2.INTER_LINEAR)
    sess = ort.InferenceSession(store.model_path(name), providers=["CPUExecutionProvider"])
    o = sess.run(None, {sess.get_inputs()[0].name: crop[None].astype(np.int32)})[0]
    o = o.reshape(17, 3)
    direct = np.c_[o[:, 1] * tw - 0.5, o[:, 0] * th - 0.5]
    expect = affine_points(affine_points(direct, cv2.invertAffineTransform(mat)),
                           get_affine_transform(center, scale, rot, (48, 64)))
    diff = np.abs(out["keypoints"][0, :, :2] - expect).max()
    print(f"{name}: max |odkd - onnxruntime| = {diff:.2e} heatmap px")
    assert diff < 1e-3
    assert np.allclose(out["keypoints"][0, :, 2], o[:, 2], atol=1e-6)
