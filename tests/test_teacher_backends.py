"""odkd.teachers.checkpoint and odkd.teachers.onnx_yaml: an odkd checkpoint and a user's ONNX
model (described by a YAML file) behind the one teacher interface. The ONNX models are tiny
torch modules exported here: one gives heatmaps, one MoveNet-style (y, x, score) keypoints; both
find the bright spot of their crop, which is ground truth for the geometry."""
import os

import numpy as np
import pytest
import torch
from torch import nn

from odkd.codec import HeatmapCodec, predict_heatmaps
from odkd.config import Config, ConfigError
from odkd.data.dataset import normalize_crop, warp_crop
from odkd.errors import CheckpointError
from odkd.geometry import affine_points, get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS, flip_pairs_from_names
from odkd.models import build_model
from odkd.models.checkpoint import save_checkpoint
from odkd.teachers import get_teacher, teacher_scale

pytest.importorskip("onnxruntime")
# the tiny models go through the legacy (TorchScript) exporter, as odkd export does
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _spot_image(pt, shape=(240, 320)):
    img = np.zeros(shape + (3,), np.uint8)
    x, y = int(round(pt[0])), int(round(pt[1]))
    img[y - 2:y + 3, x - 2:x + 3] = 255
    return img


# ------------------------------------------------------------------------------ checkpoint
@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("mobilenetv2", num_joints=17, with_mask=True).eval()
    cfg = Config()
    cfg.data.input_size = [48, 64]
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(path, model, extra={"config": cfg.to_dict()})
    return str(path), model, cfg


def test_checkpoint_teacher_is_odkds_own_crop_flip_and_decode(ckpt):
    """Same keypoints as cropping with warp_crop at the checkpoint's input size, running the
    flip test through predict_heatmaps and decoding in the image with the codec."""
    path, model, cfg = ckpt
    t = get_teacher(f"checkpoint:{path}")
    assert t.input_size == (48, 64) and t.has_mask
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)
    center, scale, rot = np.array([150.0, 90.0]), np.array([80.0, 80.0]), 20.0
    out = t(image, [center], [scale], [rot], (12, 16))
    assert out["keypoints"].shape == (1, 17, 3) and out["mask"].shape == (1, 1, 16, 12)

    codec = HeatmapCodec.from_config(cfg)
    pairs = flip_pairs_from_names(list(COCO_KEYPOINTS))
    ts = teacher_scale(scale, 48 / 64)
    for r in (0.0, rot):
        x = torch.from_numpy(normalize_crop(warp_crop(image, center, ts, r, (48, 64)))[None])
        heat, _ = predict_heatmaps(model, x, codec, pairs, True)
        # decoded in the crop's input pixels, then back into the image through the crop affine
        xy, conf = codec.decode(heat.numpy(), [[24.0, 32.0]], [[48.0, 64.0]])
        want = affine_points(xy[0], get_affine_transform(center, ts, r, (48, 64), inv=True))
        got = t.predict(image, [center], [scale], [r])[0]["keypoints_image"]
        np.testing.assert_allclose(got[:, :2], want, atol=1e-3)
        np.testing.assert_allclose(got[:, 2], conf[0], atol=1e-6)
        if r == 0.0:   # unrotated: the same as decoding straight into the image (odkd eval)
            img_xy, _ = codec.decode(heat.numpy(), center[None], ts[None])
            np.testing.assert_allclose(got[:, :2], img_xy[0], atol=1e-3)


def test_checkpoint_teacher_own_heatmaps_and_mask_in_the_students_frame(ckpt):
    """When the student's crop is the teacher's (same aspect, heatmaps 12x16 as the
    checkpoint's), its own heatmaps and mask come back unchanged: the maps' geometry (pixel u
    at input stride * u) is the one the student's targets use."""
    path, model, cfg = ckpt
    t = get_teacher(path)
    image = np.random.default_rng(1).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    center, scale = np.array([140.0, 100.0]), np.array([72.0, 96.0])
    out = t(image, [center], [scale], None, (12, 16), own_heatmaps=True)
    x = torch.from_numpy(normalize_crop(warp_crop(image, center, scale, 0.0, (48, 64)))[None])
    heat, mask = predict_heatmaps(model, x, HeatmapCodec.from_config(cfg),
                                  flip_pairs_from_names(list(COCO_KEYPOINTS)), True)
    np.testing.assert_allclose(out["own_heatmaps"][0], heat[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out["mask"][0, 0], torch.sigmoid(mask[0, 0]).numpy(), atol=1e-4)


def test_checkpoint_teacher_errors_are_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="not found") as e:
        get_teacher(f"checkpoint:{tmp_path}/missing.pt")
    assert "\n" not in str(e.value)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as e:
        get_teacher(str(bad))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)


