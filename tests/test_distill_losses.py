import math

import pytest
import torch

from odkd.config import ConfigError, DistillConfig
from odkd.distill.binarize import binarize
from odkd.distill.losses import LOG_KEYS, DistillLoss, mask_kl, teachers_in_use

N, K, H, W = 2, 3, 8, 6


def _hm(seed: int) -> torch.Tensor:
    return torch.rand(N, K, H, W, generator=torch.Generator().manual_seed(seed))


def _logits(seed: int) -> torch.Tensor:
    return 3 * torch.randn(N, 1, H, W, generator=torch.Generator().manual_seed(seed))


def _gt(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + 100)
    return {"heatmap": _hm(seed), "target_weight": torch.ones(N, K),
            "mask": (torch.rand(N, 1, H, W, generator=g) > 0.5).float(),
            "mask_weight": torch.ones(N)}


def _teachers() -> dict:
    return {"pt": {"heatmaps": _hm(1)}, "st": {"heatmaps": _hm(2), "mask": _logits(3)}}


def _cfg(**kw) -> DistillConfig:
    kw.setdefault("binarize_mode", "none")
    return DistillConfig(**kw)


def test_gt_term_vanishes_when_student_equals_gt():
    loss_fn = DistillLoss(_cfg(schedule="none"), 10)
    gt = _gt()
    loss, logs = loss_fn({"heatmaps": gt["heatmap"].clone()}, gt, {}, 0)
    assert loss.item() == 0.0
    loss, _ = loss_fn({"heatmaps": _hm(5)}, gt, {}, 0)
    assert loss.item() > 0.01
    assert set(logs) == set(LOG_KEYS)


def test_pt_term_vanishes_when_student_equals_pt_in_pt_phase():
    loss_fn = DistillLoss(_cfg(schedule="orderly", gt_weight=0.0, seg_weight=0.0), 10)
    t = _teachers()
    student = {"heatmaps": t["pt"]["heatmaps"].clone()}
    loss, logs = loss_fn(student, _gt(), t, 4)          # PT phase
    assert loss.item() == 0.0 and logs["w_pt"] == 1.0
    loss, logs = loss_fn(student, _gt(), t, 5)          # ST phase: student != ST
    assert loss.item() > 0.01 and logs["pt_kpt"] == 0.0 and logs["st_kpt"] > 0.01


def test_st_terms_vanish_when_student_equals_st():
    loss_fn = DistillLoss(_cfg(schedule="st_only", gt_weight=0.0, seg_weight=1.0), 10)
    t = _teachers()
    gt = _gt()
    gt.pop("mask")                                       # isolate the teacher terms
    student = {"heatmaps": t["st"]["heatmaps"].clone(), "mask": t["st"]["mask"].clone()}
    loss, logs = loss_fn(student, gt, t, 0)
    assert logs["st_kpt"] == 0.0
    assert abs(logs["st_seg"]) < 1e-6 and abs(loss.item()) < 1e-6
    loss, logs = loss_fn({**student, "mask": _logits(9)}, gt, t, 0)
    assert logs["st_seg"] > 0.05 and loss.item() > 0.05


def test_gt_mask_term_vanishes_for_a_confident_correct_mask():
    loss_fn = DistillLoss(_cfg(schedule="none"), 10)
    gt = _gt()
    student = {"heatmaps": gt["heatmap"].clone(), "mask": 40.0 * (2 * gt["mask"] - 1)}
    loss, logs = loss_fn(student, gt, {}, 0)
    assert loss.item() < 1e-10
    loss, logs = loss_fn({**student, "mask": -student["mask"]}, gt, {}, 0)
    assert logs["gt_mask"] > 1.0
    # mask_weight 0 (no annotation) removes the term
    gt["mask_weight"] = torch.zeros(N)
    loss, logs = loss_fn({**student, "mask": -student["mask"]}, gt, {}, 0)
    assert logs["gt_mask"] == 0.0
    # train.mask_loss_weight (the one GT-mask knob, shared with supervised training) 0: off
    loss, logs = DistillLoss(_cfg(schedule="none"), 10, mask_loss_weight=0.0)(
        {**student, "mask": -student["mask"]}, _gt(), {}, 0)
    assert logs["gt_mask"] == 0.0 and loss.item() == 0.0
    # seg_weight weights only the ST imitation, not the GT mask
    loss, logs = DistillLoss(_cfg(schedule="none", seg_weight=0.0), 10, mask_loss_weight=0.5)(
        {**student, "mask": -student["mask"]}, _gt(), {}, 0)
    assert loss.item() == pytest.approx(0.5 * float(logs["gt_mask"])) and logs["gt_mask"] > 1.0


def test_one_gt_mask_knob_with_one_default():
    from odkd.config import TrainConfig
    from odkd.engine.distill import distill  # noqa: F401  (builds DistillLoss from train.*)
    from odkd.engine.step import SupervisedObjective

    assert DistillLoss(_cfg()).mask_loss_weight == TrainConfig().mask_loss_weight == 0.01
    assert SupervisedObjective().mask_loss_weight == TrainConfig().mask_loss_weight


