"""odkd.deploy: ONNX export + onnxruntime backend, overlays, inference, benchmark, CLI wiring."""
from __future__ import annotations

import contextlib
import io
import json
import os

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import odkd
from odkd.cli import main
from odkd.config import Config
from odkd.data.coco import load_coco
from odkd.data.dataset import TopDownDataset, read_image
from odkd.deploy.infer import InferOptions, TopDownPredictor, run_inference
from odkd.deploy.onnx_export import export_onnx, verify_onnx
from odkd.onnxrt import OrtPoseModel
from odkd.spec import PoseSpec, default_keypoints, spec_for_model
from odkd.deploy.visualize import LEFT, RIGHT, draw_pose, paste_mask
from odkd.engine.evaluate import run_evaluation
from odkd.errors import CheckpointError
from odkd.models import build_model
from odkd.models.checkpoint import save_checkpoint


def _lively(model: nn.Module, seed: int = 0, size: tuple[int, int] = (64, 64)) -> nn.Module:
    """Random weights whose outputs are O(1): the builders' std=0.001 init gives ~1e-3 outputs,
    which would make a 1e-4 comparison meaningless. He-init convolutions, then set every
    BatchNorm's running statistics from one batch of random images (so no layer explodes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                fan_in = m.weight[0].numel()   # rough for transposed convs; O(1) is enough
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None          # cumulative average: one batch sets the stats
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
        x = torch.randn(4, 3, size[1], size[0], generator=gen)
        model.train()
        model(x)
        model.eval()
        # Heads rescaled to a trained model's output range (max |value| ~ 1): float32 rounding
        # differences between backends are relative to the output scale.
        out = model(x)
        for key, head in (("heatmaps", model.final_layer), ("mask", model.mask_layer)):
            if key in out:
                peak = out[key].abs().max()
                head.weight.div_(peak)
                head.bias.div_(peak)
    return model


def _cfg64() -> Config:
    cfg = Config()
    cfg.data.input_size = [64, 64]
    cfg.data.workers = 0
    cfg.eval.batch_size = 8
    return cfg


@pytest.fixture(scope="module")
def hrnet_onnx(tmp_path_factory):
    """hrnet_w16 (mask head, lively random weights) at 64x64 and its ONNX export."""
    model = _lively(build_model("hrnet_w16", 17, with_mask=True))
    spec = spec_for_model(model, _cfg64())
    onnx_path = str(tmp_path_factory.mktemp("hrnet") / "model.onnx")
    export_onnx(model, spec, onnx_path)
    return model, spec, onnx_path


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """shufflenetv2 (mask head, lively random weights, 64x64 config): checkpoint, and its ONNX
    export made by `odkd export` (whose stdout is kept)."""
    model = _lively(build_model("shufflenetv2", 17, with_mask=True))
    d = tmp_path_factory.mktemp("student")
    ckpt, onnx_path = str(d / "ck.pt"), str(d / "model.onnx")
    save_checkpoint(ckpt, model, extra={"config": _cfg64().to_dict()})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["export", ckpt, "--format", "onnx", "--out", onnx_path])
    assert rc == 0
    return model, ckpt, onnx_path, buf.getvalue()


# ------------------------------------------------------------------------------------ export

def _assert_backends_agree(model: nn.Module, onnx_path: str) -> None:
    ort_model = OrtPoseModel(onnx_path, threads=1)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # batch 3: dynamic
    with torch.no_grad():
        ref = model(x)
    got = ort_model(x)
    assert set(got) == {"heatmaps", "mask"}
    for key in ("heatmaps", "mask"):
        assert got[key].shape == ref[key].shape
        assert ref[key].std() > 0.05   # outputs large enough for 1e-4 to mean something
        assert (got[key] - ref[key]).abs().max() < 1e-4


@pytest.mark.slow  # ~10 s on an idle 2-core machine; the student test below is the fast one
def test_onnx_heatmaps_equal_pytorch_hrnet(hrnet_onnx):
    model, _, onnx_path = hrnet_onnx
    assert not model.training  # the exporter must not flip the model into training mode
    _assert_backends_agree(model, onnx_path)
    diffs = verify_onnx(model, onnx_path)
    assert diffs["heatmaps"] < 1e-4 and diffs["heatmaps_ref_max_abs"] > 0.5


def test_export_cli_student_matches_pytorch(student):
    model, _, onnx_path, stdout = student
    assert "heatmaps max abs diff" in stdout and "input 64x64" in stdout
    _assert_backends_agree(model, onnx_path)


def _export_size_cases():
    from odkd.models import MODEL_BUILDERS

    return sorted(MODEL_BUILDERS)


@pytest.mark.parametrize("name", _export_size_cases())
def test_every_model_exports_at_sizes_that_do_not_divide_or_says_which_work(name, tmp_path):
    """36x52: a multiple of the stride 4 whose stride-32 maps round up and whose Lite-HRNet
    pools do not divide. Each model exports there, matching PyTorch, or refuses in one line
    naming the sizes it takes (HRNet: multiples of 32)."""
    from odkd.errors import OdkdError

    torch.manual_seed(0)
    model = build_model(name).eval()
    spec = spec_for_model(model, input_size=(36, 52))
    path = str(tmp_path / "m.onnx")
    if name.startswith("hrnet"):
        with pytest.raises(OdkdError, match="multiples of 32"):
            export_onnx(model, spec, path)
        return
    _lively(model, size=(36, 52))
    export_onnx(model, spec, path)
    diffs = verify_onnx(model, path, batch=2, threads=1)
    assert diffs["heatmaps"] < 1e-4 and diffs["heatmaps_ref_max_abs"] > 0.5
    assert OrtPoseModel(path).spec.input_size == (36, 52)


def test_input_size_off_the_heatmap_stride_is_one_line(capsys):
    assert main(["bench", "infer", "--model", "litehrnet_18", "--input-size", "98", "98",
                 "--threads", "1", "--iters", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input size 98x98" in err[0] and "multiples of the heatmap " \
        "stride 4 (e.g. 96x96)" in err[0]


def test_onnx_metadata_round_trip(student):
    model, _, onnx_path, _ = student
    got = OrtPoseModel(onnx_path).spec
    assert got == spec_for_model(model, _cfg64())
    assert got.name == "shufflenetv2"
    assert got.input_size == (64, 64) and got.num_joints == 17 and got.with_mask
    assert [1, 2] in got.flip_pairs and got.keypoint_names[0] == "nose"
    assert got.eval_config().data.input_size == [64, 64]


def test_metadata_errors_name_the_field():
    meta = PoseSpec("hrnet_w16", 17, False, (64, 64)).to_metadata()
    meta["odkd.input_size"] = "[64]"
    with pytest.raises(CheckpointError, match="odkd.input_size"):
        PoseSpec.from_metadata(meta, "m.onnx")
    with pytest.raises(CheckpointError, match="not an odkd ONNX export"):
        PoseSpec.from_metadata({}, "m.onnx")


# ------------------------------------------------------------------------------------ eval

class LookupOracle(nn.Module):
    """An exportable oracle: returns the GT heatmaps of the stored crop nearest to the input
    (softmax over negative squared distances is one-hot for distinct crops), plus a small term
    from a real network so the convolution path is exercised too. Gives a high AP untrained."""

    def __init__(self, crops: torch.Tensor, heatmaps: torch.Tensor, net: nn.Module) -> None:
        super().__init__()
        self.register_buffer("keys", crops.flatten(1))
        self.register_buffer("values", heatmaps)
        self.net = net
        self.odkd_name, self.num_joints, self.with_mask = "shufflenetv2", 17, False

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        d2 = ((x.flatten(1)[:, None, :] - self.keys[None]) ** 2).sum(-1)
        heat = torch.einsum("bn,nkhw->bkhw", torch.softmax(-d2, dim=1), self.values)
        return {"heatmaps": heat + 0.01 * self.net(x)["heatmaps"]}


def test_eval_ap_onnxruntime_equals_pytorch(real_mini, tmp_path):
    ann = str(real_mini / "coco" / "test_coco.json")
    cfg = _cfg64()
    cfg.eval.flip_test = False   # the lookup oracle knows the unflipped crops only
    coco = load_coco(ann, str(real_mini / "coco"), train=False)
    ds = TopDownDataset(coco.records, coco.flip_pairs, coco.upper_body_ids, cfg.data,
                        train=False, return_image_mask=False)
    samples = [ds[i] for i in range(len(ds))]
    model = LookupOracle(torch.stack([s["image"] for s in samples]),
                         torch.stack([s["heatmap"] for s in samples]),
                         _lively(build_model("shufflenetv2", 17))).eval()
    onnx_path = str(tmp_path / "oracle.onnx")
    export_onnx(model, spec_for_model(model, cfg), onnx_path)

    dev = torch.device("cpu")
    m_t = run_evaluation(cfg, model, coco, coco.records, dev, out_dir=str(tmp_path / "t"),
                         progress=False)
    m_o = run_evaluation(cfg, OrtPoseModel(onnx_path), coco, coco.records, dev,
                         out_dir=str(tmp_path / "o"), progress=False)
    assert m_t["AP"] > 0.5
    assert m_t == pytest.approx(m_o, abs=1e-9)
    r_t = json.loads((tmp_path / "t" / "results.json").read_text())
    r_o = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(r_t) == len(r_o) == len(coco.records)
    for a, b in zip(r_t, r_o):
        assert a["image_id"] == b["image_id"]
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-3)
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_eval_cli_backend_onnxruntime(student, real_mini, tmp_path):
    _, ckpt, onnx_path, _ = student
    root = real_mini / "coco"
    common = ["--ann", str(root / "test_coco.json"), "--images", str(root)]
    assert main(["eval", "--checkpoint", ckpt, "--out", str(tmp_path / "t"), *common]) == 0
    assert main(["eval", "--backend", "onnxruntime", "--checkpoint", onnx_path,
                 "--out", str(tmp_path / "o"), *common]) == 0
    r_t = json.loads((tmp_path / "t" / "results.json").read_text())
    r_o = json.loads((tmp_path / "o" / "results.json").read_text())
    assert len(r_t) == len(r_o) == 12
    for a, b in zip(r_t, r_o):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-3)
    assert json.loads((tmp_path / "t" / "metrics.json").read_text()) == \
        pytest.approx(json.loads((tmp_path / "o" / "metrics.json").read_text()), abs=1e-9)


# ------------------------------------------------------------------------------- inference

def test_predictor_crop_matches_eval_dataset(real_mini):
    cfg = _cfg64()
    coco = load_coco(str(real_mini / "coco" / "test_coco.json"), str(real_mini / "coco"),
                     train=False)
    ds = TopDownDataset(coco.records, coco.flip_pairs, coco.upper_body_ids, cfg.data,
                        train=False, return_image_mask=False)
    spec = PoseSpec("x", 17, False, (64, 64), flip_pairs=coco.flip_pairs)
    pred = TopDownPredictor(None, spec, torch.device("cpu"), padding=cfg.data.padding)
    for i in (0, 5):
        rec = coco.records[i]
        crop, center, scale = pred.crop(read_image(rec.file_name), rec.bbox)
        sample = ds[i]
        np.testing.assert_array_equal(crop, sample["image"].numpy())
        np.testing.assert_array_equal(center, sample["center"].numpy())
        np.testing.assert_array_equal(scale, sample["scale"].numpy())


def test_infer_image_writes_png_and_results(student, real_mini, tmp_path):
    _, ckpt, onnx_path, _ = student
    img = str(real_mini / "coco" / "000000000785.jpg")
    for name, ck in (("torch", ckpt), ("ort", onnx_path)):
        out = tmp_path / name
        assert main(["infer", "--checkpoint", ck, "--input", img, "--out", str(out),
                     "--no-progress"]) == 0
        png = cv2.imread(str(out / "000000000785.png"))
        assert png is not None and png.shape == (425, 640, 3)
        res = json.loads((out / "results.json").read_text())
        assert len(res) == 1 and res[0]["image_id"] == 785 and len(res[0]["keypoints"]) == 51
    a = json.loads((tmp_path / "torch" / "results.json").read_text())[0]["keypoints"]
    b = json.loads((tmp_path / "ort" / "results.json").read_text())[0]["keypoints"]
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_infer_folder_with_detection_boxes(student, real_mini, tmp_path):
    _, _, onnx_path, _ = student
    root = real_mini / "coco"
    dets = str(root / "test_coco_det_AP_H_56.json")
    assert main(["infer", "--checkpoint", onnx_path, "--input", str(root), "--boxes", dets,
                 "--det-thr", "0.5", "--out", str(tmp_path), "--no-progress",
                 "--batch-size", "4"]) == 0
    pngs = sorted(p for p in os.listdir(tmp_path) if p.endswith(".png"))
    assert pngs == ["000000000785.png", "000000040083.png", "000000196141.png",
                    "000000197388.png"]
    res = json.loads((tmp_path / "results.json").read_text())
    n_boxes = sum(1 for d in json.loads(open(dets).read()) if d["score"] >= 0.5)
    assert 4 <= len(res) <= n_boxes
    assert {r["image_id"] for r in res} <= {785, 40083, 196141, 197388}


def _write_video(path) -> str:
    """Three 96x64 frames of growing grey as an mp4v video (skips where OpenCV cannot)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4v")
    for i in range(3):
        writer.write(np.full((64, 96, 3), 40 * i, np.uint8))
    writer.release()
    return str(path)


