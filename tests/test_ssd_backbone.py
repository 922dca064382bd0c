"""SSD-MobileNet-v2's trunk as a student's start: read from the stored ONNX graph, checked
against ONNX Runtime's activations of that graph (itself checked against TensorFlow when
`odkd teachers fetch` converted it), loaded only into the trunk, refused by other students."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from odkd.errors import CheckpointError
from odkd.models import build_model
from odkd.models.checkpoint import load_weights
from odkd.models.ssd_backbone import TRUNK_OUTPUT, ssd_trunk_graph

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ssd_path():
    from odkd.teachers.store import is_present, model_path

    if not is_present("ssd-mobilenet-v2"):
        pytest.skip("ssd-mobilenet-v2 not fetched (odkd teachers fetch ssd-mobilenet-v2)")
    return model_path("ssd-mobilenet-v2")


def test_trunk_reproduces_the_graph_activations(ssd_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = build_model("movenet_lightning", 17, with_mask=True)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    fmt = load_weights(model, ssd_path, verbose=False, init_missing=("mask_layer.",))
    assert fmt == "ssd_backbone"
    sd = model.state_dict()
    # only the trunk changed; the pyramid and heads keep their fresh initialisation
    assert not torch.equal(sd["backbone.stem.conv.weight"], fresh["backbone.stem.conv.weight"])
    for k in ("fpn.lat32.weight", "final_layer.weight", "mask_layer.1.weight"):
        assert torch.equal(sd[k], fresh[k])

    graph = onnx.load(ssd_path)
    graph.graph.output.append(onnx.helper.make_tensor_value_info(
        TRUNK_OUTPUT, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    # 300x300: odd sizes on the way down (75 -> 38 -> 19 -> 10) exercise TF SAME padding
    x = np.random.default_rng(0).integers(0, 256, (1, 300, 300, 3)).astype(np.uint8)
    ref = sess.run([TRUNK_OUTPUT], {name: x})[0]
    model.eval()
    with torch.no_grad():
        # MoveNet's and SSD's graphs both scale the image to x / 127.5 - 1 first
        out = model.backbone(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1)[-1]
    assert out.shape == ref.shape == (1, 1280, 10, 10)
    assert float(ref.max()) > 1.0   # a live feature map, not all zeros
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-3)


def test_thunder_width_student_is_refused(ssd_path):
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(build_model("movenet_thunder"), ssd_path, verbose=False)


def test_other_files_are_not_taken_for_the_trunk(tmp_path):
    assert ssd_trunk_graph(str(tmp_path / "model.pt")) is None
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    assert ssd_trunk_graph(str(bad)) is None
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_weights(build_model("movenet_lightning"), bad, verbose=False)


def test_model_init_names_the_stored_detector(ssd_path):
    from odkd.engine.setup import resolve_init

    assert resolve_init("ssd-mobilenet-v2") == ssd_path