def test_mask_kl_is_binary_kl():
    zs, zt = _logits(4), _logits(5)
    ps, pt = torch.sigmoid(zs).double(), torch.sigmoid(zt).double()
    want = (pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))).mean()
    assert mask_kl(zs, zt).item() == pytest.approx(want.item(), rel=1e-4)
    assert abs(mask_kl(zt, zt).item()) < 1e-6
    # per-crop weights: ones change nothing, a zero drops that crop from the sum only
    n = zs.shape[0]
    assert mask_kl(zs, zt, torch.ones(n)).item() == pytest.approx(mask_kl(zs, zt).item(),
                                                                  rel=1e-5)
    w = torch.zeros(n)
    w[0] = 1
    assert mask_kl(zs, zt, w).item() == pytest.approx(mask_kl(zs[:1], zt[:1]).item() / n,
                                                      rel=1e-5)


def test_unlabelled_joints_ignore_the_teacher():
    loss_fn = DistillLoss(_cfg(schedule="pt_only", gt_weight=0.0), 10)
    t = _teachers()
    student = t["pt"]["heatmaps"].clone()
    student[:, 1] += 1.0                                  # wrong only on joint 1
    gt = _gt()
    gt["target_weight"][:, 1] = 0.0
    loss, _ = loss_fn({"heatmaps": student}, gt, t, 0)
    assert loss.item() == 0.0


def test_teacher_binarization_is_applied():
    cfg = _cfg(schedule="pt_only", gt_weight=0.0, binarize_mode="hard", binarize_tau=0.6,
               binarize_targets=["teacher"])
    t = _teachers()
    loss_fn = DistillLoss(cfg, 10)
    hard = binarize(t["pt"]["heatmaps"], "hard", 0.6)
    assert loss_fn({"heatmaps": hard.clone()}, _gt(), t, 0)[0].item() == 0.0
    assert loss_fn({"heatmaps": t["pt"]["heatmaps"].clone()}, _gt(), t, 0)[0].item() > 0.01


def test_gt_binarization_only_when_listed():
    gt = _gt()
    hard = binarize(gt["heatmap"], "mask", 0.5)
    on = DistillLoss(_cfg(schedule="none", binarize_mode="mask", binarize_targets=["gt"]), 10)
    off = DistillLoss(_cfg(schedule="none", binarize_mode="mask", binarize_targets=["teacher"]), 10)
    assert on({"heatmaps": hard.clone()}, gt, {}, 0)[0].item() == 0.0
    assert off({"heatmaps": hard.clone()}, gt, {}, 0)[0].item() > 0.001


def test_simultaneous_weights_each_teacher_half():
    cfg = _cfg(schedule="simultaneous", gt_weight=2.0, kd_weight=3.0, seg_weight=5.0)
    gt = _gt()
    student = {"heatmaps": _hm(7), "mask": _logits(8)}
    loss, logs = DistillLoss(cfg, 10, mask_loss_weight=4.0)(student, gt, _teachers(), 0)
    # logged terms are detached 0-d tensors (read back once per log interval by the loop)
    want = float(2.0 * logs["gt_kpt"] + 4.0 * logs["gt_mask"] + 3.0 * 0.5 * logs["pt_kpt"]
                 + 3.0 * 0.5 * logs["st_kpt"] + 5.0 * 0.5 * logs["st_seg"])
    assert min(logs[k] for k in ("gt_kpt", "gt_mask", "pt_kpt", "st_kpt", "st_seg")) > 0
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_fpd_matches_hand_computation():
    # one sample, two joints of 1x2 pixels; joint 1 has target weight 0.5
    s = torch.tensor([[[[1.0, 2.0]], [[0.0, 4.0]]]])
    g = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    t = torch.tensor([[[[3.0, 0.0]], [[0.0, 2.0]]]])
    gt = {"heatmap": g, "target_weight": torch.tensor([[1.0, 0.5]])}
    # HRNet MSE: 0.5 * mean_k( w_k^2 * mean_pixels (s-x)^2 )
    mse_gt = 0.5 * ((1 + 0) / 2 * 1.0 + (1 + 9) / 2 * 0.25) / 2      # = 0.5 * (0.5 + 1.25) / 2
    mse_t = 0.5 * ((4 + 4) / 2 * 1.0 + (0 + 4) / 2 * 0.25) / 2      # = 0.5 * (4 + 0.5) / 2
    alpha = 0.3
    cfg = _cfg(method="fpd", schedule="st_only", fpd_alpha=alpha, gt_weight=7.0, kd_weight=9.0,
               seg_weight=5.0)
    # a mask head and an ST mask change nothing: FPD is keypoints only, as published
    out = {"heatmaps": s, "mask": torch.ones(1, 1, 1, 2)}
    st = {"heatmaps": t, "mask": -torch.ones(1, 1, 1, 2)}
    loss, logs = DistillLoss(cfg, 10)(out, {**gt, "mask": torch.zeros(1, 1, 1, 2),
                                            "mask_weight": torch.ones(1)}, {"st": st}, 0)
    assert logs["gt_kpt"] == pytest.approx(0.4375) and mse_gt == pytest.approx(0.4375)
    assert logs["st_kpt"] == pytest.approx(mse_t)
    assert logs["gt_mask"] == 0.0 and logs["st_seg"] == 0.0
    assert loss.item() == pytest.approx((1 - alpha) * mse_gt + alpha * mse_t)
    # the schedule is the timing: FPD through the orderly schedule uses PT, then ST
    both = DistillLoss(_cfg(method="fpd", schedule="orderly"), 10)
    assert both.needed_teachers(0) == {"pt"} and both.needed_teachers(9) == {"st"}
    assert both.describe(5).startswith("FPD (alpha 0.5), orderly: PT steps 0-4")