def test_infer_video_writes_mp4(student, tmp_path):
    _, _, onnx_path, _ = student
    video = _write_video(tmp_path / "clip.mp4")
    ort_model = OrtPoseModel(onnx_path)
    pred = TopDownPredictor(ort_model, ort_model.spec, torch.device("cpu"), batch_size=2)
    out = run_inference(pred, video, str(tmp_path / "out"), InferOptions(progress=False))
    assert out["frames"] == 3
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["image_id"] for r in res] == [0, 1, 2]


def test_infer_video_detect_mode_and_progress_bar(student, tmp_path, capsys):
    """A video in detect mode: the detector runs on every frame (at the default score 0.5),
    each box gets a pose; the progress bar counts the video's frames."""
    _, ckpt, _, _ = student
    video = _write_video(tmp_path / "clip.mp4")
    calls = []

    def two_people(image, thr):   # what odkd.teachers.detector's detectors return
        calls.append((image.shape, thr))
        return (np.array([[2, 2, 40, 60], [50, 4, 40, 58]], np.float32),
                np.array([0.9, 0.8], np.float32))

    pose = odkd.load(ckpt, device="cpu", batch_size=3)
    capsys.readouterr()
    out = run_inference(pose.predictor, video, str(tmp_path / "out"),
                        pose.options(boxes="detect", oks_nms_thr=1.0), detector=two_people)
    assert calls == [((64, 96, 3), 0.5)] * 3
    assert out["frames"] == 3 and out["instances"] == 6 and out["boxes"] == "detect"
    assert out["frames_without_people"] == 0 and out["overlays"] == [str(tmp_path / "out" /
                                                                         "clip.mp4")]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["image_id"] for r in res] == [0, 0, 1, 1, 2, 2]
    bar = capsys.readouterr().err
    assert "clip.mp4" in bar and "3/3" in bar and "frame" in bar
    # the CLI on a video given as the positional input, whole frames, no bar when asked
    assert main(["infer", video, "--checkpoint", ckpt, "--boxes", "full", "--no-progress",
                 "--out", str(tmp_path / "cli")]) == 0
    assert "3 frame(s), 3 person(s)" in capsys.readouterr().out
    assert (tmp_path / "cli" / "clip.mp4").is_file()


