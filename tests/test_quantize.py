"""odkd.deploy.quantize and `odkd export --int8`: calibration crops, int8 close to fp32, the
files and metadata, and the quantized model loaded through the usual paths."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from torch import nn

from odkd.cli import main
from odkd.config import Config
from odkd.errors import OdkdError
from odkd.data.coco import load_coco
from odkd.data.dataset import normalize_crop, read_image, warp_crop
from odkd.deploy.onnx_export import export_onnx
from odkd.onnxrt import OrtPoseModel
from odkd.deploy.quantize import (calibrate_ranges, calibration_crops, compare_outputs,
                                  int8_path, ops_to_quantize, optimize_fp32, quantization_info, quantize_onnx,
                                  synth_calibration_set)
from odkd.spec import spec_for_model
from odkd.geometry import box_to_center_scale
from odkd.models import build_model
from odkd.models.checkpoint import save_checkpoint

pytest.importorskip("onnxruntime")


class TinyPose(nn.Module):
    """Three convolutions to stride-4 heatmaps: the odkd model contract at the smallest size."""

    odkd_name, num_joints, with_mask = "tiny", 17, False

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                 nn.ReLU(), nn.Conv2d(16, 17, 1))
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Conv2d):   # He init: activations stay O(1) through the net
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen)
                                   * (2.0 / m.weight[0].numel()) ** 0.5)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)

    def forward(self, x):
        return {"heatmaps": self.net(x)}


def test_int8_outputs_are_close_to_fp32_on_a_tiny_model(tmp_path):
    cfg = Config()
    cfg.data.input_size = [32, 32]
    model = TinyPose().eval()
    spec = spec_for_model(model, cfg)
    fp32 = str(tmp_path / "m.onnx")
    export_onnx(model, spec, fp32)
    optimize_fp32(fp32, fp32)
    gen = np.random.default_rng(0)
    calib = gen.standard_normal((64, 3, 32, 32)).astype(np.float32)
    test = gen.standard_normal((16, 3, 32, 32)).astype(np.float32)
    out8 = int8_path(fp32)
    record = quantize_onnx(fp32, out8, calib, calibration={"calibration_data": "noise"})
    assert out8.endswith("m.int8.onnx") and record["format"] == "QDQ"
    d = compare_outputs(fp32, out8, test, threads=1)
    ref = OrtPoseModel(fp32)(test)["heatmaps"].numpy()
    span = float(ref.max() - ref.min())
    # Each quantized tensor (input, two hidden activations, output) is rounded to 1/255 of its
    # calibrated range, each weight to 1/254 of its channel's range. The output's own rounding
    # alone is up to span / 510; three layers of input and weight rounding add a few such
    # steps. Measured on an AVX-512 VNNI Xeon: max 1.0 % of the span (2.4 steps), mean 0.2 %.
    # 6 % (~15 steps) leaves room for int8 kernels that differ by machine (without VNNI
    # onnxruntime's u8s8 products can saturate); the mean must stay near one step.
    assert d["heatmaps_max_abs_diff"] < 0.06 * span
    assert d["heatmaps_mean_abs_diff"] < 0.01 * span
    assert d["heatmaps_mean_abs_diff"] > 0   # it did quantize
    # the int8 file is a QDQ graph whose convolutions take int8 weights
    import onnx

    ops = {n.op_type for n in onnx.load(out8).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert quantization_info(out8)["calibration_data"] == "noise"
    assert quantization_info(fp32) is None
    assert OrtPoseModel(out8).spec == OrtPoseModel(fp32).spec == spec


def test_calibration_methods_set_different_one_sided_ranges(tmp_path):
    cfg = Config()
    cfg.data.input_size = [32, 32]
    fp32 = str(tmp_path / "m.onnx")
    export_onnx(TinyPose().eval(), spec_for_model(TinyPose(), cfg), fp32)
    optimize_fp32(fp32, fp32)
    import onnx

    graph = onnx.load(fp32).graph
    relu_out = [n.output[0] for n in graph.node if n.op_type == "Relu"]
    image = graph.input[0].name
    crops = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    crops[0, 0, :2, :2] = 60.0   # 4 outlier values among 196,608 (0.002 %)
    def span(data, name):
        return tuple(float(np.asarray(v).reshape(-1)[0]) for v in data[name].range_value)

    # percentile 99.99 cuts 0.005 % from each tail: the outliers and a few normal values
    ranges = {m: calibrate_ranges(fp32, crops, ops_to_quantize(), m, str(tmp_path), 99.99)[0]
              for m in ("minmax", "percentile", "entropy")}
    assert span(ranges["minmax"], image)[1] == 60.0
    for m in ("percentile", "entropy"):
        # the outliers are cut: a standard normal's 99.995th percentile is 3.9
        assert span(ranges[m], image)[1] < 10.0, m
        for name in relu_out:
            # a ReLU output keeps its lower end at 0, not at -high (a symmetric range
            # would waste half the uint8 codes)
            low, high = span(ranges[m], name)
            assert low >= 0.0 and high > 0.0, (m, name, low, high)
    # the 99.9 % range is narrower than the 99.99 % one
    p3 = calibrate_ranges(fp32, crops, ops_to_quantize(), "percentile", str(tmp_path), 99.9)[0]
    assert span(p3, image)[1] < span(ranges["percentile"], image)[1]
    with pytest.raises(OdkdError, match="--calib-percentile"):
        calibrate_ranges(fp32, crops, ops_to_quantize(), "percentile", str(tmp_path), 101.0)


def test_calibration_crops_are_the_evaluation_crops(tmp_path):
    ann, images = synth_calibration_set(str(tmp_path / "synth"), 6, "easy")
    cfg = Config()
    cfg.data.input_size = [32, 48]
    spec = spec_for_model(build_model("mobilenetv2"), cfg)
    crops = calibration_crops(spec, ann, images, 4)
    coco = load_coco(ann, images, train=True)
    assert crops.shape == (4, 3, 48, 32) and len(coco.records) >= 4
    rec = coco.records[0]   # the first of the evenly spread picks
    center, scale = box_to_center_scale(rec.bbox, 32 / 48, cfg.data.padding)
    want = normalize_crop(warp_crop(read_image(rec.file_name), center, scale, 0.0, (32, 48)))
    np.testing.assert_array_equal(crops[0], want)


def test_label_free_people_calibrate_too(tmp_path):
    """A set with boxes and no keypoints (`odkd data import --detect`) gives the same crops as
    the labelled set it came from, its images found through info.image_root."""
    import json
    import os

    ann, images = synth_calibration_set(str(tmp_path / "synth"), 6, "easy")
    cfg = Config()
    cfg.data.input_size = [32, 48]
    spec = spec_for_model(build_model("mobilenetv2"), cfg)
    d = json.loads(open(ann).read())
    for a in d["annotations"]:
        a["keypoints"], a["num_keypoints"] = [0] * 51, 0
    d.setdefault("info", {})["image_root"] = os.path.relpath(images, str(tmp_path))
    unl = tmp_path / "unlabelled.json"
    unl.write_text(json.dumps(d))
    np.testing.assert_array_equal(calibration_crops(spec, str(unl), "", 4),
                                  calibration_crops(spec, ann, images, 4))


def test_fp32_nodes_stay_float_and_bad_patterns_are_one_line(tmp_path):
    import onnx

    from odkd.deploy.quantize import fp32_node_names

    cfg = Config()
    cfg.data.input_size = [32, 32]
    model = TinyPose().eval()
    fp32 = str(tmp_path / "m.onnx")
    export_onnx(model, spec_for_model(model, cfg), fp32)
    optimize_fp32(fp32, fp32)
    graph = onnx.load(fp32).graph
    last = [n.name for n in graph.node if n.op_type == "Conv"][-1]
    assert fp32_node_names(graph, [last + "$"]) == [last]
    with pytest.raises(OdkdError, match="matches no node"):
        fp32_node_names(graph, ["/nowhere/"])
    with pytest.raises(OdkdError, match="not a regular expression"):
        fp32_node_names(graph, ["("])
    calib = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    out8 = str(tmp_path / "m.int8.onnx")
    record = quantize_onnx(fp32, out8, calib, fp32_nodes=[last + "$"])
    assert record["fp32_node_count"] == 1 and quantization_info(out8)["fp32_nodes"] == [last + "$"]
    q = onnx.load(out8).graph
    produced = {o: n for n in q.node for o in n.output}
    convs = [n for n in q.node if n.op_type == "Conv"]
    kept = next(n for n in convs if n.name == last)

    def quantized_weight(conv):
        src = produced.get(conv.input[1])
        return src is not None and src.op_type == "DequantizeLinear"

    # the kept conv reads its float weights; the others read dequantized int8 ones
    assert not quantized_weight(kept)
    assert all(quantized_weight(n) for n in convs if n is not kept)


def test_movenet_declares_layers_that_exist_in_its_export(tmp_path):
    import onnx

    from odkd.deploy.quantize import fp32_node_names

    model = build_model("movenet_lightning").eval()
    spec = spec_for_model(model, input_size=(96, 96))
    path = str(tmp_path / "m.onnx")
    export_onnx(model, spec, path)
    optimize_fp32(path, path)
    graph = onnx.load(path).graph
    # each pattern selects at least one node (else fp32_node_names refuses it)
    names = fp32_node_names(graph, model.default_cfg["int8_fp32"])
    assert "/model/final_layer/Conv" in names and "/model/backbone/last/conv/Conv" in names
    # the trunk before the last conv stays int8
    assert not [n for n in names if n.startswith("/model/backbone/blocks")]


def test_export_int8_cli_writes_both_files_that_load_everywhere(tmp_path):
    from odkd.deploy.loader import load_pose

    cfg = Config()
    cfg.data.input_size = [32, 32]
    ckpt, out = str(tmp_path / "ck.pt"), str(tmp_path / "model.onnx")
    save_checkpoint(ckpt, build_model("mobilenetv2"), extra={"config": cfg.to_dict()})
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["export", ckpt, "--out", out, "--int8", "--calib-synth", "easy",
                     "--calib-crops", "8"]) == 0
    text = buf.getvalue()
    assert "optimised" in text and "model.int8.onnx: int8 (QDQ" in text
    info = quantization_info(str(tmp_path / "model.int8.onnx"))
    assert info["calibration_crops"] == 8 and "SynthPose" in info["calibration_data"]
    for path in (out, str(tmp_path / "model.int8.onnx")):
        pose = load_pose(path, threads=1)
        assert pose.spec.input_size == (32, 32)
        heat = pose.model(torch.zeros(1, 3, 32, 32))["heatmaps"]
        assert heat.shape == (1, 17, 8, 8)


def test_export_int8_input_errors_are_one_line(tmp_path, capsys):
    cfg = Config()
    cfg.data.input_size = [32, 32]
    ckpt = str(tmp_path / "ck.pt")
    save_checkpoint(ckpt, build_model("mobilenetv2"), extra={"config": cfg.to_dict()})
    out = str(tmp_path / "m.onnx")
    assert main(["export", ckpt, "--out", out, "--calib-synth", "easy"]) == 2
    assert "--calib-synth only applies with --int8" in capsys.readouterr().err
    # the stored config names no training data and none was given
    assert main(["export", ckpt, "--out", out, "--int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--int8 needs calibration data" in err[0]
    assert main(["export", ckpt, "--out", out, "--int8", "--calib-ann",
                 str(tmp_path / "none.json"), "--calib-images", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.json: calibration annotation file not found" in err[0]