# --------------------------------------------------------------------------- ONNX via YAML
class SpotHeatmaps(nn.Module):
    """NCHW float input (0-255 scaled by 1/255) -> 17 heatmaps at stride 4: the crop's
    brightness pooled; joint j scaled by (j + 1) / 17 so the joint order can be told apart."""

    def forward(self, x):
        hm = nn.functional.avg_pool2d(x[:, :1], 4)
        w = torch.arange(1, 18, dtype=x.dtype).view(1, 17, 1, 1) / 17
        return hm * w


class SpotMoveNet(nn.Module):
    """NHWC uint8 input -> (1, 1, 17, 3) MoveNet-style (y, x, score), y and x normalised edge
    to edge: the brightness centroid of the crop."""

    def forward(self, x):
        img = x.float()[0, :, :, 0]
        h, w = img.shape
        total = img.sum()
        ys = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, dtype=torch.float32) + 0.5) / w
        y = (img.sum(1) * ys).sum() / total
        xx = (img.sum(0) * xs).sum() / total
        one = torch.stack([y, xx, torch.full_like(y, 0.9)])
        return one.view(1, 1, 1, 3).expand(1, 1, 17, 3) + torch.zeros(1, 1, 17, 3)


class SpotWithMask(nn.Module):
    """Heatmaps as SpotHeatmaps plus a mask output: logits high where the crop is bright."""

    def forward(self, x):
        hm = nn.functional.avg_pool2d(x[:, :1], 4)
        return hm.repeat(1, 17, 1, 1), 40 * hm - 2


