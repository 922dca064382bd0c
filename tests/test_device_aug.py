"""The device augmentation path (odkd.data.device_aug) against the CPU path (TopDownDataset).

``ODKD_TEST_DEVICE=cuda`` runs the device path on a GPU (default: cpu, as in CI).
"""
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from odkd.config import DataConfig
from odkd.data.coco import PersonRecord
from odkd.data.dataset import IMAGENET_MEAN, IMAGENET_STD, TopDownDataset
from odkd.data.device_aug import DecodedDataset, DeviceAugment, collate_decoded, crop_affine
from odkd.geometry import get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS, COCO_UPPER_BODY, flip_pairs_from_names

PAIRS = flip_pairs_from_names(COCO_KEYPOINTS)
DEVICE = os.environ.get("ODKD_TEST_DEVICE", "cpu")


def _person(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, list]:
    """Random stick-figure keypoints inside the image and a polygon around them."""
    cx, cy = rng.uniform(0.35 * w, 0.65 * w), rng.uniform(0.35 * h, 0.65 * h)
    kps = np.zeros((17, 3), np.float32)
    kps[:, 0] = cx + rng.uniform(-0.25, 0.25, 17) * w
    kps[:, 1] = cy + np.linspace(-0.3, 0.3, 17) * h + rng.uniform(-3, 3, 17)
    kps[:, 2] = 2
    kps[rng.random(17) < 0.15, 2] = 0
    kps[kps[:, 2] == 0, :2] = 0
    lab = kps[kps[:, 2] > 0, :2]
    hull = cv2.convexHull(lab.astype(np.float32)).reshape(-1, 2)
    return kps, [hull.ravel().round(2).tolist()]


@pytest.fixture
def records(tmp_path: Path) -> list[PersonRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i, (w, h) in enumerate([(96, 80), (80, 112), (112, 96), (72, 72)]):
        img = rng.integers(0, 256, (h // 8, w // 8, 3)).astype(np.uint8)
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)  # smooth: fair bilinear
        cv2.line(img, (5, 5), (w - 5, h - 10), (255, 255, 255), 3)
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        kps, seg = _person(rng, w, h)
        lab = kps[kps[:, 2] > 0, :2]
        x0, y0 = lab.min(0)
        x1, y1 = lab.max(0)
        out.append(PersonRecord(image_id=i + 1, file_name=str(path), width=w, height=h,
                                bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                keypoints=kps, num_keypoints=int((kps[:, 2] > 0).sum()),
                                area=float((x1 - x0) * (y1 - y0)), segmentation=seg,
                                ann_id=i + 1, source="test.json"))
    return out


def _sets(records, max_side=0, **cfg_kw):
    cfg = DataConfig(**{"input_size": [48, 64], "sigma": 2.0, "rot_prob": 1.0,
                        "half_body_prob": 0.5, "half_body_min_joints": 3, **cfg_kw})
    cpu = TopDownDataset(records, PAIRS, COCO_UPPER_BODY, cfg, train=True, seed=3,
                         return_image_mask=True)
    dec = DecodedDataset(TopDownDataset(records, PAIRS, COCO_UPPER_BODY, cfg, train=True,
                                        seed=3, return_image_mask=True), max_side=max_side)
    return cpu, dec


def _both(cpu, dec, epoch):
    cpu.set_epoch(epoch)
    dec.set_epoch(epoch)
    n = len(cpu)
    ref = [cpu[i] for i in range(n)]
    out = DeviceAugment.for_dataset(dec, DEVICE)(collate_decoded([dec[i] for i in range(n)]))
    return ref, {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    std = torch.from_numpy(IMAGENET_STD).view(3, 1, 1)
    mean = torch.from_numpy(IMAGENET_MEAN).view(3, 1, 1)
    return ((image * std + mean) * 255.0).numpy()


def test_crop_affine_matches_get_affine_transform():
    center = torch.tensor([[40.3, 51.7], [10.0, -3.0]])
    scale = torch.tensor([[60.0, 80.0], [33.0, 44.0]])
    rot = torch.tensor([27.5, -90.0])
    mats = crop_affine(center, scale, rot, (48, 64))
    for i in range(2):
        ref = get_affine_transform(center[i].numpy(), scale[i].numpy(), float(rot[i]), (48, 64))
        np.testing.assert_allclose(mats[i, :2].numpy(), ref, atol=2e-4)


@pytest.mark.parametrize("epoch", [0, 1, 2])
def test_device_path_matches_cpu_path(records, epoch):
    cpu, dec = _sets(records, color_jitter=0.3 if epoch == 2 else 0.0)
    ref, out = _both(cpu, dec, epoch)
    assert out["image"].shape == (4, 3, 64, 48) and out["heatmap"].shape == (4, 17, 16, 12)
    for i, r in enumerate(ref):
        # same augmentation drawn from the same RNG
        np.testing.assert_allclose(out["center"][i].numpy(), r["center"].numpy(), atol=1e-3)
        np.testing.assert_allclose(out["scale"][i].numpy(), r["scale"].numpy(), rtol=1e-5)
        assert float(out["rotation"][i]) == pytest.approx(float(r["rotation"]), abs=1e-4)
        # targets
        assert (out["heatmap"][i] - r["heatmap"]).abs().max() < 1e-3
        assert torch.equal(out["target_weight"][i], r["target_weight"])
        # crop, borders aside (cv2 rounds sample positions to 1/32 px)
        a, b = _to_uint8(out["image"][i]), _to_uint8(r["image"])
        diff = np.abs(a - b)[:, 2:-2, 2:-2]
        assert diff.mean() < 1.0, diff.mean()
        # masks
        ma, mb = out["mask"][i, 0].numpy() > 0, r["mask"][0].numpy() > 0
        assert float(out["mask_weight"][i]) == float(r["mask_weight"]) == 1.0
        iou = (ma & mb).sum() / max(1, (ma | mb).sum())
        assert iou > 0.9, iou


def test_flip_is_exercised(records):
    """The three epochs above must include flipped and unflipped samples (else the test is weak)."""
    _, dec = _sets(records)
    flags = []
    for e in range(3):
        dec.set_epoch(e)
        flags += [bool(dec[i]["flipped"]) for i in range(len(dec))]
    assert any(flags) and not all(flags)


def test_downscaled_canvas_close(records):
    """A canvas smaller than the images (data.device_max_side) still gives the same targets."""
    cpu, dec = _sets(records, max_side=64)
    assert dec.canvas_size == (64, 64)
    ref, out = _both(cpu, dec, 0)
    for i, r in enumerate(ref):
        assert (out["heatmap"][i] - r["heatmap"]).abs().max() < 1e-3
        ma, mb = out["mask"][i, 0].numpy() > 0, r["mask"][0].numpy() > 0
        assert (ma & mb).sum() / max(1, (ma | mb).sum()) > 0.8


def test_detects_a_wrong_geometry(records):
    """Sanity check of the test itself: a one-pixel shift of the crop is caught."""
    cpu, dec = _sets(records, rot_prob=0.0, flip=False, scale_factor=0.0, half_body_prob=0.0)
    ref, _ = _both(cpu, dec, 0)
    batch = collate_decoded([dec[i] for i in range(len(dec))])
    batch["center"] = batch["center"] + torch.tensor([1.0, 0.0], dtype=torch.float64)
    out = DeviceAugment.for_dataset(dec, "cpu")(batch)
    worst = max(float(np.abs(_to_uint8(out["image"][i]) - _to_uint8(r["image"])).mean())
                for i, r in enumerate(ref))
    assert worst > 1.0
