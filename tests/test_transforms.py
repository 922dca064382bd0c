import cv2
import numpy as np
import pytest

from odkd.data.transforms import (AugmentParams, TrainAugment, color_jitter, flip_sample,
                                  half_body_box, sample_scale_rotation)
from odkd.geometry import affine_points, get_affine_transform
from odkd.keypoints import COCO_KEYPOINTS, COCO_UPPER_BODY, flip_pairs_from_names

PAIRS = flip_pairs_from_names(COCO_KEYPOINTS)
CROP = (48, 64)


def smooth_image(h=80, w=100, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 3) * 3 - 255, 0, 255).astype(np.uint8)


def random_kpts(rng, n=17, w=100, h=80):
    k = np.zeros((n, 3), np.float32)
    k[:, 0] = rng.uniform(0, w - 1, n)
    k[:, 1] = rng.uniform(0, h - 1, n)
    k[:, 2] = 2
    return k


@pytest.mark.parametrize("rot", [0.0, 30.0, -75.0])
def test_affine_round_trip(rot):
    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 100, (20, 2))
    center, scale = np.array([47.3, 38.1]), np.array([60.0, 80.0])
    fwd = get_affine_transform(center, scale, rot, CROP)
    inv = get_affine_transform(center, scale, rot, CROP, inv=True)
    back = affine_points(affine_points(pts, fwd), inv)
    np.testing.assert_allclose(back, pts, atol=1e-3)
    # the crop centre is the image centre, whatever the rotation
    np.testing.assert_allclose(affine_points(center, fwd), [CROP[0] / 2, CROP[1] / 2], atol=1e-4)


def test_flip_round_trip_and_pair_swap():
    img = smooth_image()
    kp = random_kpts(np.random.default_rng(2))
    center = np.array([30.0, 40.0], np.float32)
    f_img, f_kp, f_center = flip_sample(img, kp, center, PAIRS)
    assert f_center.tolist() == [100 - 1 - 30.0, 40.0]
    # left_wrist (9) of the flipped sample is the mirrored right_wrist (10), and vice versa
    np.testing.assert_allclose(f_kp[9], [99 - kp[10, 0], kp[10, 1], kp[10, 2]], atol=1e-4)
    np.testing.assert_allclose(f_kp[10], [99 - kp[9, 0], kp[9, 1], kp[9, 2]], atol=1e-4)
    np.testing.assert_allclose(f_kp[0], [99 - kp[0, 0], kp[0, 1], 2], atol=1e-4)  # nose has no pair
    # the pixel under each keypoint is the same before and after the flip
    x, y = 17, 23
    assert (f_img[y, 99 - x] == img[y, x]).all()
    b_img, b_kp, b_center = flip_sample(f_img, f_kp, f_center, PAIRS)
    assert (b_img == img).all()
    np.testing.assert_allclose(b_kp, kp, atol=1e-4)
    np.testing.assert_allclose(b_center, center)


def test_crop_of_flipped_image_is_flipped_crop():
    """Cropping the flipped image at the mirrored centre mirrors the crop about x = W/2 (the
    HRNet convention that the decoder's 1-pixel heatmap shift compensates)."""
    img = smooth_image()
    kp = random_kpts(np.random.default_rng(3))
    center, scale = np.array([48.0, 41.0], np.float32), np.array([60.0, 80.0], np.float32)
    mat = get_affine_transform(center, scale, 0.0, CROP)
    crop = cv2.warpAffine(img, mat, CROP, flags=cv2.INTER_LINEAR)
    kp_crop = affine_points(kp[:, :2], mat)

    f_img, f_kp, f_center = flip_sample(img, kp, center, PAIRS)
    f_mat = get_affine_transform(f_center, scale, 0.0, CROP)
    f_crop = cv2.warpAffine(f_img, f_mat, CROP, flags=cv2.INTER_LINEAR)
    f_kp_crop = affine_points(f_kp[:, :2], f_mat)

    swap = np.arange(17)
    for a, b in PAIRS:
        swap[a], swap[b] = b, a
    np.testing.assert_allclose(f_kp_crop[:, 0], CROP[0] - kp_crop[swap, 0], atol=1e-3)
    np.testing.assert_allclose(f_kp_crop[:, 1], kp_crop[swap, 1], atol=1e-3)
    # pixel j of the flipped crop shows what pixel W - j of the crop shows
    diff = np.abs(f_crop[:, 1:].astype(int) - crop[:, ::-1][:, :-1].astype(int))
    assert diff.max() <= 2


