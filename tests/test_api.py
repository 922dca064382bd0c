"""odkd.load / predict / draw: the Python API, and `odkd infer` / `odkd eval` going through it."""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import odkd
from odkd.cli import main
from odkd.config import Config, ConfigError
from odkd.data.dataset import read_image
from odkd.deploy.infer import InferOptions, run_inference
from odkd.errors import CheckpointError, DataError
from odkd.models import build_model
from odkd.models.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
IMG = "000000000785.jpg"


def _student(seed: int = 0) -> torch.nn.Module:
    """shufflenetv2 with a mask head, random weights; the heads are rescaled so outputs peak
    near 1 (the builders' init gives ~1e-3 maps, which no keypoint threshold would pass)."""
    torch.manual_seed(seed)
    model = build_model("shufflenetv2", 17, with_mask=True).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = model(x)
        for key, head in (("heatmaps", model.final_layer), ("mask", model.mask_layer)):
            peak = out[key].abs().max()
            head.weight.div_(peak)
            head.bias.div_(peak)
    return model


def _cfg(**eval_settings) -> Config:
    cfg = Config()
    cfg.data.input_size = [64, 64]
    for k, v in eval_settings.items():
        setattr(cfg.eval, k, v)
    return cfg


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("api") / "student.pt")
    save_checkpoint(path, _student(), extra={"config": _cfg().to_dict()})
    return path


def _rows(people) -> np.ndarray:
    return np.stack([np.concatenate([p.keypoints, p.scores[:, None]], axis=1) for p in people])


def _cli_infer(ckpt: str, inp: str, out: Path, *extra: str) -> list[dict]:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["infer", "--checkpoint", ckpt, "--input", inp, "--out", str(out),
                     "--no-progress", *extra]) == 0
    return json.loads((out / "results.json").read_text())


# ----------------------------------------------------------------------- API == `odkd infer`

