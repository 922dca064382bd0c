"""EfficientNet-Lite3 trunk under MoveNet's pyramid: shapes, and the trunk read from the int8
TFLite classifier against LiteRT's own activations when `odkd teachers fetch` stored it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from odkd.errors import CheckpointError
from odkd.models import build_model
from odkd.models.checkpoint import load_weights
from odkd.models.efficientnet_lite import (INPUT_SCALE, INPUT_ZERO,
                                           is_efficientnet_lite_tflite)

torch.set_num_threads(1)


def test_builder_shapes_and_stage_widths():
    model = build_model("effnet_lite3_fpn", with_mask=True).eval()
    # Lite3: 24 blocks, taps at the ends of stages 2, 3 and 5
    assert len(model.backbone.blocks) == 24 and model.backbone.channels == [32, 48, 136, 1280]
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 128, 96))
    assert out["heatmaps"].shape == (1, 17, 32, 24) and out["mask"].shape == (1, 1, 32, 24)


@pytest.fixture(scope="module")
def tflite_path():
    from odkd.teachers.store import is_present, model_path

    if not is_present("efficientnet-lite3"):
        pytest.skip("efficientnet-lite3 not fetched (odkd teachers fetch efficientnet-lite3)")
    pytest.importorskip("ai_edge_litert")
    return model_path("efficientnet-lite3")


def test_trunk_follows_the_tflite_activations(tflite_path):
    import cv2
    from ai_edge_litert.interpreter import Interpreter

    model = build_model("effnet_lite3_fpn")
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_weights(model, tflite_path, verbose=False) == "effnet_lite_tflite"
    assert torch.equal(model.state_dict()["fpn.lat4.weight"], fresh["fpn.lat4.weight"])
    model.eval()
    interp = Interpreter(model_path=tflite_path, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    # a smooth image (blurred noise), closer to a photograph than raw noise
    noise = np.random.default_rng(0).integers(0, 256, (280, 280, 3)).astype(np.uint8)
    img = cv2.GaussianBlur(noise, (0, 0), 3)[None]
    interp.set_tensor(interp.get_input_details()[0]["index"], img)
    interp.invoke()
    convs = [op for op in interp._get_ops_details()
             if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    details = {d["index"]: d for d in interp.get_tensor_details()}

    def activation(op):
        i = op["outputs"][0]
        scale, zero = details[i]["quantization"]
        q = interp.get_tensor(i).astype(np.float64)
        return ((q - zero) * scale).transpose(0, 3, 1, 2)

    x = torch.from_numpy(img).permute(0, 3, 1, 2).float() * INPUT_SCALE - INPUT_ZERO * INPUT_SCALE
    with torch.no_grad():
        stem = model.backbone.stem(x).numpy()
        last = model.backbone(x)[-1].numpy()
    ref_stem, ref_last = activation(convs[0]), activation(convs[-1])
    assert stem.shape == ref_stem.shape and last.shape == ref_last.shape == (1, 1280, 9, 9)

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    # LiteRT computes in int8: its stem output is rounded once (0.2 % measured), its last
    # layer after 73 int8 layers (13 % relative error, correlation 0.991 measured); a conv out
    # of place or a transposed kernel would leave no correlation at all
    assert rel(stem, ref_stem) < 0.02
    assert rel(last, ref_last) < 0.3
    assert np.corrcoef(last.ravel(), ref_last.ravel())[0, 1] > 0.95


def test_only_the_lite3_student_takes_it(tflite_path, tmp_path):
    with pytest.raises(CheckpointError, match="shape mismatch|unexpected"):
        load_weights(build_model("movenet_lightning"), tflite_path, verbose=False)
    other = tmp_path / "x.tflite"
    other.write_bytes(b"TFL3 something else")
    assert not is_efficientnet_lite_tflite(str(other))