# ------------------------------------------------------------------------------- overlays

def test_draw_pose_puts_joints_and_limbs_where_told():
    names, skeleton = default_keypoints(17)
    img = np.zeros((120, 160, 3), np.uint8)
    kpts = np.zeros((1, 17, 3), np.float32)
    kpts[0, 5] = [40, 30, 1.0]      # left shoulder
    kpts[0, 7] = [40, 90, 1.0]      # left elbow: limb 6-8 (1-based) between them
    kpts[0, 6] = [120, 30, 1.0]     # right shoulder
    kpts[0, 8] = [120, 90, 0.05]    # right elbow below threshold: not drawn
    out = draw_pose(img, kpts, skeleton, names, kpt_thr=0.2)
    assert tuple(out[60, 40]) == LEFT           # middle of the left upper arm
    assert tuple(out[30, 120]) == RIGHT         # right shoulder joint
    assert out[60, 120].sum() == 0 and out[90, 120].sum() == 0   # nothing for the low score
    # shoulders are joined by a centre-coloured limb 6-7; elsewhere the image is untouched
    assert out[5:20, :].sum() == 0 and out[100:, :].sum() == 0
    assert img.sum() == 0                       # input not modified


def test_paste_mask_lands_on_the_crop():
    center, scale = np.array([80.0, 60.0]), np.array([40.0, 40.0])
    full = paste_mask(np.ones((16, 16), np.float32), center, scale, (160, 120))
    assert full.shape == (120, 160)
    assert full[60, 80] == pytest.approx(1.0) and full[45, 65] > 0.5
    assert full[60, 110] == 0.0 and full[20, 80] == 0.0   # outside the 40x40 crop
    masks = full[None]
    out = draw_pose(np.zeros((120, 160, 3), np.uint8), np.zeros((0, 17, 3)), [], masks=masks)
    assert out[60, 80].sum() > 0 and out[60, 110].sum() == 0


