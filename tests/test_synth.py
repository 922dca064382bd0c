"""SynthPose: COCO validity, visibility vs depth order, determinism, occlusion level."""
from __future__ import annotations

import argparse
import json
import os

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from odkd.errors import DataError, OdkdError
from odkd.keypoints import COCO_KEYPOINTS
from odkd.synth import body as B
from odkd.synth import generate_split
from odkd.synth import render as R
from odkd.synth.generate import annotate, make_scene
from odkd.synth.preview import contact_sheet
from odkd.synth.scene import keypoint_visibility

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = (96, 80)    # small and non-square, so width/height mix-ups show


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.parametrize("split", ["train", "val", "occluded"])
def test_split_is_valid_coco(tmp_path, split):
    s = generate_split(str(tmp_path), split, 6, seed=3, size=SIZE, workers=1, progress=False)
    coco = COCO(s["ann_file"])
    assert coco.loadCats(1)[0]["keypoints"] == COCO_KEYPOINTS
    assert len(coco.getImgIds()) == 6 and s["num_annotations"] == len(coco.getAnnIds()) > 0
    w, h = SIZE
    for img in coco.loadImgs(coco.getImgIds()):
        pic = cv2.imread(os.path.join(s["image_dir"], img["file_name"]))
        assert pic.shape == (h, w, 3) and (img["width"], img["height"]) == SIZE
    for a in coco.loadAnns(coco.getAnnIds()):
        k = np.array(a["keypoints"], float).reshape(17, 3)
        lab = k[:, 2] > 0
        assert set(np.unique(k[:, 2])) <= {0, 1, 2}
        assert a["num_keypoints"] == lab.sum()
        # COCO convention: keypoints only for people of medium size or larger
        small = a["area"] < 32 * 32 * (min(SIZE) / 256) ** 2
        assert lab.sum() == 0 if small else lab.sum() >= 3
        assert (k[lab, 0] >= 0).all() and (k[lab, 0] <= w - 1).all()
        assert (k[lab, 1] >= 0).all() and (k[lab, 1] <= h - 1).all()
        assert (k[~lab, :2] == 0).all()
        m = coco.annToMask(a)
        assert m.sum() > 0 and m.sum() == a["area"] and a["iscrowd"] == 0
        x, y, bw, bh = a["bbox"]
        ys, xs = np.nonzero(m)
        assert (x, y, x + bw, y + bh) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_visibility_agrees_with_label_map():
    """v=2 only where the person owns the pixel; covered by anyone/anything else -> v=1."""
    covered = 0
    for i in range(10):
        scene = make_scene(5, "occluded", i, SIZE)
        pmap = scene.person_map()
        for slot, a in annotate(scene):
            m = mask_utils.decode(a["segmentation"])
            assert np.array_equal(m.astype(bool), pmap == slot + 1)
            k = np.array(a["keypoints"], float).reshape(17, 3)
            for x, y, v in k[k[:, 2] > 0]:
                owner = pmap[int(round(y)), int(round(x))]
                if v == 2:
                    assert owner == slot + 1
                if owner != slot + 1:
                    assert v == 1
                    covered += 1
    assert covered > 10     # the occluded split really hides keypoints behind others


def test_person_drawn_in_front_hides_the_one_behind():
    rng = np.random.default_rng(0)
    props, pose = B.sample_proportions(rng), B.sample_pose(rng, "standing")
    pts, nrm = B.pose_body(props, pose, yaw=0.0, view_pitch=0.0)
    f = 200.0
    pts[:, 2] += f * props.height / 100.0     # ~100 px tall, centred
    uv, z = B.project(pts, f, 63.5, 63.5)
    img, label = np.zeros((128, 128, 3), np.uint8), np.zeros((128, 128), np.uint8)
    app = R.sample_appearance(rng)
    light = np.array([1.0, 0.0])
    # B (slot 1) is the same body 6 cm nearer, drawn after A (slot 0): it covers A completely
    pts_b = pts.copy()
    pts_b[:, 2] -= 0.06
    uv_b, z_b = B.project(pts_b, f, 63.5, 63.5)
    R.render_person(img, label, uv, z, pts, nrm, props, app, 0, f, light)
    fc = R.facing(pts, nrm)
    alone = keypoint_visibility(label, uv, fc, 0)
    R.render_person(img, label, uv_b, z_b, pts_b, nrm, props, app, 1, f, light)
    behind = keypoint_visibility(label, uv, fc, 0)
    front = keypoint_visibility(label, uv_b, R.facing(pts_b, nrm), 1)
    assert (alone[:, 2] == 2).sum() >= 12            # facing the camera: mostly visible
    assert (behind[:, 2] == 1).all()                 # all inside, all hidden
    assert (front[:, 2] == 2).sum() == (alone[:, 2] == 2).sum()


def test_facing_away_hides_the_face():
    rng = np.random.default_rng(1)
    props, pose = B.sample_proportions(rng), B.sample_pose(rng, "standing")
    out = {}
    for yaw in (0.0, 180.0):
        pose.head_yaw = 0.0
        pts, nrm = B.pose_body(props, pose, yaw=yaw, view_pitch=0.0)
        pts[:, 2] += 4.0
        uv, z = B.project(pts, 150.0, 63.5, 63.5)
        img, label = np.zeros((128, 128, 3), np.uint8), np.zeros((128, 128), np.uint8)
        R.render_person(img, label, uv, z, pts, nrm, props, R.sample_appearance(rng), 0, 150.0,
                        np.array([0.0, 1.0]))
        out[yaw] = (keypoint_visibility(label, uv, R.facing(pts, nrm), 0), uv)
    front, back = out[0.0], out[180.0]
    assert (front[0][:3, 2] == 2).all() and (back[0][:3, 2] == 1).all()   # nose, eyes
    # facing the camera the person's left shoulder is on the image's right, and vice versa
    assert front[1][B.L_SHO, 0] > front[1][B.R_SHO, 0]
    assert back[1][B.L_SHO, 0] < back[1][B.R_SHO, 0]


