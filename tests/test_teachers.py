"""odkd.teachers: the cache and fetch (hash checks, no network), the re-crop / map-back
geometry, BlazePose's joint mapping and refinement, one-line errors, and parity of each real
teacher with its runtime called directly (needs `odkd teachers fetch`; skipped without it)."""
import hashlib
import os

import cv2
import numpy as np
import pytest

from odkd.errors import CheckpointError
from odkd.geometry import affine_points, get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS
from odkd.teachers import CompositeTeacher, Teacher, get_teacher, store, teacher_scale
from odkd.teachers.blazepose import BLAZEPOSE_TO_COCO, BlazePoseCodec, refine_from_heatmaps
from conftest import make_tgz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LSP_IMAGE = os.path.join(ROOT, "..", "shared", "data", "real", "lsp", "images", "im1001.jpg")
REAL_TEACHERS = ["movenet-lightning", "blazepose-lite", "blazepose-full", "blazepose-heavy"]

# BlazePose's 33 landmarks (MediaPipe Pose documentation, in model output order)
BLAZEPOSE_33 = [
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel",
    "right_heel", "left_foot_index", "right_foot_index"]


def _need(name):
    try:
        import ai_edge_litert  # noqa: F401
    except ImportError:
        pytest.skip("ai-edge-litert not installed (pip install 'odkd[teachers]')")
    if not store.is_present(name):
        pytest.skip(f"{name} not in {store.cache_dir()}: run `odkd teachers fetch` "
                    "(make teachers)")


# ------------------------------------------------------------------------ fakes (no models)
class FakeRunner:
    def __init__(self, outputs, names):
        self.outputs = outputs
        self.output_details = [{"name": n} for n in names]
        self.input_details = [{"name": "input", "shape": (1, 256, 256, 3),
                               "dtype": np.dtype(np.float32)}]

    def run(self, inputs):
        return self.outputs


class SpotCodec:
    """A 'model' that finds the bright spot of its crop (intensity-weighted centroid) and
    returns its own crop as the mask: ground truth for the geometry."""
    has_mask = True

    def __init__(self, size=(64, 64)):
        self.input_size = size
        self.runner = self

    def preprocess(self, crop):
        return [crop]

    def run(self, inputs):
        return inputs

    def postprocess(self, outs):
        g = outs[0][:, :, 0].astype(np.float64)
        g = np.where(g > 20, g, 0)
        ys, xs = np.mgrid[:g.shape[0], :g.shape[1]]
        x, y = (g * xs).sum() / g.sum(), (g * ys).sum() / g.sum()
        kp = np.tile([x, y, 0.8], (17, 1))
        return {"keypoints": kp, "mask": outs[0][:, :, 0].astype(np.float32) / 255,
                "mask_to_input": np.array([[1.0, 0, 0], [0, 1.0, 0]])}