def test_fpd_as_a_schedule_says_what_to_write_instead():
    from odkd.config import load_config

    with pytest.raises(ConfigError, match="distill.method=fpd with distill.schedule=pt_only"):
        DistillLoss(_cfg(schedule="fpd"), 10)
    with pytest.raises(ConfigError, match="distill.fpd_teacher: no longer a key.*"
                                          "distill.method=fpd"):
        load_config(None, ["distill.schedule=fpd", "distill.fpd_teacher=st"])


def test_needed_teachers_follow_schedule_and_weights():
    loss_fn = DistillLoss(_cfg(schedule="orderly", pt_fraction=0.5), 10)
    assert [loss_fn.needed_teachers(e) for e in range(10)] == [{"pt"}] * 5 + [{"st"}] * 5
    assert DistillLoss(_cfg(schedule="simultaneous"), 4).needed_teachers(3) == {"pt", "st"}
    assert DistillLoss(_cfg(schedule="none"), 4).needed_teachers(0) == set()
    assert DistillLoss(_cfg(method="fpd", schedule="st_only"), 4).needed_teachers(0) == {"st"}
    assert DistillLoss(_cfg(method="fpd", schedule="pt_only", fpd_alpha=0.0),
                       4).needed_teachers(0) == set()
    assert DistillLoss(_cfg(schedule="simultaneous", kd_weight=0.0, seg_weight=0.0),
                       4).needed_teachers(0) == set()
    # ST still needed for its mask when only keypoint imitation is off
    assert DistillLoss(_cfg(schedule="simultaneous", kd_weight=0.0), 4).needed_teachers(0) == {"st"}
    assert teachers_in_use(_cfg(schedule="reverse", pt_fraction=1.0)) == {"pt"}


def test_missing_teacher_output_is_an_error():
    loss_fn = DistillLoss(_cfg(schedule="orderly"), 10)
    with pytest.raises(ValueError, match="needed_teachers"):
        loss_fn({"heatmaps": _hm(0)}, _gt(), {"pt": None, "st": _teachers()["st"]}, 0)


def test_shape_mismatch_is_reported():
    loss_fn = DistillLoss(_cfg(schedule="pt_only"), 10)
    t = {"pt": {"heatmaps": torch.zeros(N, K, H // 2, W // 2)}}
    with pytest.raises(ValueError, match="heatmap size"):
        loss_fn({"heatmaps": _hm(0)}, _gt(), t, 0)


def test_student_without_mask_skips_seg_with_a_warning():
    loss_fn = DistillLoss(_cfg(schedule="st_only"), 10)
    with pytest.warns(UserWarning, match="student has no mask"):
        _, logs = loss_fn({"heatmaps": _hm(0)}, _gt(), _teachers(), 0)
    assert logs["st_seg"] == 0.0 and logs["gt_mask"] == 0.0


def test_gradient_reaches_student_not_teacher_outputs():
    t = _teachers()
    t["st"]["heatmaps"].requires_grad_(True)
    student = {"heatmaps": _hm(6).requires_grad_(True), "mask": _logits(7).requires_grad_(True)}
    loss, _ = DistillLoss(_cfg(schedule="st_only"), 10)(student, _gt(), t, 0)
    loss.backward()
    assert student["heatmaps"].grad is not None and student["mask"].grad is not None
    assert t["st"]["heatmaps"].grad is None
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("kw,field", [
    (dict(binarize_targets=["student"]), "distill.binarize_targets"),
    (dict(binarize_mode="soft"), "distill.binarize_mode"),
    (dict(kd_weight=-1.0), "distill.kd_weight"),
    (dict(fpd_alpha=2.0), "distill.fpd_alpha"),
    (dict(schedule="random"), "distill.schedule"),
    (dict(method="kd"), "distill.method"),
])
def test_invalid_config_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        DistillLoss(DistillConfig(**kw), 10)
