import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from odkd.config import Config, DataConfig
from odkd.data.coco import PersonRecord, load_coco
from odkd.data.dataset import TopDownDataset, build_datasets
from odkd.errors import DataError
from odkd.geometry import affine_points, get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS, COCO_UPPER_BODY, flip_pairs_from_names

PAIRS = flip_pairs_from_names(COCO_KEYPOINTS)
SMALL = dict(input_size=[48, 64], sigma=1.0)
SHAPES = {"image": (3, 64, 48), "heatmap": (17, 16, 12), "target_weight": (17,),
          "mask": (1, 16, 12), "mask_weight": (), "center": (2,), "scale": (2,),
          "rotation": (), "image_id": (), "score": (), "keypoints": (17, 3), "index": ()}


def check_sample(s: dict) -> None:
    assert {k: tuple(v.shape) for k, v in s.items()} == SHAPES
    assert s["image_id"].dtype == torch.int64 and s["index"].dtype == torch.int64
    assert all(s[k].dtype == torch.float32 for k in SHAPES if k not in ("image_id", "index"))
    assert set(torch.unique(s["mask"]).tolist()) <= {0.0, 1.0}


def no_aug(**kw) -> DataConfig:
    return DataConfig(**{**SMALL, "scale_factor": 0.0, "rotation_factor": 0.0, "flip": False,
                         "half_body_prob": 0.0, **kw})


def heatmap_centroid(hm: torch.Tensor) -> np.ndarray:
    h = hm.numpy().astype(np.float64)
    ys, xs = np.mgrid[: h.shape[0], : h.shape[1]]
    return np.array([(h * xs).sum() / h.sum(), (h * ys).sum() / h.sum()])


@pytest.mark.parametrize("sub,name", [("coco", "test_coco.json"),
                                      ("ochuman", "test_ochuman.json")])
def test_real_mini_samples(real_mini, sub, name):
    cs = load_coco(str(real_mini / sub / name), str(real_mini / sub), train=True)
    for train in (False, True):
        ds = TopDownDataset(cs.records, cs.flip_pairs, cs.upper_body_ids, DataConfig(**SMALL),
                            train=train, seed=1)
        for i in range(len(ds)):
            s = ds[i]
            check_sample(s)
            assert s["index"].item() == i and s["score"].item() == 1.0
            assert s["image_id"].item() == cs.records[i].image_id
            # every annotated person has a mask, and it is visible in its own crop
            assert s["mask_weight"].item() == 1.0 and s["mask"].sum() > 0
            assert s["target_weight"].sum() > 0
            np.testing.assert_array_equal(s["keypoints"].numpy(), cs.records[i].keypoints)
            if not train:
                # heatmap peaks sit on the keypoints mapped by the heatmap affine
                mat = get_affine_transform(s["center"].numpy(), s["scale"].numpy(), 0.0, (12, 16))
                kp = affine_points(cs.records[i].keypoints[:, :2], mat)
                for k in np.flatnonzero(s["target_weight"].numpy()):
                    y, x = np.unravel_index(s["heatmap"][k].argmax().item(), (16, 12))
                    assert abs(x - kp[k, 0]) <= 0.5 and abs(y - kp[k, 1]) <= 0.5


def test_train_augmentation_is_deterministic(real_mini):
    cs = load_coco(str(real_mini / "ochuman" / "test_ochuman.json"),
                   str(real_mini / "ochuman"), train=True)

    def make(seed):
        return TopDownDataset(cs.records, cs.flip_pairs, cs.upper_body_ids,
                              DataConfig(**SMALL, color_jitter=0.2), train=True, seed=seed)

    a, b = make(3), make(3)
    b[0], b[4]  # a different access order must not change anything
    for i in (2, 3):
        for k, v in a[i].items():
            assert torch.equal(v, b[i][k]), k
    first = a[2]
    a.set_epoch(1)
    assert not torch.equal(first["image"], a[2]["image"])
    a.set_epoch(0)
    assert torch.equal(first["image"], a[2]["image"])
    assert not torch.equal(first["image"], make(4)[2]["image"])


def synthetic(tmp_path: Path):
    """A 200x160 grey image with a red disc on the right wrist and a mask covering only the
    region around the right wrist (not the left one)."""
    img = np.full((160, 200, 3), 90, np.uint8)
    right_wrist, left_wrist = (70, 80), (140, 100)   # not mirror images of each other
    cv2.circle(img, right_wrist, 6, (0, 0, 255), -1)   # BGR red
    cv2.imwrite(str(tmp_path / "p.png"), img)
    kp = np.zeros((17, 3), np.float32)
    kp[10] = [*right_wrist, 2]
    kp[9] = [*left_wrist, 2]
    seg = [[50, 40, 95, 40, 95, 120, 50, 120]]
    rec = PersonRecord(image_id=5, file_name=str(tmp_path / "p.png"), width=200, height=160,
                       bbox=[50.0, 30.0, 100.0, 100.0], keypoints=kp, num_keypoints=2,
                       area=1e4, segmentation=seg, ann_id=1, source="synthetic.json")
    return rec


