"""odkd.codec.encode: Gaussian heatmaps and target weights, numpy and torch."""
import numpy as np
import pytest
import torch

from odkd.codec.encode import encode_heatmaps, encode_heatmaps_torch


def test_gaussian_centred_on_float_location():
    kpts = np.array([[10.3, 7.6, 2.0]])
    hm, w = encode_heatmaps(kpts, (24, 20), sigma=2.0)
    assert hm.shape == (1, 20, 24) and hm.dtype == np.float32
    assert w.tolist() == [1.0]
    # value at pixel (x=10, y=8) follows the unrounded centre
    assert hm[0, 8, 10] == pytest.approx(np.exp(-(0.3 ** 2 + 0.4 ** 2) / 8.0), rel=1e-5)
    assert hm.max() <= 1.0
    # 3-sigma window: x=16 is 5.7 away (inside), x=17 is 6.7 away (outside)
    assert hm[0, 8, 16] > 0 and hm[0, 8, 17] == 0
    # the centre of mass of the map is the float location
    ys, xs = np.mgrid[0:20, 0:24]
    m = hm[0] / hm[0].sum()
    assert (m * xs).sum() == pytest.approx(10.3, abs=0.02)
    assert (m * ys).sum() == pytest.approx(7.6, abs=0.02)


def test_weights_invisible_and_outside():
    kpts = np.array([
        [5.0, 5.0, 0.0],      # unlabelled
        [-10.0, 5.0, 2.0],    # window entirely left of the map
        [-3.0, 5.0, 1.0],     # outside but the window reaches the map
        [5.0, 40.0, 2.0],     # window below the map
        [np.nan, 3.0, 2.0],   # garbage
    ])
    hm, w = encode_heatmaps(kpts, (16, 20), sigma=2.0)
    assert w.tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]
    assert np.all(hm[[0, 1, 3, 4]] == 0)
    assert hm[2].max() > 0 and np.isfinite(hm).all()


def test_encode_heatmaps_torch_matches_numpy():
    rng = np.random.default_rng(1)
    k = np.concatenate([rng.uniform(-8, 20, (2, 17, 2)), rng.integers(0, 3, (2, 17, 1))], -1)
    k[0, 3, 0] = np.nan
    heat, weight = encode_heatmaps_torch(torch.from_numpy(k), (12, 16), 2.0)
    for i in range(2):
        ref_h, ref_w = encode_heatmaps(k[i], (12, 16), 2.0)
        np.testing.assert_allclose(heat[i].numpy(), ref_h, atol=1e-6)
        np.testing.assert_array_equal(weight[i].numpy(), ref_w)
