import numpy as np
import pytest
import torch

from odkd.codec.decode import decode_heatmaps, flip_back, get_max_preds
from odkd.codec.encode import encode_heatmaps
from odkd.geometry import affine_points, get_affine_transform

CENTER = np.array([200.0, 150.0])
SCALE = np.array([120.0, 160.0])
IN_W, IN_H, STRIDE = 96, 128, 4
HM_W, HM_H = IN_W // STRIDE, IN_H // STRIDE


def _encode_all(xy_hm: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """(N, 2) heatmap points -> (N, 1, h, w) oracle heatmaps."""
    return np.stack([encode_heatmaps(np.array([[x, y, 2.0]]), (HM_W, HM_H), sigma)[0]
                     for x, y in xy_hm])


def _tile(a, n):
    return np.tile(a, (n, 1))


def test_get_max_preds():
    hm = np.zeros((2, 3, 5, 7), np.float32)
    hm[0, 0, 4, 6] = 2.0
    hm[1, 2, 1, 3] = 0.5
    coords, maxvals = get_max_preds(hm)
    assert coords.shape == (2, 3, 2) and maxvals.shape == (2, 3)
    assert coords[0, 0].tolist() == [6, 4] and maxvals[0, 0] == 2.0
    assert coords[1, 2].tolist() == [3, 1] and maxvals[1, 2] == 0.5


def test_decode_maps_back_through_known_crop():
    # center (100, 50), scale (48, 64) on a 12x16 heatmap: x_h = (x - 100) / 4 + 6,
    # y_h = (y - 50) / 4 + 8, written out by hand rather than through geometry.
    hm = np.zeros((1, 2, 16, 12), np.float32)
    hm[0] = encode_heatmaps(np.array([[6.0, 8.0, 2], [2.0, 3.0, 2]]), (12, 16), 2.0)[0]
    preds, maxvals = decode_heatmaps(hm, [[100.0, 50.0]], [[48.0, 64.0]], method="quarter")
    np.testing.assert_allclose(preds[0], [[100.0, 50.0], [84.0, 30.0]], atol=1e-3)
    np.testing.assert_allclose(maxvals[0], [1.0, 1.0], atol=1e-6)
    # DARK's zero-padded blur pulls peaks near the border inwards (as in the paper's code),
    # so only the central joint is exact.
    preds, _ = decode_heatmaps(hm, [[100.0, 50.0]], [[48.0, 64.0]], method="dark")
    np.testing.assert_allclose(preds[0, 0], [100.0, 50.0], atol=0.05)
    np.testing.assert_allclose(preds[0, 1], [84.0, 30.0], atol=4.0)


def test_subpixel_error_quarter_and_dark():
    rng = np.random.default_rng(0)
    n = 60
    xy = np.stack([rng.uniform(6, HM_W - 7, n), rng.uniform(6, HM_H - 7, n)], 1)
    hm = _encode_all(xy)
    inv = get_affine_transform(CENTER, SCALE, 0, (HM_W, HM_H), inv=True)
    truth = affine_points(xy, inv)
    px = SCALE[0] / HM_W   # image pixels per heatmap pixel
    errs = {}
    for method in ("quarter", "dark"):
        preds, _ = decode_heatmaps(hm, _tile(CENTER, n), _tile(SCALE, n), method=method)
        d = (preds[:, 0] - truth) / px                      # heatmap pixels
        errs[method] = np.linalg.norm(d, axis=1)
        assert np.abs(d).max() <= 0.25 + 1e-3, method      # per axis
    assert errs["quarter"].mean() < 0.25
    assert errs["dark"].max() < 0.05
    assert errs["dark"].mean() < 0.2 * errs["quarter"].mean()


def test_decode_accepts_torch_and_rejects_unknown_method():
    hm = torch.from_numpy(_encode_all(np.array([[10.3, 12.7]])))
    preds, _ = decode_heatmaps(hm, [CENTER], [SCALE], method="dark")
    assert preds.shape == (1, 1, 2)
    with pytest.raises(ValueError, match="decode method"):
        decode_heatmaps(hm, [CENTER], [SCALE], method="soft")


def test_flip_back_mirrors_and_swaps_pairs():
    hm = np.zeros((1, 3, 4, 5), np.float32)
    hm[0, 0, 1, 0] = 1.0   # joint 0 at x=0
    hm[0, 1, 2, 4] = 1.0   # joint 1 at x=4
    hm[0, 2, 3, 1] = 1.0   # joint 2 (unpaired) at x=1
    out = flip_back(hm, [[0, 1]], shift=False)
    assert out[0, 1, 1, 4] == 1.0 and out[0, 0, 2, 0] == 1.0 and out[0, 2, 3, 3] == 1.0
    assert out.sum() == 3.0
    t = flip_back(torch.from_numpy(hm), [[0, 1]], shift=False)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), out)
    # integer shift (HRNet): one column to the right, left edge replicated
    sh = flip_back(hm, [[0, 1]], shift=1.0)
    np.testing.assert_array_equal(sh[..., 1:], out[..., :-1])
    np.testing.assert_array_equal(sh[..., 0], out[..., 0])
    # default: 0.75 px for stride 4, by linear interpolation
    d = flip_back(hm, [[0, 1]])
    np.testing.assert_allclose(d[..., 1:], 0.25 * out[..., 1:] + 0.75 * out[..., :-1])