def test_image_keypoints_and_mask_stay_aligned_under_augmentation(tmp_path):
    rec = synthetic(tmp_path)
    cfg = DataConfig(input_size=[96, 128], sigma=1.0, half_body_prob=0.0, rot_prob=1.0,
                     rotation_factor=40.0, scale_factor=0.2)
    ds = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, cfg, train=True, seed=0)
    seen_flip = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        s = ds[0]
        flipped = abs(s["center"][0].item() - 100.0) > 1e-3   # box centre x is 100
        seen_flip.add(flipped)
        # the red disc (right wrist) is in slot 10 unflipped, slot 9 (left) once mirrored
        red_slot, other = (9, 10) if flipped else (10, 9)
        img = s["image"].numpy()
        red = (img[0] > 1.5) & (img[1] < 0)   # strongly red after ImageNet normalisation
        ys, xs = np.nonzero(red)
        disc = np.array([xs.mean(), ys.mean()])
        assert s["target_weight"][red_slot] == 1
        np.testing.assert_allclose(heatmap_centroid(s["heatmap"][red_slot]) * 4, disc, atol=1.5)
        mask = s["mask"][0].numpy()
        assert s["mask_weight"] == 1
        for slot, inside in ((red_slot, 1.0), (other, 0.0)):
            y, x = np.unravel_index(s["heatmap"][slot].argmax().item(), mask.shape)
            assert mask[y, x] == inside
    assert seen_flip == {True, False}


def test_keypoints_outside_the_crop_get_zero_weight(tmp_path):
    rec = synthetic(tmp_path)
    rec.keypoints[0] = [195, 5, 2]   # far outside the padded box
    rec.keypoints[1] = [80, 70, 0]   # inside but unlabelled
    # just right of the 12-pixel-wide heatmap (x = 13), though within its Gaussian's reach
    rec.keypoints[2] = [100 + 7 * 125 / 12, 80, 2]
    s = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=False)[0]
    assert s["target_weight"][[0, 1, 2]].tolist() == [0.0, 0.0, 0.0]
    assert s["heatmap"][[0, 1, 2]].abs().sum() == 0
    assert s["target_weight"][[9, 10]].tolist() == [1.0, 1.0]


def test_no_segmentation_and_masks_off(tmp_path):
    rec = synthetic(tmp_path)
    for seg, want in ((None, 0.0), ([[50, 40, 95, 40, 95, 120, 50, 120]], 1.0)):
        rec.segmentation = seg
        s = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=False)[0]
        assert s["mask_weight"].item() == want and (s["mask"].sum() > 0) == bool(want)
    off = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=False,
                         return_image_mask=False)[0]
    assert off["mask_weight"].item() == 0 and off["mask"].sum() == 0
    rec.segmentation = {"counts": "garbage", "size": [3, 3]}
    with pytest.raises(DataError, match="synthetic.json: annotation 1 field segmentation"):
        TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=False)[0]


def test_unreadable_or_wrong_size_image(tmp_path):
    rec = synthetic(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    rec.file_name = str(tmp_path / "broken.jpg")
    with pytest.raises(DataError, match="broken.jpg"):
        TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=False)[0]
    rec = synthetic(tmp_path)
    rec.width = 300
    with pytest.raises(DataError, match="p.png.*width/height"):
        TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=False)[0]


def test_image_cache(tmp_path):
    rec = synthetic(tmp_path)
    ds = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(cache_images=True), train=False)
    first = ds[0]
    Path(rec.file_name).unlink()   # served from RAM from now on
    assert torch.equal(ds[0]["image"], first["image"])


def test_build_datasets(real_mini, tmp_path):
    cfg = Config()
    d = cfg.data
    d.train_ann = d.val_ann = str(real_mini / "coco" / "test_coco.json")
    d.train_images = d.val_images = str(real_mini / "coco")
    d.input_size = [48, 64]
    cfg.model.with_mask = True
    tr, va, sets = build_datasets(cfg)
    assert (len(tr), len(va)) == (12, 12) and set(sets) == {"train", "val"}
    assert tr.train and not va.train and tr.return_image_mask and not va.return_image_mask
    assert tr.summary == "test_coco.json: 12 persons from 4 images (skipped: 2 no keypoints)"
    check_sample(va[0])

    d.boxes = str(real_mini / "coco" / "test_coco_det_AP_H_56.json")
    d.det_score_thr = 0.5
    tr, va, _ = build_datasets(cfg, train=False)
    assert tr is None and 0 < len(va) < 118
    s = va[0]
    assert s["score"].item() >= 0.5 and s["keypoints"].abs().sum() == 0
    assert s["target_weight"].sum() == 0
    assert va.summary.startswith("test_coco_det_AP_H_56.json: ")

    cfg.model.num_joints = 14
    with pytest.raises(DataError, match="model.num_joints"):
        build_datasets(cfg)


def test_dataloader_collates(tmp_path):
    rec = synthetic(tmp_path)
    ds = TopDownDataset([rec, rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=0)))
    assert batch["image"].shape == (2, 3, 64, 48) and batch["mask_weight"].shape == (2,)
    assert batch["index"].tolist() == [0, 1]


def test_bad_input_size():
    from odkd.config import ConfigError
    with pytest.raises(ConfigError, match="heatmap_stride"):
        TopDownDataset([], PAIRS, COCO_UPPER_BODY, DataConfig(input_size=[50, 64]), train=False)


@pytest.mark.parametrize("content", [b"", bytes(np.random.default_rng(0).integers(0, 256, 4096,
                                                                                 np.uint8))])
def test_unreadable_image_in_a_worker_is_one_line(tmp_path, content):
    """A DataLoader worker re-raises the DataError with its whole traceback as the message;
    errors.one_line (what the CLI prints) brings back the one line naming the file."""
    from odkd.errors import one_line

    rec = synthetic(tmp_path)
    (tmp_path / "bad.jpg").write_bytes(content)
    rec.file_name = str(tmp_path / "bad.jpg")
    ds = TopDownDataset([rec], PAIRS, COCO_UPPER_BODY, no_aug(), train=True)
    with pytest.raises(DataError) as e:
        next(iter(torch.utils.data.DataLoader(ds, batch_size=1, num_workers=1)))
    assert "Traceback" in str(e.value)  # what torch hands back
    assert one_line(e.value) == f"{rec.file_name}: cannot read image (missing, unreadable or " \
                                "not an image file)"