def _export(module, example, path, names):
    torch.onnx.export(module, example, str(path), input_names=["input"], output_names=names,
                      opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    _export(SpotHeatmaps(), torch.zeros(1, 3, 64, 48), d / "hm.onnx", ["heatmaps"])
    _export(SpotMoveNet(), torch.zeros(1, 64, 64, 3, dtype=torch.uint8), d / "mn.onnx",
            ["keypoints"])
    _export(SpotWithMask(), torch.zeros(1, 3, 64, 48), d / "mask.onnx", ["heatmaps", "seg"])
    return d


def _yaml(d, name, text):
    p = d / name
    p.write_text(text)
    return str(p)


HM_YAML = """\
onnx: hm.onnx
input_size: [48, 64]
layout: NCHW
color: RGB
normalize: {scale: 0.00392156862745098}
output: {kind: heatmaps, name: heatmaps, stride: 4}
keypoints: [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
"""

MN_YAML = """\
onnx: mn.onnx
input_size: [64, 64]
layout: NHWC
output: {kind: keypoints_normalized}
keypoints: [nose, left_eye, right_eye, left_ear, right_ear, left_shoulder, right_shoulder,
            left_elbow, right_elbow, left_wrist, right_wrist, left_hip, right_hip, left_knee,
            right_knee, left_ankle, right_ankle]
"""


@pytest.mark.parametrize("kind", ["heatmaps", "movenet"])
@pytest.mark.parametrize("rot", [0.0, 30.0])
def test_yaml_onnx_teacher_finds_the_spot(onnx_models, kind, rot):
    path = _yaml(onnx_models, f"{kind}.yaml", HM_YAML if kind == "heatmaps" else MN_YAML)
    t = get_teacher(path)
    spot = np.array([170.0, 110.0])
    image = _spot_image(spot)
    center, scale = np.array([160.0, 120.0]), np.array([60.0, 80.0])
    hm_size = (12, 16)
    out = t(image, [center], [scale], [rot], hm_size)
    want = affine_points(spot[None], get_affine_transform(center, scale, rot, hm_size))[0]
    kp = out["keypoints"][0]
    # the heatmap model pools the spot at stride 4 and decodes argmax + quarter offset: within
    # 0.75 of a heatmap pixel; the centroid is exact
    tol = 0.75 if kind == "heatmaps" else 0.05
    assert np.abs(kp[:, :2] - want).max() < tol, (kp[:3], want)
    if kind == "heatmaps":
        # COCO joint j is model joint 16 - j, whose heatmap is scaled by (17 - j) / 17
        assert np.all(np.diff(kp[:, 2]) < 0)
        assert "heatmaps" in t.predict(image, [center], [scale])[0]
    else:
        np.testing.assert_allclose(kp[:, 2], 0.9, atol=1e-6)
    assert out["heatmaps"].shape == (1, 17, 16, 12)


@pytest.mark.parametrize("edit, field", [
    (("input_size: [48, 64]", "input_size: [64, 64]"), "input_size"),
    (("layout: NCHW", "layout: NCWH"), "layout"),
    (("name: heatmaps", "name: heat"), "output.name"),
    (("stride: 4", "stride: 0"), "output.stride"),
    (("kind: heatmaps", "kind: boxes"), "output.kind"),
    (("onnx: hm.onnx", "onnx: nowhere.onnx"), "onnx"),
    (("keypoints: [16,", "keypoints: [99,"), "keypoints"),
    (("normalize: {scale: 0.00392156862745098}", "normalize: {mean: [1, 2, 3]}"),
     "normalize.std"),
    (("color: RGB", "colour: RGB"), "colour"),
    (("keypoints: [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]",
      "keypoints: [0, 1]"), "keypoints"),
])
def test_bad_yaml_is_one_line_naming_file_and_field(onnx_models, edit, field):
    path = _yaml(onnx_models, "bad.yaml", HM_YAML.replace(*edit))
    with pytest.raises((ConfigError, CheckpointError)) as e:
        t = get_teacher(path)
        t(_spot_image((160, 120)), [[160, 120]], [[60, 80]], None, (12, 16))
    msg = str(e.value)
    assert "\n" not in msg and path in msg and f"field {field}" in msg, msg


def test_yaml_missing_file_and_not_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        get_teacher(str(tmp_path / "nope.yaml"))
    p = tmp_path / "x.yaml"
    p.write_text("onnx: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        get_teacher(str(p))
    assert "\n" not in str(e.value)


def test_yaml_mask_output_lands_on_the_spot(onnx_models):
    """A mask output at stride 4 (mask pixel i covers input pixels [4i, 4i + 4)) comes back in
    the student's frame where the bright spot is."""
    text = HM_YAML.replace("hm.onnx", "mask.onnx") + "mask: {name: seg, activation: sigmoid}\n"
    t = get_teacher(_yaml(onnx_models, "mask.yaml", text))
    assert t.has_mask
    spot = np.array([150.0, 130.0])
    center, scale = np.array([160.0, 120.0]), np.array([60.0, 80.0])
    out = t(_spot_image(spot), [center], [scale], None, (24, 32))
    m = out["mask"][0, 0]
    assert m.max() > 0.9 and m.min() < 0.2
    want = affine_points(spot[None], get_affine_transform(center, scale, 0.0, (24, 32)))[0]
    ys, xs = np.nonzero(m > 0.5)
    assert abs(xs.mean() - want[0]) < 1.5 and abs(ys.mean() - want[1]) < 1.5, (xs, ys, want)


def test_composite_with_a_checkpoint_mask(ckpt, onnx_models):
    path = _yaml(onnx_models, "mn2.yaml", MN_YAML)
    t = get_teacher(f"{path}+checkpoint:{ckpt[0]}")
    out = t(_spot_image((160, 120)), [[160, 120]], [[60, 80]], None, (12, 16))
    assert out["mask"].shape == (1, 1, 16, 12) and out["keypoints"].shape == (1, 17, 3)
    assert os.path.basename(ckpt[0]) in t.name