def test_half_body_box_surrounds_the_chosen_joints():
    kp = np.zeros((17, 3), np.float32)
    kp[:11, :2] = np.random.default_rng(4).uniform([40, 10], [60, 30], (11, 2))   # upper
    kp[11:, :2] = np.random.default_rng(5).uniform([30, 60], [70, 95], (6, 2))    # lower
    kp[:, 2] = 2
    kp[3, 2] = 0   # unlabelled joints are ignored
    kp[3, :2] = [500, 500]
    aspect = 0.75
    for upper_first, ids in ((True, [i for i in range(11) if i != 3]), (False, range(11, 17))):
        center, scale = half_body_box(kp, COCO_UPPER_BODY, aspect, upper_first)
        pts = kp[list(ids), :2]
        np.testing.assert_allclose(center, pts.mean(0), atol=1e-4)
        assert scale[0] / scale[1] == pytest.approx(aspect, rel=1e-5)
        ext = pts.max(0) - pts.min(0)
        assert (scale >= ext * 1.5 - 1e-3).all() and min(scale / (ext * 1.5)) == pytest.approx(1)
        lo, hi = center - scale / 2, center + scale / 2
        assert (pts >= lo).all() and (pts <= hi).all()

    # fewer than 3 visible upper joints: falls back to the lower body
    few = kp.copy()
    few[2:11, 2] = 0
    center, _ = half_body_box(few, COCO_UPPER_BODY, aspect, True)
    np.testing.assert_allclose(center, kp[11:, :2].mean(0), atol=1e-4)
    # nothing usable at all
    assert half_body_box(np.zeros((17, 3), np.float32), COCO_UPPER_BODY, aspect, True) is None


def test_scale_rotation_ranges():
    rng = np.random.default_rng(0)
    draws = np.array([sample_scale_rotation(rng, 0.25, 30.0, 0.6) for _ in range(400)])
    assert draws[:, 0].min() >= 0.75 and draws[:, 0].max() <= 1.25
    assert draws[:, 0].std() > 0.1
    assert np.abs(draws[:, 1]).max() <= 30.0
    assert 0.3 < np.mean(draws[:, 1] == 0) < 0.5   # rotated with probability 0.6


def test_augment_disabled_is_identity_and_seeded_is_reproducible():
    img = smooth_image()
    kp = random_kpts(np.random.default_rng(6))
    center, scale = np.array([50.0, 40.0], np.float32), np.array([60.0, 80.0], np.float32)
    off = AugmentParams(scale_factor=0, rotation_factor=0, rot_prob=0, flip=False,
                        half_body_prob=0)
    out = TrainAugment(off, PAIRS, COCO_UPPER_BODY, 0.75)(img, kp, center, scale,
                                                          np.random.default_rng(0))
    assert out.image is img and not out.flipped and out.rotation == 0
    np.testing.assert_allclose(out.keypoints, kp)
    np.testing.assert_allclose(out.center, center)
    np.testing.assert_allclose(out.scale, scale)

    aug = TrainAugment(AugmentParams(half_body_prob=0.5), PAIRS, COCO_UPPER_BODY, 0.75)
    runs = [aug(img, kp, center, scale, np.random.default_rng(s)) for s in (7, 7, 8)]
    assert runs[0].rotation == runs[1].rotation and runs[0].flipped == runs[1].flipped
    np.testing.assert_array_equal(runs[0].keypoints, runs[1].keypoints)
    np.testing.assert_array_equal(runs[0].scale, runs[1].scale)
    assert not np.array_equal(runs[0].scale, runs[2].scale)
    flips = {aug(img, kp, center, scale, np.random.default_rng(s)).flipped for s in range(20)}
    assert flips == {True, False}


def test_color_jitter():
    img = smooth_image()
    assert color_jitter(img, np.random.default_rng(0), 0.0) is img
    out = color_jitter(img, np.random.default_rng(0), 0.4)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.abs(out.astype(int) - img.astype(int)).mean() > 1
    np.testing.assert_array_equal(out, color_jitter(img, np.random.default_rng(0), 0.4))
