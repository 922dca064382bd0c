import numpy as np
import pytest

from odkd.eval.nms import oks_iou, oks_nms
from odkd.keypoints import COCO_SIGMAS


def _person(x0: float, y0: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = np.zeros((17, 3))
    k[:, 0] = x0 + rng.uniform(0, 60, 17)
    k[:, 1] = y0 + rng.uniform(0, 150, 17)
    k[:, 2] = 0.9
    return k


def test_oks_identical_is_one_and_decreases_with_distance():
    g = _person(100, 100)
    d = np.stack([g, g + [3.0, 0, 0], g + [30.0, 0, 0]])
    oks = oks_iou(g, d, 9000.0, np.full(3, 9000.0), COCO_SIGMAS)
    assert oks.shape == (3,)
    assert oks[0] == pytest.approx(1.0)
    assert 1.0 > oks[1] > oks[2] > 0.0


def test_oks_matches_formula_for_one_joint():
    g = np.array([[0.0, 0.0, 2.0]])
    d = np.array([[[3.0, 4.0, 2.0]]])
    sig = np.array([0.1])
    # e = d^2 / (2 s^2 (2 sigma)^2), s^2 = area
    expected = np.exp(-25.0 / (2 * 100.0 * 0.04))
    assert oks_iou(g, d, 100.0, [100.0], sig)[0] == pytest.approx(expected)


def test_oks_vis_thr_ignores_low_confidence_joints():
    g = _person(0, 0)
    d = g.copy()
    d[:5, :2] += 200.0          # far off ...
    d[:5, 2] = 0.05             # ... but low confidence
    full = oks_iou(g, d[None], 9000.0, [9000.0])[0]
    masked = oks_iou(g, d[None], 9000.0, [9000.0], vis_thr=0.2)[0]
    assert full < 0.8 and masked == pytest.approx(1.0)
    d[:, 2] = 0.0               # nothing confident: OKS 0
    assert oks_iou(g, d[None], 9000.0, [9000.0], vis_thr=0.2)[0] == 0.0


def test_oks_nms_suppresses_duplicates_keeps_distinct_in_score_order():
    a = _person(100, 100, seed=1)
    a_dup = a + [1.0, -1.0, 0.0]
    b = _person(400, 100, seed=2)
    b_dup = b + [0.5, 0.5, 0.0]
    kpts = [a_dup, b, a, b_dup]
    scores = [0.7, 0.6, 0.9, 0.5]
    keep = oks_nms(kpts, scores, [9000.0] * 4, thr=0.9)
    assert keep == [2, 1]
    # with a threshold above any OKS nothing is suppressed, still ordered by score
    assert oks_nms(kpts, scores, [9000.0] * 4, thr=1.01) == [2, 0, 1, 3]
    assert oks_nms([], [], []) == []