def test_api_equals_infer_cli_with_detections(ckpt, real_mini, tmp_path):
    root = real_mini / "coco"
    dets = str(root / "test_coco_det_AP_H_56.json")
    cli = _cli_infer(ckpt, str(root), tmp_path, "--boxes", dets, "--det-thr", "0.3",
                     "--batch-size", "4")
    model = odkd.load(ckpt, device="cpu", batch_size=4)
    per_image = model.predict(root, boxes=dets, det_thr=0.3)
    assert len(per_image) == 4 and sum(map(len, per_image)) == len(cli) > 4
    api = [p for people in per_image for p in people]
    for r, p in zip(cli, api):
        assert r["image_id"] == p.image_id and r["score"] == p.score
        np.testing.assert_array_equal(np.reshape(r["keypoints"], (17, 3)), _rows([p])[0])
        assert p.mask.shape == (425, 640) if p.image_id == 785 else p.mask.ndim == 2
    # odkd.draw gives the CLI's overlay pixel for pixel
    canvas = odkd.draw(root / IMG, per_image[0])
    png = cv2.cvtColor(cv2.imread(str(tmp_path / "000000000785.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(canvas, png)


def test_api_equals_infer_cli_whole_image(ckpt, real_mini, tmp_path):
    img = str(real_mini / "coco" / IMG)
    cli = _cli_infer(ckpt, img, tmp_path, "--boxes", "full")
    people = odkd.load(ckpt, device="cpu").predict(img, boxes="full")
    assert len(people) == len(cli) == 1 and people[0].box is None
    np.testing.assert_array_equal(np.reshape(cli[0]["keypoints"], (17, 3)), _rows(people)[0])
    assert (people[0].scores > 0.2).any()   # the overlay below has joints to compare
    png = cv2.cvtColor(cv2.imread(str(tmp_path / "000000000785.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(odkd.draw(img, people), png)
    # an array image gives the same people as its path
    same = odkd.load(ckpt, device="cpu").predict(cv2.cvtColor(cv2.imread(img),
                                                              cv2.COLOR_BGR2RGB), None)
    np.testing.assert_array_equal(_rows(same), _rows(people))


def test_api_onnxruntime_backend_same_call(ckpt, real_mini, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx_path = str(tmp_path / "student.onnx")
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", ckpt, "--format", "onnx", "--out", onnx_path]) == 0
    img = str(real_mini / "coco" / IMG)
    boxes = [[300, 50, 200, 300], [20, 30, 250, 380]]
    ort = odkd.load(onnx_path, threads=1)
    assert type(ort.model).__name__ == "OrtPoseModel"
    got = ort.predict([img, img], boxes=[boxes, boxes[:1]])
    ref = odkd.load(ckpt, device="cpu").predict([img, img], boxes=[boxes, boxes[:1]])
    assert [len(p) for p in got] == [len(p) for p in ref] and len(got[1]) == 1
    for a, b in zip(got, ref):
        np.testing.assert_allclose(_rows(a), _rows(b), atol=1e-3)
        assert a[0].mask is not None
    cli = _cli_infer(onnx_path, img, tmp_path / "cli", "--boxes", "full")   # onnxruntime
    np.testing.assert_array_equal(np.reshape(cli[0]["keypoints"], (17, 3)),
                                  _rows(ort.predict(img, boxes="full"))[0])


# ------------------------------------------------------------------------- boxes="auto"

def _detector_or_skip() -> None:
    from odkd.deploy.infer import DETECTOR, detector_status

    missing = detector_status()
    if missing:
        pytest.skip(f"the person detector {DETECTOR} is not usable here: {missing}")


def test_predict_auto_without_detector_is_the_whole_image(ckpt, real_mini, tmp_path,
                                                          monkeypatch, capsys):
    monkeypatch.setenv("ODKD_CACHE", str(tmp_path / "empty_cache"))   # no detector fetched
    img = str(real_mini / "coco" / "000000196141.jpg")
    model = odkd.load(ckpt, device="cpu")
    people = model.predict(img)
    assert len(people) == 1 and people[0].box is None
    np.testing.assert_array_equal(_rows(people), _rows(model.predict(img, boxes="full")))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "whole image" in out[0] and "odkd teachers fetch ssd-mobilenet-v2" \
        in out[0]
    model.predict(img)
    assert capsys.readouterr().out == ""   # said once per model
    with pytest.raises(CheckpointError, match="run `odkd teachers fetch ssd-mobilenet-v2`"):
        model.predict(img, boxes="detect")


def test_predict_auto_detects_several_people(ckpt, real_mini, tmp_path):
    """The default boxes="auto" runs the detector when it is fetched: one Person per detected
    box, the same as passing the detector's boxes (and scores) by hand, and as `odkd infer`."""
    _detector_or_skip()
    from odkd.teachers.detector import get_detector

    root = real_mini / "coco"
    img = str(root / "000000196141.jpg")
    model = odkd.load(ckpt, device="cpu")
    auto = model.predict(img)
    boxes, scores = get_detector("ssd-mobilenet-v2")(read_image(img), 0.5)
    assert len(boxes) >= 3 and 2 <= len(auto) <= len(boxes)
    by_hand = model.predict(img, boxes=np.concatenate([boxes, scores[:, None]], axis=1))
    np.testing.assert_array_equal(_rows(auto), _rows(by_hand))
    assert all(p.box is not None for p in auto)
    np.testing.assert_array_equal(_rows(model.predict(img, boxes="detect")), _rows(auto))
    assert len(model.predict(img, det_thr=0.95)) < len(auto)
    # a folder: the same people as `odkd infer FOLDER --boxes detect`
    cli = _cli_infer(ckpt, str(root), tmp_path, "--boxes", "detect")
    api = [p for people in model.predict(root) for p in people]
    assert len(api) == len(cli) > 4
    for r, p in zip(cli, api):
        assert r["image_id"] == p.image_id and r["score"] == p.score
        np.testing.assert_array_equal(np.reshape(r["keypoints"], (17, 3)), _rows([p])[0])


# ------------------------------------------------------------------ checkpoint eval settings

def test_predict_uses_the_checkpoint_eval_settings(tmp_path):
    model = _student(1)
    no_flip = str(tmp_path / "noflip.pt")
    save_checkpoint(no_flip, model,
                    extra={"config": _cfg(flip_test=False, decode="dark").to_dict()})
    plain = str(tmp_path / "plain.pt")
    save_checkpoint(plain, model, extra={"config": _cfg().to_dict()})
    a, b = odkd.load(no_flip, device="cpu"), odkd.load(plain, device="cpu")
    assert (a.predictor.flip_test, a.predictor.codec.decoder) == (False, "dark")
    assert (b.predictor.flip_test, b.predictor.codec.decoder) == (True, "quarter")
    img = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    flip_on, flip_off = _rows(b.predict(img, "full")), _rows(a.predict(img, "full"))
    assert not np.allclose(flip_on, flip_off)
    # the same settings given by hand give the same keypoints as the stored ones
    hand = odkd.load(plain, device="cpu", flip=False)
    hand.predictor.codec = replace(hand.predictor.codec, decoder="dark")
    np.testing.assert_array_equal(_rows(hand.predict(img, "full")), flip_off)


def test_stored_config_reaches_eval_cli(real_mini, tmp_path, capsys):
    ck = str(tmp_path / "hrnet_protocol.pt")
    save_checkpoint(ck, _student(), extra={"config": _cfg(protocol="hrnet").to_dict()})
    root = real_mini / "coco"
    assert main(["eval", "--checkpoint", ck, "--ann", str(root / "test_coco.json"),
                 "--images", str(root)]) == 0
    out = capsys.readouterr().out
    assert "protocol hrnet" in out and "loaded odkd checkpoint" in out


def test_bad_stored_config_names_the_checkpoint(tmp_path):
    ck = str(tmp_path / "old.pt")
    cfg = _cfg().to_dict()
    cfg["eval"]["no_such_setting"] = 1
    save_checkpoint(ck, _student(), extra={"config": cfg})
    with pytest.raises(ConfigError, match=r"old\.pt: stored config: .*no_such_setting"):
        odkd.load(ck, device="cpu")


# ------------------------------------------------------------------------- people and NMS

def test_identical_boxes_with_nms_off_are_two_people(ckpt, tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    model = odkd.load(ckpt, device="cpu")
    box = [10, 10, 60, 100]
    two = model.predict(img, boxes=[box, box], nms=False)
    assert len(two) == 2
    np.testing.assert_array_equal(two[0].keypoints, two[1].keypoints)
    assert len(model.predict(img, boxes=[box, box])) == 1   # OKS 1: NMS keeps one
    # the same through the CLI pipeline: both survive, both are drawn and written
    cv2.imwrite(str(tmp_path / "7.png"), img[..., ::-1])
    dets = tmp_path / "d.json"
    dets.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": box, "score": 1.0}] * 2))
    out = run_inference(model.predictor, str(tmp_path / "7.png"), str(tmp_path / "o"),
                        model.options(boxes=str(dets), oks_nms_thr=1.0, progress=False,
                                      kpt_thr=-1.0))
    assert out["instances"] == 2 and out["keypoints_drawn"] == 34
    assert len(json.loads((tmp_path / "o" / "results.json").read_text())) == 2


def test_infer_reads_detections_with_the_eval_checks(ckpt, tmp_path, capsys):
    """`odkd infer --boxes` and `odkd eval --boxes` share coco.read_detections: the same
    required fields, and low-score / other-category boxes are counted, not silently lost."""
    img = np.random.default_rng(2).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "7.png"), img)
    det = {"image_id": 7, "category_id": 1, "bbox": [10, 10, 60, 100], "score": 0.9}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{k: v for k, v in det.items() if k != "category_id"}]))
    args = ["infer", "--checkpoint", ckpt, "--input", str(tmp_path / "7.png"), "--no-progress"]
    capsys.readouterr()
    assert main([*args, "--boxes", str(bad), "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json: detection 0 field category_id: expected an integer" \
        in err[0]
    good = tmp_path / "good.json"
    good.write_text(json.dumps([det, {**det, "score": 0.1}, {**det, "category_id": 2}]))
    assert main([*args, "--boxes", str(good), "--det-thr", "0.5",
                 "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "1 person(s)" in out
    assert "boxes skipped: 1 below score threshold, 1 other category" in out


def test_bad_api_inputs_are_one_line_errors(ckpt, tmp_path):
    model = odkd.load(ckpt, device="cpu")
    img = np.zeros((40, 30, 3), np.uint8)
    with pytest.raises(DataError, match=r"boxes: expected \(M, 4\).*shape \(2, 3\)"):
        model.predict(img, boxes=[[1, 2, 3], [4, 5, 6]])
    with pytest.raises(DataError, match="boxes: box values must be finite"):
        model.predict(img, boxes=[[1, 2, float("nan"), 4]])
    with pytest.raises(DataError, match=r"boxes\[1\]"):
        model.predict([img, img], boxes=[[[0, 0, 5, 5]], [[0, 0, 5]]])
    with pytest.raises(DataError, match="image 0: expected an image path or an RGB uint8"):
        model.predict(np.zeros((40, 30), np.float32))
    with pytest.raises(DataError, match="pass image_ids="):
        model.predict(img, boxes=str(tmp_path / "dets.json"))
    with pytest.raises(DataError, match="no_such.jpg: cannot read image"):
        model.predict(str(tmp_path / "no_such.jpg"))
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint file not found"):
        odkd.load(tmp_path / "missing.pt")


def test_import_odkd_does_not_import_torch():
    # the CLI imports odkd for every command: the API must resolve lazily
    code = "import sys, odkd; assert 'torch' not in sys.modules; assert callable(odkd.load)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- README snippet

def _snippet() -> str:
    """The python block between <!-- api-start --> and <!-- api-end --> in README.md."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- api-start -->\s*```python\n(.*?)```\s*<!-- api-end -->", text, re.S)
    if not m:
        pytest.fail("no <!-- api-start --> python block in README.md")
    return m.group(1)


def test_readme_api_snippet_runs(real_mini, tmp_path, capsys):
    code = _snippet()
    for name in ("odkd-lightning", "street.jpg", "street_pose.png"):
        assert f'"{name}"' in code
    from odkd.models import zoo

    if not os.path.isfile(os.path.join(zoo.WEIGHTS_DIR, zoo.SHIPPED["odkd-lightning"]["file"])):
        pytest.skip("the snippet loads the shipped model, and src/odkd/weights/"
                    "odkd-lightning.pt is not in this tree")
    code = (code.replace('"street.jpg"', repr(str(real_mini / "coco" / IMG)))
            .replace('"street_pose.png"', repr(str(tmp_path / "street_pose.png"))))
    exec(compile(code, "README api snippet", "exec"), {})
    assert cv2.imread(str(tmp_path / "street_pose.png")).shape == (425, 640, 3)
    assert capsys.readouterr().out.strip().endswith("1\n1")