def _spot_image(pt, shape=(300, 400)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    g = 255 * np.exp(-((xx - pt[0]) ** 2 + (yy - pt[1]) ** 2) / (2 * 6.0 ** 2))
    return np.repeat(g[:, :, None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0])
def test_recrop_maps_back_into_student_heatmap_frame(rot):
    pt = np.array([231.3, 140.6])
    image = _spot_image(pt)
    center, scale, hm = np.array([210.0, 150.0]), np.array([120.0, 160.0]), (48, 64)
    teacher = Teacher("spot", SpotCodec((64, 64)))
    out = teacher(image, [center], [scale], [rot], hm)
    expect = affine_points(pt[None], get_affine_transform(center, scale, rot, hm))[0]
    got = out["keypoints"][0, 0, :2]
    print(f"rot {rot}: expected {expect}, got {got}, diff {np.abs(got - expect).max():.4f}")
    assert np.abs(got - expect).max() < 0.05            # heatmap pixels
    assert np.allclose(out["keypoints"][0, :, 2], 0.8)
    # the rendered heatmap peaks at the point and is scaled by the confidence
    peak = np.unravel_index(out["heatmaps"][0, 0].argmax(), out["heatmaps"].shape[2:])
    assert abs(peak[1] - expect[0]) <= 0.51 and abs(peak[0] - expect[1]) <= 0.51
    assert out["heatmaps"][0, 0].max() <= 0.8 + 1e-6 and out["heatmaps"][0, 0].max() > 0.7
    # the mask (the teacher's crop) comes back aligned with the student's frame too
    m = out["mask"][0, 0]
    assert out["mask"].shape == (1, 1, 64, 48) and 0 <= m.min() and m.max() <= 1
    mpeak = np.unravel_index(m.argmax(), m.shape)
    assert abs(mpeak[1] - expect[0]) <= 1 and abs(mpeak[0] - expect[1]) <= 1


def test_teacher_crop_contains_student_crop():
    center, scale = np.array([100.0, 80.0]), np.array([90.0, 120.0])
    ts = teacher_scale(scale, 1.0)
    assert np.allclose(ts, [120.0, 120.0])
    assert np.allclose(teacher_scale(scale, 192 / 256), scale)
    teacher = Teacher("spot", SpotCodec((64, 64)))
    for rot in (0.0, 40.0):
        mat, _ = teacher.crop_affine(center, scale, rot)
        inv = get_affine_transform(center, scale, rot, (48, 64), inv=True)
        corners = affine_points([[-0.5, -0.5], [47.5, -0.5], [-0.5, 63.5], [47.5, 63.5]], inv)
        inside = affine_points(corners, mat)
        assert (inside >= -0.5 - 1e-3).all() and (inside <= 63.5 + 1e-3).all()


def test_blazepose_to_coco_mapping():
    expect = [BLAZEPOSE_33.index(n) for n in COCO_KEYPOINTS]
    assert BLAZEPOSE_TO_COCO == expect == [0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25,
                                           26, 27, 28]
    # postprocess picks those landmarks: landmark i has x = 4 i + 1, visibility logit 0
    lm = np.zeros((39, 5), np.float32)
    lm[:, 0] = 4 * np.arange(39) + 1
    lm[:, 1] = 100.5
    lm[:, 4] = 50.0
    outs = [lm.reshape(1, -1), np.array([[0.9]], np.float32), np.zeros((1, 256, 256, 1)),
            np.full((1, 64, 64, 39), -10.0, np.float32), np.zeros((1, 117))]
    names = ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"]
    codec = BlazePoseCodec(FakeRunner(outs, names), confidence="visibility")
    out = codec.postprocess(outs)
    assert np.allclose(out["keypoints"][:, 0], 4 * np.array(BLAZEPOSE_TO_COCO) + 0.5)
    assert np.allclose(out["keypoints"][:, 1], 100.0)
    assert np.allclose(out["keypoints"][:, 2], 0.5)       # sigmoid(0)
    assert out["heatmaps"].shape == (17, 64, 64) and out["mask"].shape == (256, 256)
    assert np.allclose(out["mask"], 0.5)
    flag = BlazePoseCodec(FakeRunner(outs, names))            # default: visibility x flag
    assert np.allclose(flag.postprocess(outs)["keypoints"][:, 2], 0.45)


def test_blazepose_keypoints_from_own_heatmaps():
    lm = np.zeros((39, 5), np.float32)
    hm = np.full((1, 64, 64, 39), -10.0, np.float32)
    hm[0, 20, 30, :] = 5.0              # every joint peaks at heatmap pixel (30, 20)
    hm[0, 20, 31, :] = 3.0              # quarter offset towards column 31
    outs = [lm.reshape(1, -1), np.array([[1.0]], np.float32), np.zeros((1, 256, 256, 1)), hm,
            np.zeros((1, 117))]
    names = ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"]
    codec = BlazePoseCodec(FakeRunner(outs, names), keypoints="heatmaps")
    kp = codec.postprocess(outs)["keypoints"]
    # pixel c of the 64x64 map sits at input pixel-centre coordinate 4 c - 0.5
    assert np.allclose(kp[:, 0], 4 * 30.25 - 0.5) and np.allclose(kp[:, 1], 4 * 20 - 0.5)
    with pytest.raises(ValueError):
        BlazePoseCodec(FakeRunner(outs, names), keypoints="nope")


def test_refine_from_heatmaps_follows_mediapipe():
    heat = np.zeros((2, 64, 64), np.float32)
    heat[0, 20, 30] = heat[0, 20, 31] = 0.9      # peak between columns 30 and 31, row 20
    heat[1, 10, 10] = 0.3                       # below the 0.5 threshold: left as it is
    xy = np.array([[121.0, 79.0], [41.0, 41.0]])
    out = refine_from_heatmaps(xy, heat, (256, 256))
    assert np.allclose(out[0], [30.5 * 4, 20 * 4])
    assert np.allclose(out[1], xy[1])


def test_composite_takes_keypoints_and_mask_from_each():
    pt = np.array([150.0, 120.0])
    image = _spot_image(pt)
    a, b = Teacher("a", SpotCodec((64, 64))), Teacher("b", SpotCodec((32, 32)))
    b.codec.postprocess = lambda outs: {"keypoints": np.zeros((17, 3)),
                                        "mask": np.ones((32, 32), np.float32),
                                        "mask_to_input": np.eye(2, 3)}
    comp = CompositeTeacher(keypoints=a, mask=b)
    out = comp(image, [[150.0, 150.0]], [[120.0, 160.0]], [0.0], (48, 64))
    assert out["keypoints"][0, 0, 2] == pytest.approx(0.8)
    assert out["mask"][0, 0, 30, 24] == pytest.approx(1.0)


# ------------------------------------------------------------------------ errors, fetch
def test_missing_and_corrupt_model_are_one_line(tmp_path):
    with pytest.raises(CheckpointError) as e:
        store.model_path("movenet-lightning", str(tmp_path))
    msg = str(e.value)
    assert msg == (f"movenet-lightning: model not found in {tmp_path}; run `odkd teachers "
                   "fetch movenet-lightning`")
    (tmp_path / "movenet_lightning.tflite").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="corrupt movenet-lightning model") as e:
        get_teacher("movenet-lightning", cache=str(tmp_path))
    assert "\n" not in str(e.value) and "odkd teachers fetch movenet-lightning" in str(e.value)