def test_deterministic_across_runs_and_workers(tmp_path):
    d1, d2, d3 = (str(tmp_path / n) for n in ("a", "b", "c"))
    generate_split(d1, "val", 8, seed=7, size=SIZE, workers=1, progress=False)
    generate_split(d2, "val", 8, seed=7, size=SIZE, workers=2, progress=False)
    generate_split(d3, "val", 8, seed=8, size=SIZE, workers=1, progress=False)
    ann = "annotations/person_keypoints_val.json"
    assert _read(os.path.join(d1, ann)) == _read(os.path.join(d2, ann))
    assert _read(os.path.join(d1, ann)) != _read(os.path.join(d3, ann))
    names = sorted(os.listdir(os.path.join(d1, "val")))
    assert len(names) == 8
    same = [_read(os.path.join(d1, "val", n)) == _read(os.path.join(d2, "val", n))
            for n in names]
    other = [_read(os.path.join(d1, "val", n)) == _read(os.path.join(d3, "val", n))
             for n in names]
    assert all(same) and not any(other)


def test_occluded_split_overlaps_more_than_val(tmp_path):
    iou = {}
    for split in ("val", "occluded"):
        generate_split(str(tmp_path), split, 16, seed=0, size=SIZE, workers=1, progress=False)
        with open(tmp_path / "annotations" / f"person_keypoints_{split}.json") as f:
            info = json.load(f)["info"]
        assert info["args"]["split"] == split and info["version"].startswith("synthpose")
        iou[split] = info["mean_max_iou"]
    assert iou["occluded"] > iou["val"] + 0.15 and iou["occluded"] > 0.3


def test_preview_backgrounds_and_cli(tmp_path):
    from odkd.commands import synth as cmd

    bg = tmp_path / "bg"
    bg.mkdir()
    for i in range(2):
        cv2.imwrite(str(bg / f"{i}.png"), np.random.default_rng(i).integers(0, 255, (50, 70, 3),
                                                                              dtype=np.uint8))
    parser = argparse.ArgumentParser()
    cmd.register(parser.add_subparsers())
    out = tmp_path / "ds"
    args = parser.parse_args(["synth", "--out", str(out), "--split", "train", "--num-images",
                              "4", "--size", "64", "48", "--backgrounds", str(bg), "--workers",
                              "1", "--no-progress", "--preview"])
    assert args.func(args) == 0
    sheet = cv2.imread(str(out / "preview_train.png"))
    assert sheet is not None and sheet.shape[0] >= 48
    assert len(os.listdir(out / "train")) == 4
    assert contact_sheet(str(out), "train", num=2).endswith(".png")


def test_bad_arguments(tmp_path):
    with pytest.raises(OdkdError, match="--split"):
        generate_split(str(tmp_path), "test", 2, 0, progress=False)
    with pytest.raises(OdkdError, match="--num-images"):
        generate_split(str(tmp_path), "val", 0, 0, progress=False)
    with pytest.raises(DataError, match="--backgrounds"):
        generate_split(str(tmp_path), "val", 1, 0, backgrounds=str(tmp_path / "nope"),
                       progress=False)


def test_difficulty_levels_control_pose_and_viewpoint():
    """easy: head above ankles and the left shoulder on the image's right (facing us);
    medium: every pose kind (some people not upright) but still facing us;
    hard has lying and back views, so both fail for some people."""
    def stats(difficulty):
        upright, facing, n = 0, 0, 0
        for i in range(12):
            for _, a in annotate(make_scene(2, "train", i, (128, 128), difficulty=difficulty)):
                k = np.array(a["keypoints"], float).reshape(17, 3)
                if (k[[0, 15, 16, 5, 6], 2] > 0).all():
                    n += 1
                    upright += k[0, 1] < min(k[15, 1], k[16, 1])
                    facing += k[5, 0] > k[6, 0]
        return upright / n, facing / n

    easy, medium, hard = stats("easy"), stats("medium"), stats("hard")
    assert easy[0] == 1.0 and easy[1] > 0.9
    assert medium[0] < 1.0 and medium[1] > 0.9
    assert hard[0] < 1.0 and hard[1] < 0.8


def test_bad_difficulty(tmp_path):
    with pytest.raises(OdkdError, match="--difficulty"):
        generate_split(str(tmp_path), "val", 1, 0, progress=False, difficulty="extreme")


def test_preview_draws_legend_and_per_person_counts():
    import numpy as np

    from odkd.synth.preview import draw_annotations

    img = np.zeros((120, 160, 3), np.uint8)
    kp = [0.0] * 51
    kp[15:18] = [100, 80, 2]
    ann = {"bbox": [90, 60, 40, 50], "keypoints": kp,
           "segmentation": __import__("pycocotools.mask", fromlist=["encode"]).encode(
               np.asfortranarray(np.zeros((120, 160), np.uint8)))}
    bare = draw_annotations(img, [ann], legend=False)
    full = draw_annotations(img, [ann])
    assert bare[:50, :62].max() == 0 and full[:50, :62].max() > 0     # legend in the corner
    assert (bare[50:59, 90:115].min(axis=2) > 150).sum() > 5           # "1/17" above the box
