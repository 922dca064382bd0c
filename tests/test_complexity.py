import pytest
import torch
from torch import nn

from odkd.errors import OdkdError
from odkd.models.complexity import complexity, count_flops, count_params


def test_conv_flops_match_hand_formula():
    conv = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=True)
    # output 8 x 10 x 12 (h x w), each output needs 3*3*3 MACs; 2 FLOPs per MAC; bias not counted
    assert count_flops(conv, input_size=(12, 10)) == 2 * 8 * 10 * 12 * 3 * 3 * 3
    strided = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1, groups=1)
    assert count_flops(strided, input_size=(12, 10)) == 2 * 4 * 5 * 6 * 27
    depthwise = nn.Sequential(nn.Conv2d(3, 6, 1), nn.Conv2d(6, 6, 3, padding=1, groups=6))
    assert count_flops(depthwise, input_size=(4, 4)) == 2 * 16 * (6 * 3 + 6 * 9)


def test_params_and_units():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    assert count_params(model) == 3 * 4 + 4 + 4 + 4
    c = complexity(model, (8, 6))
    assert c["params"] == count_params(model)
    assert c["flops"] == 2 * 4 * 3 * 48
    assert c["gflops"] == pytest.approx(c["flops"] / 1e9)
    assert c["gmacs"] == pytest.approx(c["flops"] / 2e9)
    assert c["gmacs_2p30"] == pytest.approx(c["flops"] / 2 / 2**30)


def test_modes_restored_and_bn_stats_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(), nn.BatchNorm2d(4))
    model.train()
    model[3].eval()  # mixed modes, e.g. a frozen BN
    before = model[1].running_mean.clone()
    count_flops(model, (8, 8))
    assert [m.training for m in model] == [True, True, True, False]
    assert model.training is True
    # Counted in eval mode: running stats unchanged (a train-mode pass on zeros would move them
    # towards the conv bias).
    torch.testing.assert_close(model[1].running_mean, before)
    assert model[1].num_batches_tracked.item() == 0
    model.eval()
    count_flops(model, (8, 8))
    assert not any(m.training for m in model.modules())


def test_bad_input_size():
    with pytest.raises(OdkdError, match="input_size"):
        count_flops(nn.Conv2d(3, 3, 1), (0, 4))