def test_unloadable_tflite_is_one_line(tmp_path):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert not installed")
    from odkd.teachers.runtime import TFLiteRunner

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="not a loadable TFLite model") as e:
        TFLiteRunner(str(bad))
    assert "\n" not in str(e.value)


def test_cli_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from odkd.cli import main

    monkeypatch.setenv("ODKD_CACHE", str(tmp_path))
    ann = tmp_path / "a.json"
    ann.write_text('{"images": [{"id": 1, "file_name": "x.jpg", "width": 9, "height": 9}], '
                   '"annotations": [], "categories": [{"id": 1, "name": "person", '
                   '"keypoints": [], "skeleton": []}]}')
    assert main(["teachers", "eval", "movenet-lightning", "--ann", str(ann),
                 "--images", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("odkd teachers: error:")
    assert main(["teachers", "fetch", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown teacher model 'no-such-model'" in err


def _fake_archive(path, member, data):
    return make_tgz(path, {member: data})


def test_fetch_refuses_an_archive_with_the_wrong_hash(tmp_path):
    def download(source, workdir):
        p = tmp_path / "fake.tgz"
        _fake_archive(p, "package/pose_landmark_lite.tflite", b"tiny")
        return str(p)

    cache = tmp_path / "cache"
    with pytest.raises(store.FetchError, match="is not the pinned") as e:
        store.fetch(["blazepose-lite"], cache=str(cache), log=lambda s: None, download=download)
    assert "\n" not in str(e.value)
    assert not cache.exists() or not any(cache.iterdir())     # nothing written


def test_fetch_stores_checks_and_is_a_noop_when_present(tmp_path, monkeypatch):
    data = b"tiny model bytes"
    archive = tmp_path / "pkg.tgz"
    digest = _fake_archive(archive, "package/m.tflite", data)
    src = store.Source("npm", "fake-pkg", "1.0.0", digest)
    fake = store.StoredModel("fake-model", "m.tflite", src, "package/m.tflite",
                             hashlib.sha256(data).hexdigest(), "tflite")
    monkeypatch.setattr(store, "MODELS", {"fake-model": fake})
    calls, lines = [], []

    def download(source, workdir):
        calls.append(source.spec)
        return str(archive)

    cache = tmp_path / "cache"
    store.fetch(None, cache=str(cache), log=lines.append, download=download)
    assert (cache / "m.tflite").read_bytes() == data
    man = store.read_manifest(str(cache))
    assert man["fake-model"]["source"] == "npm:fake-pkg@1.0.0"
    assert man["fake-model"]["sha256"] == fake.sha256
    assert any("stored" in s for s in lines)
    lines.clear()
    store.fetch(None, cache=str(cache), log=lines.append, download=download)
    assert calls == ["fake-pkg@1.0.0"] and lines == [f"fake-model: already present "
                                                     f"({cache / 'm.tflite'})"]
    # a damaged file is fetched again; a changed file inside the archive is refused
    (cache / "m.tflite").write_bytes(b"damaged")
    store.fetch(None, cache=str(cache), log=lines.append, download=download)
    assert (cache / "m.tflite").read_bytes() == data and len(calls) == 2
    monkeypatch.setattr(store, "MODELS", {"fake-model": store.StoredModel(
        "fake-model", "m.tflite", src, "package/m.tflite", "0" * 64, "tflite")})
    with pytest.raises(store.FetchError, match="m.tflite sha256"):
        store.fetch(None, cache=str(cache), log=lines.append, download=download)


def test_fetch_keeps_a_graphs_weight_files_next_to_it(tmp_path, monkeypatch):
    graph, weights = b'{"weightsManifest": []}', b"\x00\x01weights"
    archive = tmp_path / "pkg.tgz"
    digest = make_tgz(archive, {"package/models/m.json": graph, "package/models/m.bin": weights})
    src = store.Source("npm", "fake-pkg", "1.0.0", digest)
    fake = store.StoredModel("m-tfjs", "m.json", src, "package/models/m.json",
                             hashlib.sha256(graph).hexdigest(), "tfjs", kind="weights",
                             extra=(("package/models/m.bin", hashlib.sha256(weights).hexdigest()),))
    monkeypatch.setattr(store, "MODELS", {"m-tfjs": fake})
    cache = tmp_path / "cache"
    store.fetch(None, cache=str(cache), log=lambda s: None, download=lambda s, w: str(archive))
    assert (cache / "m.json").read_bytes() == graph and (cache / "m.bin").read_bytes() == weights
    assert store.is_present("m-tfjs", str(cache))
    (cache / "m.bin").write_bytes(b"damaged")          # the weights are checked too
    with pytest.raises(CheckpointError, match="missing or corrupt weights of m-tfjs"):
        store.model_path("m-tfjs", str(cache))


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ODKD_CACHE", str(tmp_path))
    assert store.cache_dir() == os.path.join(str(tmp_path), "teachers")


# ------------------------------------------------------------------------ real models
def _photo():
    if os.path.isfile(LSP_IMAGE):
        return np.ascontiguousarray(cv2.imread(LSP_IMAGE)[:, :, ::-1])
    rng = np.random.default_rng(0)    # parity does not need a person, only the same input
    return cv2.GaussianBlur(rng.integers(0, 256, (180, 120, 3), dtype=np.uint8), (5, 5), 0)


def _direct(name, crop):
    """The model run straight through ai_edge_litert, decoded by hand: (17, 2) input px."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=store.model_path(name), num_threads=1)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    if name.startswith("movenet"):
        it.set_tensor(d["index"], crop[None].astype(d["dtype"]))
        it.invoke()
        o = it.get_tensor(it.get_output_details()[0]["index"]).reshape(17, 3)
        h, w = crop.shape[:2]
        return np.c_[o[:, 1] * w - 0.5, o[:, 0] * h - 0.5]
    it.set_tensor(d["index"], (crop[None] / 255.0).astype(np.float32))
    it.invoke()
    outs = {o["name"]: it.get_tensor(o["index"]) for o in it.get_output_details()}
    lm = outs["Identity"].reshape(39, 5)
    return lm[BLAZEPOSE_TO_COCO, :2] - 0.5


@pytest.mark.parametrize("name", REAL_TEACHERS)
def test_parity_with_the_runtime_called_directly(name):
    _need(name)
    image = _photo()
    h, w = image.shape[:2]
    center = np.array([w / 2, h / 2], np.float32)
    scale = np.array([0.8 * w, 0.8 * w * 4 / 3], np.float32)
    rot = 15.0
    opts = {"keypoints": "landmarks"} if name.startswith("blazepose") else {}
    teacher = get_teacher(name, num_threads=1, **opts)
    out = teacher(image, [center], [scale], [rot], (48, 64))

    tw, th = teacher.input_size
    ts = np.array([max(scale[0], scale[1] * tw / th), max(scale[1], scale[0] * th / tw)])
    mat = get_affine_transform(center, ts, rot, (tw, th))
    crop = cv2.warpAffine(image, mat, (tw, th), flags=cv2.INTER_LINEAR)
    direct = _direct(name, crop)
    to_img = cv2.invertAffineTransform(mat)
    expect = affine_points(affine_points(direct, to_img),
                           get_affine_transform(center, scale, rot, (48, 64)))
    diff = np.abs(out["keypoints"][0, :, :2] - expect).max()
    print(f"{name}: max |odkd - direct| = {diff:.2e} heatmap px")
    assert diff < 1e-3
    assert out["heatmaps"].shape == (1, 17, 64, 48)
    assert np.isfinite(out["keypoints"]).all()
    assert ((out["keypoints"][..., 2] >= 0) & (out["keypoints"][..., 2] <= 1)).all()
    if name.startswith("blazepose"):
        assert out["mask"].shape == (1, 1, 64, 48)
        assert 0 <= out["mask"].min() and out["mask"].max() <= 1
        own = teacher(image, [center], [scale], [rot], (48, 64), own_heatmaps=True)
        assert own["own_heatmaps"].shape == (1, 17, 64, 48)
    else:
        assert "mask" not in out


def test_teacher_finds_the_person(real_mini):
    """On a real photo the teachers' joints land near the annotated ones (sanity, not PCK)."""
    _need("movenet-lightning")
    import json

    from odkd.eval.pck import protocol_box

    data = json.load(open(real_mini / "coco" / "test_coco.json"))
    ann = max(data["annotations"], key=lambda a: a["num_keypoints"])
    img = next(i for i in data["images"] if i["id"] == ann["image_id"])
    image = np.ascontiguousarray(cv2.imread(str(real_mini / "coco" / img["file_name"]))[:, :, ::-1])
    gt = np.array(ann["keypoints"], np.float64).reshape(17, 3)
    x, y, w, h = protocol_box(gt)
    pred = get_teacher("movenet-lightning").predict(image, [[x + w / 2, y + h / 2]],
                                                    [[w, h]])[0]["keypoints_image"]
    lab = gt[:, 2] > 0
    err = np.linalg.norm(pred[lab, :2] - gt[lab, :2], axis=1)
    print(f"movenet-lightning on {img['file_name']}: median joint error {np.median(err):.1f} px "
          f"(box {w:.0f} px)")
    assert np.median(err) < 0.1 * w


def test_onnx_runner_runs_and_refuses_a_bad_file(tmp_path):
    onnx = pytest.importorskip("onnx", reason="onnx not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from onnx import TensorProto, helper

    from odkd.teachers.runtime import make_runner

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    two = helper.make_tensor("two", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "g", [x], [y],
                              initializer=[two])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    runner = make_runner(str(path), "onnx", num_threads=1)
    assert runner.input_details[0]["shape"] == (1, 4)
    out = runner.run([np.arange(4, dtype=np.float32)[None]])
    assert np.array_equal(out[0], [[0, 2, 4, 6]])
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a loadable ONNX model") as e:
        make_runner(str(path), "onnx")
    assert "\n" not in str(e.value)


def test_list_shows_every_model(tmp_path, monkeypatch, capsys):
    from odkd.cli import main

    monkeypatch.setenv("ODKD_CACHE", str(tmp_path))
    assert main(["teachers", "list"]) == 0
    text = capsys.readouterr().out
    for name, m in store.MODELS.items():
        assert name in text and m.file in text
    assert "missing" in text and "present" not in text


def test_confidence_auc_and_mask_iou():
    from odkd.commands.teachers import confidence_auc, mask_iou

    gt = np.zeros((4, 17, 3))
    gt[:, :, 2] = 2
    gt[:, 6, :2] = [0, 0]
    gt[:, 11, :2] = [0, 100]               # torso 100 px: correct within 20 px
    pred = gt.copy()
    pred[:2, 5:, 0] += 50                  # people 0-1: every limb joint (bar the torso) wrong
    pred[:, 6, 0] = pred[:, 11, 0] = gt[:, 6, 0]
    pred[:2, :, 2], pred[2:, :, 2] = 0.2, 0.9   # ... and less confident
    assert confidence_auc(pred, gt) > 0.9
    pred[:, :, 2] = 0.5                    # all tied: no information
    assert confidence_auc(pred, gt) == pytest.approx(0.5)
    a = np.zeros((8, 8))
    a[:4] = 1
    assert mask_iou(a * 0.9, a) == 1.0 and mask_iou(a * 0.4, a) == 0.0
    assert mask_iou(np.zeros((8, 8)), np.zeros((8, 8))) == 1.0


def test_eval_command_scores_joints_and_masks(tmp_path, capsys):
    _need("blazepose-lite")
    import json

    from odkd.cli import main

    image = _photo()
    h, w = image.shape[:2]
    cv2.imwrite(str(tmp_path / "a.jpg"), image[:, :, ::-1])
    kp = np.zeros((17, 3))
    kp[5:, 0] = np.linspace(0.3 * w, 0.7 * w, 12)
    kp[5:, 1] = np.linspace(0.2 * h, 0.9 * h, 12)
    kp[5:, 2] = 2
    poly = [0.3 * w, 0.1 * h, 0.7 * w, 0.1 * h, 0.7 * w, 0.95 * h, 0.3 * w, 0.95 * h]
    ann = {"images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                            "bbox": [0.3 * w, 0.1 * h, 0.4 * w, 0.85 * h], "area": 1.0,
                            "num_keypoints": 12, "keypoints": kp.ravel().tolist(),
                            "segmentation": [poly]}],
           "categories": [{"id": 1, "name": "person", "keypoints": COCO_KEYPOINTS,
                           "skeleton": []}]}
    (tmp_path / "a.json").write_text(json.dumps(ann))
    out = tmp_path / "r.json"
    assert main(["teachers", "eval", "blazepose-lite", "--ann", str(tmp_path / "a.json"),
                 "--images", str(tmp_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "PCK@0.2" in text and "mask IoU" in text
    rep = json.loads(out.read_text())["reports"][0]
    assert rep["people"] == 1 and 0 <= rep["pck"] <= 1 and 0 <= rep["mask_iou"] <= 1