# ---------------------------------------------------------------------------------- bench

def test_bench_infer_cli_prints_one_json(capsys):
    assert main(["bench", "infer", "--model", "mobilenetv2", "--input-size", "64", "64",
                 "--threads", "1", "--iters", "1", "--batch", "2", "--batch-iters", "1",
                 "--warmup", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "mobilenetv2" and report["input_size"] == [64, 64]
    assert report["params"] > 1e5 and report["gflops"] > 0
    for backend in ("torch", "onnxruntime"):
        vals = report["summary"][backend]["1"]
        assert vals["latency_ms_b1"] > 0 and vals["throughput_b2"] > 0
    assert report["machine"]["logical_cpus"] >= 1


def test_bench_train_without_module_is_a_clear_error(capsys, monkeypatch):
    import odkd.commands.bench as bench_cmd

    monkeypatch.setattr(bench_cmd, "TRAIN_MODULE", "odkd.engine.no_such_bench_module")
    assert main(["bench", "train", "--steps", "1"]) == 2
    assert "odkd.engine.no_such_bench_module is missing" in capsys.readouterr().err


# ------------------------------------------------------------------------- infer bad input

def test_infer_rejects_nan_scores_and_counts_dropped_boxes(student, real_mini, tmp_path,
                                                           capsys):
    _, ckpt, _, _ = student
    img = str(real_mini / "coco" / "000000000785.jpg")
    nan = tmp_path / "nan.json"
    nan.write_text('[{"image_id": 785, "category_id": 1, "bbox": [10, 10, 50, 80], '
                   '"score": NaN}]')
    capsys.readouterr()
    assert main(["infer", "--checkpoint", ckpt, "--input", img, "--boxes", str(nan),
                 "--out", str(tmp_path / "a"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nan.json: detection 0 field score" in err
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([
        {"image_id": 785, "category_id": 1, "bbox": [300, 50, 200, 300], "score": 0.9},
        {"image_id": 785, "category_id": 1, "bbox": [5000, 50, 20, 30], "score": 0.9}]))
    assert main(["infer", "--checkpoint", ckpt, "--input", img, "--boxes", str(boxes),
                 "--out", str(tmp_path / "b"), "--no-progress", "--kpt-thr", "1000"]) == 0
    out = capsys.readouterr().out
    assert "1 person(s), 0 of 17 keypoints above --kpt-thr 1000 drawn" in out
    assert "boxes skipped: 1 bbox outside image" in out
    assert "no keypoint scored above --kpt-thr 1000" in out


def test_infer_survives_nan_model_output(real_mini, tmp_path):
    class NanNet(nn.Module):
        num_joints, with_mask, odkd_name = 17, False, "nan"

        def forward(self, x):
            heat = torch.zeros(x.shape[0], 17, x.shape[2] // 4, x.shape[3] // 4)
            heat[:, :, 3, 5] = float("nan")   # what negative BN variances produce
            return {"heatmaps": heat}

    spec = PoseSpec("nan", 17, False, (64, 64), flip_pairs=[[1, 2]])
    pred = TopDownPredictor(NanNet(), spec, torch.device("cpu"))
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps([{"image_id": 785, "category_id": 1, "score": 0.9,
                                  "bbox": [300, 50, 200, 300]}] * 2))
    out = run_inference(pred, str(real_mini / "coco" / "000000000785.jpg"), str(tmp_path),
                        InferOptions(boxes=str(boxes), progress=False))
    assert out["instances"] >= 1 and out["keypoints_drawn"] == 0


def test_draw_pose_labels_scores_and_legend():
    names, skeleton = default_keypoints(17)
    img = np.zeros((200, 300, 3), np.uint8)
    kpts = np.zeros((1, 17, 3), np.float32)
    kpts[0, 5] = [200, 150, 1.0]
    plain = draw_pose(img, kpts, skeleton, names, kpt_thr=0.2)
    assert plain[:40, :100].sum() == 0
    out = draw_pose(img, kpts, skeleton, names, kpt_thr=0.2, boxes=np.array([[150, 100, 100, 80]]),
                    scores=[0.87], legend=True)
    legend = out[:40, :100]
    assert (legend == LEFT).all(axis=2).any() and (legend == RIGHT).all(axis=2).any()
    assert (out[80:99, 150:240].min(axis=2) > 150).sum() > 20   # white score text above box
