import pytest
import torch

from odkd.config import ConfigError
from odkd.distill.binarize import binarize


def _ramp() -> torch.Tensor:
    """(1, 2, 3, 3): map 0 = 0..8 (peak 8), map 1 = the same times 0.1 (peak 0.8)."""
    base = torch.arange(9, dtype=torch.float32).reshape(3, 3)
    return torch.stack([base, 0.1 * base])[None]


def test_hard_is_exact_zero_one_at_tau_times_peak():
    out = binarize(_ramp(), "hard", 0.5)
    # threshold 4 (strictly above): 5, 6, 7, 8 -> 1
    want = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.float32)
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(out[0, 0], want)
    # per-map peak: the weak map gets the same pattern (a global peak of 8 would zero it)
    assert torch.equal(out[0, 1], want)


def test_mask_keeps_values_above_threshold():
    hm = _ramp()
    out = binarize(hm, "mask", 0.5)
    keep = torch.tensor([[0, 0, 0], [0, 0, 1], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(out[0, 0], torch.where(keep, hm[0, 0], torch.zeros(3, 3)))
    assert torch.equal(out[0, 1], torch.where(keep, hm[0, 1], torch.zeros(3, 3)))


def test_per_sample_peak_and_tau():
    hm = torch.cat([_ramp(), 3 * _ramp()])          # second sample is 3x stronger
    out = binarize(hm, "hard", 0.75)                # > 6 (resp. > 18): values 7, 8 only
    assert out.sum().item() == 2 * 2 * 2


def test_empty_and_near_empty_maps_stay_zero():
    hm = torch.zeros(2, 3, 4, 5)
    hm[1, 2] = 1e-9                                  # numerical noise, not a joint
    for mode in ("hard", "mask"):
        assert torch.count_nonzero(binarize(hm, mode, 0.5)) == 0


def test_none_returns_input_unchanged():
    hm = _ramp()
    assert torch.equal(binarize(hm, "none", 0.5), hm)


def test_no_gradient_and_input_untouched():
    hm = _ramp().requires_grad_(True)
    before = hm.detach().clone()
    out = binarize(hm, "mask", 0.5)
    assert not out.requires_grad
    assert torch.equal(hm.detach(), before)


@pytest.mark.parametrize("mode,tau", [("soft", 0.5), ("hard", 1.0), ("mask", -0.1)])
def test_invalid_settings_raise_config_error(mode, tau):
    with pytest.raises(ConfigError, match="distill.binarize"):
        binarize(_ramp(), mode, tau)


@pytest.mark.parametrize("mode,bound", [("hard", 0.2), ("mask", 0.15)])
def test_binarized_gaussian_keeps_subpixel_centre(mode, bound):
    # The docstring's claim: the region above tau*peak is centred on the float location, so
    # its centroid is sub-pixel accurate, unlike the integer argmax (up to 0.5 px off).
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(24.0), indexing="ij")
    worst = worst_argmax = 0.0
    for ox in torch.linspace(0, 0.9, 10).tolist():
        for oy in torch.linspace(0, 0.9, 10).tolist():
            cx, cy = 10 + ox, 15 + oy
            g = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0**2))
            b = binarize(g[None, None], mode, 0.5)[0, 0]
            ex, ey = (b * xs).sum() / b.sum(), (b * ys).sum() / b.sum()
            worst = max(worst, abs(ex.item() - cx), abs(ey.item() - cy))
            worst_argmax = max(worst_argmax, abs(int(g.argmax()) % 24 - cx))
    assert worst < bound
    assert worst_argmax > 0.4
