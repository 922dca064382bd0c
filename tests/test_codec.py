"""odkd.codec.HeatmapCodec: round trips, flip undo, builders, and that the dataset, the device
augmentation, evaluation and inference all go through the one codec."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from odkd.codec import HeatmapCodec, encode_heatmaps
from odkd.config import Config, ConfigError, DataConfig
from odkd.data.coco import PersonRecord
from odkd.data.dataset import TopDownDataset, read_image
from odkd.data.device_aug import DecodedDataset, DeviceAugment
from odkd.deploy.infer import TopDownPredictor
from odkd.deploy.loader import load_pose
from odkd.spec import PoseSpec, spec_for_model
from odkd.engine.evaluate import build_eval_records, run_evaluation
from odkd.geometry import affine_points, get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS, COCO_UPPER_BODY, flip_pairs_from_names
from odkd.models import build_model
from odkd.models.checkpoint import save_checkpoint

PAIRS = flip_pairs_from_names(COCO_KEYPOINTS)
CENTER, SCALE = np.array([200.0, 150.0]), np.array([120.0, 160.0])


def _codec(**kw) -> HeatmapCodec:
    return HeatmapCodec((96, 128), **kw)   # heatmaps 24 x 32


def _identity_crop(codec: HeatmapCodec, n: int):
    """centers / scales whose inverse heatmap affine is the identity (heatmap px = image px)."""
    w, h = codec.heatmap_size
    return np.tile([[w / 2, h / 2]], (n, 1)), np.tile([[w, h]], (n, 1))


# ------------------------------------------------------------------------- encode / decode

@pytest.mark.parametrize("decoder, tol", [("quarter", 0.25 + 1e-3), ("dark", 0.05)])
def test_encode_decode_round_trip(decoder, tol):
    codec = _codec(decoder=decoder)
    w, h = codec.heatmap_size
    rng = np.random.default_rng(0)
    n = 40
    pts = np.stack([rng.uniform(5, w - 6, n), rng.uniform(5, h - 6, n), np.full(n, 2.0)], 1)
    heat = np.stack([codec.encode(p[None])[0] for p in pts])          # (n, 1, h, w)
    preds, scores = codec.decode(heat, np.tile(CENTER, (n, 1)), np.tile(SCALE, (n, 1)))
    inv = get_affine_transform(CENTER, SCALE, 0, (w, h), inv=True)
    err = (preds[:, 0] - affine_points(pts[:, :2], inv)) * w / SCALE[0]   # heatmap pixels
    assert np.abs(err).max() <= tol
    assert scores.min() > 0.9


def test_encode_drops_joints_whose_nearest_pixel_is_off_the_map():
    codec = _codec()
    w, h = codec.heatmap_size
    kp = np.array([[-0.6, 10.0, 2.0], [-0.4, 10.0, 2.0], [w - 0.5, 10.0, 2.0],
                   [5.0, 5.0, 0.0]], np.float32)
    heat, weight = codec.encode(kp)
    assert weight.tolist() == [0.0, 1.0, 0.0, 0.0]
    assert np.all(heat[[0, 2, 3]] == 0)
    # the raw Gaussian would still encode them: the rule is the codec's
    assert encode_heatmaps(kp, codec.heatmap_size, codec.sigma)[1].tolist() == [1, 1, 1, 0]
    # and the batched torch encoder agrees
    t_heat, t_weight = codec.encode_torch(torch.from_numpy(kp).double()[None])
    np.testing.assert_allclose(t_heat[0].numpy(), heat, atol=1e-6)
    np.testing.assert_array_equal(t_weight[0].numpy(), weight)


# --------------------------------------------------------------------------------- flip back

def test_flip_back_without_shift_inverts_the_mirror():
    codec = _codec(flip_shift=0.0)
    hm = np.random.default_rng(1).random((2, 17, 32, 24)).astype(np.float32)
    perm = np.arange(17)
    for a, b in PAIRS:
        perm[a], perm[b] = b, a
    mirrored = hm[:, perm, :, ::-1]
    np.testing.assert_array_equal(codec.flip_back(mirrored, PAIRS), hm)
    t = codec.flip_back(torch.from_numpy(np.ascontiguousarray(mirrored)), PAIRS)
    np.testing.assert_array_equal(t.numpy(), hm)


def test_flip_back_shift_recovers_the_unflipped_joint():
    """A joint at heatmap x sits at ``w - x - 1/stride`` in the maps of the mirrored input
    (decode.flip_back); the default (stride - 1) / stride shift puts it back at x."""
    codec = _codec(decoder="dark")
    w, h = codec.heatmap_size
    rng = np.random.default_rng(2)
    n = 30
    pts = np.stack([rng.uniform(5, w - 6, n), rng.uniform(5, h - 6, n), np.full(n, 2.0)], 1)
    flipped = pts.copy()
    flipped[:, 0] = w - pts[:, 0] - 1.0 / codec.heatmap_stride
    hm_f = np.stack([codec.encode(p[None])[0] for p in flipped])
    centers, scales = _identity_crop(codec, n)

    def x_error(c: HeatmapCodec) -> np.ndarray:
        back, _ = c.decode(c.flip_back(hm_f, []), centers, scales)
        return back[:, 0, 0] - pts[:, 0]

    assert codec.flip_shift == 0.75
    assert np.abs(x_error(codec)).max() < 0.1
    assert x_error(replace(codec, flip_shift=0.0)).mean() == pytest.approx(-0.75, abs=0.05)
    assert x_error(replace(codec, flip_shift=1.0)).mean() == pytest.approx(0.25, abs=0.05)


def test_heatmap_offset_moves_targets_and_decoding_and_the_flip_shift():
    """A model that peaks ``offset`` cells before each joint (MoveNet: 0.375): targets are
    encoded there, decoding adds it back, and the mirrored maps need 2 x offset less shift."""
    base = _codec(decoder="dark")
    off = replace(base, offset=(0.375, 0.25), flip_shift=None)
    assert off.offset == (0.375, 0.25) and off.flip_shift == pytest.approx(0.75 - 0.75)
    w, h = base.heatmap_size
    pt = np.array([[10.4, 12.7, 2.0]])
    hm_base, _ = base.encode(pt)
    hm_off, _ = off.encode(pt)
    moved = pt.copy()
    moved[0, :2] -= (0.375, 0.25)
    np.testing.assert_allclose(hm_off, base.encode(moved)[0], atol=1e-6)
    centers, scales = _identity_crop(base, 1)
    got, _ = off.decode(hm_off[None], centers, scales)
    np.testing.assert_allclose(got[0, 0], pt[0, :2], atol=0.1)
    # the flip test of such a model: its maps of the mirrored input peak at
    # w - x - 1/stride - offset, and flip_back with the adjusted shift lands on x - offset
    flipped = pt.copy()
    flipped[0, 0] = w - pt[0, 0] - 1.0 / base.heatmap_stride - 0.375
    flipped[0, 1] = pt[0, 1] - 0.25
    hm_f = base.encode(flipped)[0][None]
    back, _ = off.decode(off.flip_back(hm_f, []), centers, scales)
    np.testing.assert_allclose(back[0, 0], pt[0, :2], atol=0.1)
    with pytest.raises(ConfigError, match="heatmap_offset"):
        replace(base, offset=(1.5, 0.0))


# ---------------------------------------------------------------------------------- builders

def _cfg() -> Config:
    cfg = Config()
    cfg.data.input_size = [64, 96]
    cfg.data.sigma = 1.5
    cfg.eval.decode = "dark"
    return cfg


def test_from_config_fields_and_flip_shift_rules():
    codec = HeatmapCodec.from_config(_cfg())
    assert codec == HeatmapCodec((64, 96), 4, 1.5, "dark", 11, "odkd", 0.75)
    assert codec.heatmap_size == (16, 24)
    cfg = Config()
    cfg.eval.protocol = "hrnet"
    assert HeatmapCodec.from_config(cfg).flip_shift == 1.0    # HRNet's integer shift
    cfg.eval.shift_heatmap = False
    assert HeatmapCodec.from_config(cfg).flip_shift == 0.0
    cfg = Config()
    cfg.data.heatmap_stride = 2
    assert HeatmapCodec.from_config(cfg).flip_shift == 0.5
    for kw, field in ((dict(input_size=(50, 64)), "heatmap_stride"),
                      (dict(decoder="soft"), "eval.decode"),
                      (dict(decoder="dark", protocol="hrnet"), "eval.protocol"),
                      (dict(sigma=0.0), "data.sigma")):
        with pytest.raises(ConfigError, match=field):
            HeatmapCodec(**{"input_size": (48, 64), **kw})


def test_codec_from_config_and_from_checkpoint_spec_agree(tmp_path):
    cfg = _cfg()
    model = build_model("shufflenetv2", 17)
    spec = spec_for_model(model, cfg)
    want = HeatmapCodec.from_config(cfg)
    assert spec.codec() == want
    # as an exported ONNX file carries it
    assert PoseSpec.from_metadata(spec.to_metadata(), "x.onnx").codec() == want
    # a checkpoint: the loaded model's codec, the one its predictor uses
    ck = str(tmp_path / "m.pt")
    save_checkpoint(ck, model, extra={"config": cfg.to_dict()})
    loaded = load_pose(ck, device="cpu")
    assert loaded.codec == want == loaded.spec.codec()
    from odkd.api import PoseModel

    assert PoseModel(loaded).predictor.codec is loaded.codec


# ------------------------------------------------------------------- one codec everywhere

def _record(tmp_path) -> PersonRecord:
    import cv2

    img = np.random.default_rng(3).integers(0, 255, (100, 80, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "p.png"), img)
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0] = np.linspace(25, 55, 17)
    kp[:, 1] = np.linspace(20, 80, 17)
    kp[:, 2] = 2
    kp[3] = [2.0, 50.0, 2]     # left of the crop, within 3 sigma of the map
    kp[4] = [0.0, 0.0, 0]
    return PersonRecord(image_id=1, file_name=str(tmp_path / "p.png"), width=80, height=100,
                        bbox=[20.0, 15.0, 40.0, 70.0], keypoints=kp, num_keypoints=16,
                        area=2800.0, segmentation=None, ann_id=1, source="t.json")


@pytest.mark.parametrize("codec", [None, HeatmapCodec((48, 64), sigma=3.0)])
def test_dataset_targets_are_codec_encode(tmp_path, codec):
    rec = _record(tmp_path)
    cfg = DataConfig(input_size=[48, 64], sigma=1.0)
    ds = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, cfg, train=False, codec=codec)
    want_codec = codec or HeatmapCodec.from_data_config(cfg)
    assert ds.codec == want_codec
    s = ds[0]
    mat = get_affine_transform(s["center"].numpy(), s["scale"].numpy(), 0.0,
                               want_codec.heatmap_size)
    kp_hm = rec.keypoints.copy()
    kp_hm[:, :2] = affine_points(rec.keypoints[:, :2], mat)
    heat, weight = want_codec.encode(kp_hm)
    np.testing.assert_array_equal(s["heatmap"].numpy(), heat)
    np.testing.assert_array_equal(s["target_weight"].numpy(), weight)
    assert weight[3] == 0 and weight[4] == 0 and weight.sum() == 15
    # the device augmentation encodes with the same object
    train = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, cfg, train=True, codec=codec)
    dev = DeviceAugment.for_dataset(DecodedDataset(train), "cpu")
    assert dev.codec is train.codec


class _SpyCodec(HeatmapCodec):
    """Records which codec object decoded and undid flips."""

    calls: list = []

    def decode(self, heatmaps, centers, scales):
        self.calls.append(("decode", id(self)))
        return super().decode(heatmaps, centers, scales)

    def flip_back(self, heatmaps, flip_pairs):
        self.calls.append(("flip_back", id(self)))
        return super().flip_back(heatmaps, flip_pairs)


class _Heat(nn.Sequential):
    def forward(self, x):
        return {"heatmaps": super().forward(x)}


def test_evaluate_and_infer_use_the_same_codec(real_mini, tmp_path):
    root = real_mini / "coco"
    cfg = Config()
    cfg.data.input_size = [64, 64]
    cfg.data.workers = 0
    cfg.eval.decode = "dark"
    cfg.eval.oks_nms_thr = 1.0   # keep every instance
    codec = _SpyCodec(**vars(HeatmapCodec.from_config(cfg)))
    torch.manual_seed(0)
    model = _Heat(nn.Conv2d(3, 17, 8, stride=4, padding=2)).eval()
    coco, records = build_eval_records(cfg, str(root / "test_coco.json"), str(root), "gt")
    records = records[:3]
    _SpyCodec.calls.clear()
    with torch.inference_mode():
        run_evaluation(cfg, model, coco, records, torch.device("cpu"), out_dir=str(tmp_path),
                       progress=False, codec=codec)
    assert {"decode", "flip_back"} == {c for c, _ in _SpyCodec.calls}
    assert {i for _, i in _SpyCodec.calls} == {id(codec)}
    evaluated = json.loads((tmp_path / "results.json").read_text())

    spec = PoseSpec("net", 17, False, (64, 64), flip_pairs=coco.flip_pairs)
    pred = TopDownPredictor(model, spec, torch.device("cpu"), padding=cfg.data.padding,
                            codec=codec)
    _SpyCodec.calls.clear()
    # one batch of the same crops as evaluation's, so the numbers are the same
    insts = pred.predict([(read_image(r.file_name), [r.bbox], [1.0]) for r in records])
    assert len(evaluated) == len(records)
    for rec, inst in zip(records, insts):
        # results carry no box: the nearest result of the same image
        err = min(np.abs(np.ravel(inst.keypoints[0]) - r["keypoints"]).max()
                  for r in evaluated if r["image_id"] == rec.image_id)
        assert err < 1e-4
    assert {i for _, i in _SpyCodec.calls} == {id(codec)} and len(_SpyCodec.calls) == 2