def _flip_bias(shift) -> float:
    """Mean x error (heatmap px) of decoding the average of the heatmaps of a crop and of its
    horizontally flipped input tensor (u -> W - 1 - u), both oracle-encoded."""
    rng = np.random.default_rng(1)
    n = 30
    t_hm = get_affine_transform(CENTER, SCALE, 0, (HM_W, HM_H))
    t_in = get_affine_transform(CENTER, SCALE, 0, (IN_W, IN_H))
    t_in_inv = get_affine_transform(CENTER, SCALE, 0, (IN_W, IN_H), inv=True)
    pts = np.stack([rng.uniform(CENTER[0] - 0.3 * SCALE[0], CENTER[0] + 0.3 * SCALE[0], n),
                    rng.uniform(CENTER[1] - 0.3 * SCALE[1], CENTER[1] + 0.3 * SCALE[1], n)], 1)
    u = affine_points(pts, t_in)
    u[:, 0] = IN_W - 1 - u[:, 0]                     # the flipped input tensor
    hm = _encode_all(affine_points(pts, t_hm))
    hm_flipped = _encode_all(affine_points(affine_points(u, t_in_inv), t_hm))
    avg = 0.5 * (hm + flip_back(hm_flipped, [], shift=shift))
    preds, _ = decode_heatmaps(avg, _tile(CENTER, n), _tile(SCALE, n), method="dark")
    return float(((preds[:, 0, 0] - pts[:, 0]) * HM_W / SCALE[0]).mean())


def test_flip_average_unbiased_with_default_shift():
    assert abs(_flip_bias(True)) < 0.05
    # the alternatives are measurably biased: HRNet's 1 px by +1/8, no shift by -3/8
    assert _flip_bias(1.0) == pytest.approx(0.125, abs=0.03)
    assert _flip_bias(False) == pytest.approx(-0.375, abs=0.03)


def _identity_decode(hm, protocol):
    """Decode with a crop whose inverse affine is the identity (heatmap px = image px)."""
    n, k, h, w = hm.shape
    centers = np.tile([[w / 2, h / 2]], (n, 1))
    scales = np.tile([[w, h]], (n, 1))
    return decode_heatmaps(hm, centers, scales, protocol=protocol)[0]


def test_hrnet_protocol_border_and_nonpositive_rules():
    hm = np.zeros((1, 3, 8, 10), np.float32)
    hm[0, 0, 4, 1] = 1.0; hm[0, 0, 4, 2] = 0.5; hm[0, 0, 5, 1] = 0.5   # max in column 1
    hm[0, 1, 4, 5] = 1.0; hm[0, 1, 4, 6] = 0.5; hm[0, 1, 3, 5] = 0.5   # interior
    hm[0, 2] = -1.0; hm[0, 2, 6, 7] = -0.1                              # never positive
    odkd, hrnet = _identity_decode(hm, "odkd"), _identity_decode(hm, "hrnet")
    np.testing.assert_allclose(odkd[0, 0], [1.25, 4.25], atol=1e-4)    # odkd: per axis, x >= 1
    np.testing.assert_allclose(hrnet[0, 0], [1.0, 4.0], atol=1e-4)     # hrnet: needs x >= 2
    np.testing.assert_allclose(odkd[0, 1], [5.25, 3.75], atol=1e-4)    # same rule inside
    np.testing.assert_allclose(hrnet[0, 1], [5.25, 3.75], atol=1e-4)
    np.testing.assert_allclose(odkd[0, 2], [7.0, 6.0], atol=1e-4)      # odkd keeps the argmax
    np.testing.assert_allclose(hrnet[0, 2], [0.0, 0.0], atol=1e-4)     # hrnet: crop corner
    with pytest.raises(ValueError, match="quarter"):
        decode_heatmaps(hm, [[5, 4]], [[10, 8]], method="dark", protocol="hrnet")


def test_dark_gives_each_map_the_same_answer_in_any_batch():
    """DARK blurs and takes the log only at the 3x3 patch each Newton step reads: a batch of
    people decodes each as decoding it alone does. (NumPy's vectorised log and its matrix
    products may differ by an ulp with the array's size on some CPUs, hence a tolerance far
    below the pixel shifts a mixed-up map would give.)"""
    rng = np.random.default_rng(0)
    hm = (rng.random((9, 17, 16, 12)) ** 4).astype(np.float32)
    hm[3, 5] = 0   # an empty map keeps its argmax, unrefined
    centers, scales = np.full((9, 2), 50.0), np.full((9, 2), 100.0)
    batch, conf = decode_heatmaps(hm, centers, scales, method="dark")
    for i in range(9):
        one, c1 = decode_heatmaps(hm[i:i + 1], centers[i:i + 1], scales[i:i + 1], method="dark")
        np.testing.assert_allclose(batch[i], one[0], rtol=0, atol=1e-3)
        np.testing.assert_array_equal(conf[i], c1[0])
