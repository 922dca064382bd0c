"""The distillation loss: ground truth + primary-teacher + senior-teacher terms.

With ``(w_pt, w_st)`` from :func:`odkd.distill.schedule.teacher_weights` at this training step, ``S``
the student heatmaps, ``B(.)`` the configured binarization and ``MSE`` HRNet's target-weighted
``joints_mse``, ``distill.method`` picks the formula::

    odkd:  loss = gt_weight  * MSE(S, B_gt(GT))                     ground truth
                + kd_weight  * w_pt * MSE(S, B_t(PT))               PT keypoint imitation
                + kd_weight  * w_st * MSE(S, B_t(ST))               ST keypoint imitation
                + seg_weight * w_st * KL(sigmoid(ST mask) || sigmoid(student mask))  ST seg
                + mask_loss_weight * BCE(student mask, GT mask)     GT mask (train.mask_loss_weight)

    fpd:   loss = (1 - fpd_alpha) * MSE(S, B_gt(GT))
                + fpd_alpha * (w_pt * MSE(S, B_t(PT)) + w_st * MSE(S, B_t(ST)))

The schedule only says when each teacher teaches: FPD as published is ``method=fpd`` with
``schedule=pt_only`` (or ``st_only``).

Choices, and why:

* **Target weighting.** Every keypoint term uses the GT ``target_weight``: a teacher's heatmap
  for a joint without annotation (weight 0) is ignored. It is the same HRNet loss as the GT
  term, and it stops the student from copying a teacher on joints nobody can check (often
  outside the crop, or cut away by half-body augmentation). A real teacher's output carries
  its own ``target_weight`` (its per-joint confidence, :mod:`odkd.distill.views`), used instead.
* **Segmentation imitation** is the per-pixel binary KL divergence
  ``BCE(p_s, p_t) - H(p_t)`` with ``p = sigmoid(logits)``. Its gradient for the student is the
  one of plain BCE against the soft teacher mask, but its value is 0 exactly when the student's
  probabilities equal the teacher's, so "loss 0 = student matches teacher" holds (plain BCE
  would bottom out at the teacher's entropy). It is not weighted by ``mask_weight``: the ST
  supplies a mask for every crop, including people without a segmentation annotation, which is
  what makes it useful. It is added only when both the student and the ST output a mask.
* **GT mask.** When the student has a mask head and the batch carries a GT mask, the
  ``mask_bce`` against it (``mask_weight`` zeroes crops without annotation) is added at every
  step with ``train.mask_loss_weight``, the weight supervised training gives it too (one knob,
  one default). The head then learns from the start (during the PT phase of the orderly
  schedule too). The "no segmentation" ablation is a student without a mask head
  (``model.with_mask=false``) and ``seg_weight=0``.
* **FPD** (Fast Pose Distillation, the single-teacher baseline) is kept exactly as published:
  keypoints only, no mask terms, and ``gt_weight``/``kd_weight`` are not used.
* **Binarization** applies as configured in every schedule (``binarize_targets`` lists
  ``gt`` and/or ``teacher``; ``binarize_mode`` none|hard|mask; ``binarize_tau``).
* Teacher outputs are detached: the teachers can never receive a gradient through this loss.

Logged values are the *unweighted* terms (``gt_kpt``, ``gt_mask``, ``pt_kpt``, ``st_kpt``,
``st_seg``; 0 when a term is inactive) plus ``loss`` (the weighted total) and ``w_pt``/``w_st``;
the keys are the same at every step so logs line up in CSV files.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from odkd.config import ConfigError, DistillConfig, TrainConfig
from odkd.distill.binarize import binarize, check_binarize
from odkd.distill.schedule import (check_schedule, describe_schedule, schedule_teachers,
                                   teacher_weights)
from odkd.losses import joints_mse, mask_bce

BINARIZE_TARGETS: tuple[str, ...] = ("gt", "teacher")
LOSS_METHODS: tuple[str, ...] = ("odkd", "fpd")
LOG_KEYS: tuple[str, ...] = ("loss", "gt_kpt", "gt_mask", "pt_kpt", "st_kpt", "st_seg",
                             "w_pt", "w_st")


def check_distill_config(cfg: DistillConfig) -> None:
    """Validate every ``distill.*`` field this package reads; errors name the field."""
    if cfg.method not in LOSS_METHODS:
        raise ConfigError(f"distill.method: unknown {cfg.method!r}; choose one of "
                          f"{list(LOSS_METHODS)}")
    check_schedule(cfg.schedule, cfg.pt_fraction)
    check_binarize(cfg.binarize_mode, cfg.binarize_tau)
    bad = [t for t in cfg.binarize_targets if t not in BINARIZE_TARGETS]
    if bad:
        raise ConfigError(f"distill.binarize_targets: unknown target(s) {bad}; "
                          f"valid: {list(BINARIZE_TARGETS)}")
    for name in ("gt_weight", "kd_weight", "seg_weight"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"distill.{name}: expected >= 0, got {getattr(cfg, name)!r}")
    if not 0.0 <= cfg.fpd_alpha <= 1.0:
        raise ConfigError(f"distill.fpd_alpha: expected a value in [0, 1], got {cfg.fpd_alpha!r}")


def _active_teachers(cfg: DistillConfig, w_pt: float, w_st: float) -> set[str]:
    """Teachers whose output changes the loss, given the schedule weights."""
    if cfg.method == "fpd":
        return {t for t, w in (("pt", w_pt), ("st", w_st)) if w > 0 and cfg.fpd_alpha > 0}
    active = set()
    if w_pt > 0 and cfg.kd_weight > 0:
        active.add("pt")
    if w_st > 0 and (cfg.kd_weight > 0 or cfg.seg_weight > 0):
        active.add("st")
    return active


def teachers_in_use(cfg: DistillConfig) -> set[str]:
    """Teachers needed at some step (their checkpoints must be given before training)."""
    check_distill_config(cfg)
    used = schedule_teachers(cfg.schedule, cfg.pt_fraction)
    return _active_teachers(cfg, 1.0 if "pt" in used else 0.0, 1.0 if "st" in used else 0.0)


def mask_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean per-pixel binary KL(p_t || p_s) from logits; 0 iff the probabilities match.

    Computed as ``BCE(z_s, p_t) - BCE(z_t, p_t)`` (the second term is the entropy H(p_t)), both
    with the numerically stable ``binary_cross_entropy_with_logits``. ``weight`` (N,): per-crop
    weights (0 for a crop the teacher did not see, e.g. a labelled person mixed into real
    views); the mean stays over all crops, as the keypoint terms' does.
    """
    z_s = student_logits.float()
    z_t = teacher_logits.detach().float()
    p_t = torch.sigmoid(z_t)
    kl = (F.binary_cross_entropy_with_logits(z_s, p_t, reduction="none")
          - F.binary_cross_entropy_with_logits(z_t, p_t, reduction="none"))
    if weight is None:
        return kl.mean()
    return (kl.flatten(1).mean(1) * weight.reshape(-1).float()).mean()


def _check_shape(what: str, got: torch.Tensor, want: torch.Tensor) -> None:
    if got.shape != want.shape:
        raise ValueError(f"{what} has shape {tuple(got.shape)} but the student output has "
                         f"{tuple(want.shape)}; teacher, student and targets must share the "
                         f"heatmap size (same input_size and heatmap_stride)")


class DistillLoss:
    """Callable loss for one distillation run; see the module docstring for the terms.

    ``total_steps`` is the run's number of training iterations (the schedule's unit). The
    training loop knows it only once the data is loaded, so it may be given later through
    :meth:`set_total_steps`. ``mask_loss_weight`` weights the GT mask BCE
    (``train.mask_loss_weight``, whose default it shares).
    """

    def __init__(self, cfg: DistillConfig, total_steps: int | None = None,
                 mask_loss_weight: float = TrainConfig.mask_loss_weight) -> None:
        check_distill_config(cfg)
        if not mask_loss_weight >= 0:
            raise ConfigError(f"train.mask_loss_weight: expected >= 0, got {mask_loss_weight!r}")
        self.cfg = cfg
        self.mask_loss_weight = float(mask_loss_weight)
        self.total_steps = None
        if total_steps is not None:
            self.set_total_steps(total_steps)
        self.bin_gt = cfg.binarize_mode != "none" and "gt" in cfg.binarize_targets
        self.bin_teacher = cfg.binarize_mode != "none" and "teacher" in cfg.binarize_targets
        self._warned_no_mask = False

    def set_total_steps(self, total_steps: int) -> None:
        if total_steps < 1:
            raise ConfigError(f"training steps (train.epochs x steps per epoch): expected >= 1, "
                              f"got {total_steps!r}")
        self.total_steps = int(total_steps)

    def describe(self, steps_per_epoch: int = 0) -> str:
        """One log line: which teacher teaches at which steps."""
        c = self.cfg
        text = describe_schedule(c.schedule, self._total(), c.pt_fraction, steps_per_epoch)
        return f"FPD (alpha {c.fpd_alpha:g}), {text}" if c.method == "fpd" else text

    def _total(self) -> int:
        if self.total_steps is None:
            raise RuntimeError("DistillLoss: call set_total_steps() before training")
        return self.total_steps

    def weights(self, step: int) -> tuple[float, float]:
        """``(w_pt, w_st)`` at training ``step`` (0-based global iteration)."""
        c = self.cfg
        return teacher_weights(c.schedule, step, self._total(), c.pt_fraction)

    def needed_teachers(self, step: int) -> set[str]:
        """Teachers to run at this step; the others contribute nothing, so skip their forward."""
        return _active_teachers(self.cfg, *self.weights(step))

    @staticmethod
    def _teacher_weight(out: dict, tw: torch.Tensor) -> torch.Tensor:
        """A real teacher's own per-joint weights (its confidence, :mod:`odkd.distill.views`)
        where it gives them, else the GT ``target_weight``."""
        w = out.get("target_weight")
        return tw if w is None else w

    def _teacher_heatmaps(self, name: str, out: dict, student_hm: torch.Tensor) -> torch.Tensor:
        hm = out["heatmaps"].detach().float()
        _check_shape(f"teacher {name!r} heatmaps", hm, student_hm)
        if self.bin_teacher:
            hm = binarize(hm, self.cfg.binarize_mode, self.cfg.binarize_tau)
        return hm

    def __call__(self, student_out: dict, gt: dict, teacher_out: dict | None,
                 step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """``(loss, logs)`` for one batch.

        student_out: ``{"heatmaps", optional "mask"}``; gt: ``{"heatmap", "target_weight",
        optional "mask", "mask_weight"}``; teacher_out: ``{"pt": dict | None, "st": dict | None}``
        (only the teachers in ``needed_teachers(step)`` are required).
        """
        c = self.cfg
        teacher_out = teacher_out or {}
        s_hm = student_out["heatmaps"]
        s_mask = student_out.get("mask")
        tw = gt["target_weight"]
        gt_hm = gt["heatmap"]
        _check_shape("GT heatmap", gt_hm, s_hm)
        if self.bin_gt:
            gt_hm = binarize(gt_hm, c.binarize_mode, c.binarize_tau)
        w_pt, w_st = self.weights(step)
        active = _active_teachers(c, w_pt, w_st)
        missing = sorted(t for t in active if teacher_out.get(t) is None)
        if missing:
            raise ValueError(f"teacher(s) {missing} needed at step {step} (schedule "
                             f"{c.schedule!r}) but their output is missing; run the teachers "
                             f"listed by needed_teachers(step)")
        zero = s_hm.new_zeros((), dtype=torch.float32)
        terms = {k: zero for k in ("gt_kpt", "gt_mask", "pt_kpt", "st_kpt", "st_seg")}

        terms["gt_kpt"] = joints_mse(s_hm, gt_hm, tw)
        if c.method == "fpd":
            loss = (1.0 - c.fpd_alpha) * terms["gt_kpt"]
            for t, w in (("pt", w_pt), ("st", w_st)):
                if t in active:
                    t_hm = self._teacher_heatmaps(t, teacher_out[t], s_hm)
                    terms[f"{t}_kpt"] = joints_mse(s_hm, t_hm,
                                                   self._teacher_weight(teacher_out[t], tw))
                    loss = loss + c.fpd_alpha * w * terms[f"{t}_kpt"]
        else:
            loss = c.gt_weight * terms["gt_kpt"]
            if s_mask is not None and gt.get("mask") is not None and self.mask_loss_weight > 0:
                terms["gt_mask"] = mask_bce(s_mask, gt["mask"], gt.get("mask_weight"))
                loss = loss + self.mask_loss_weight * terms["gt_mask"]
            if "pt" in active:  # implies kd_weight > 0
                t_hm = self._teacher_heatmaps("pt", teacher_out["pt"], s_hm)
                terms["pt_kpt"] = joints_mse(s_hm, t_hm,
                                             self._teacher_weight(teacher_out["pt"], tw))
                loss = loss + c.kd_weight * w_pt * terms["pt_kpt"]
            if "st" in active:
                st = teacher_out["st"]
                if c.kd_weight > 0:
                    t_hm = self._teacher_heatmaps("st", st, s_hm)
                    terms["st_kpt"] = joints_mse(s_hm, t_hm, self._teacher_weight(st, tw))
                    loss = loss + c.kd_weight * w_st * terms["st_kpt"]
                st_mask = st.get("mask")
                if c.seg_weight > 0 and s_mask is not None and st_mask is not None:
                    _check_shape("senior teacher mask", st_mask, s_mask)
                    terms["st_seg"] = mask_kl(s_mask, st_mask, st.get("mask_weight"))
                    loss = loss + c.seg_weight * w_st * terms["st_seg"]
                elif c.seg_weight > 0 and not self._warned_no_mask:
                    # Allowed (e.g. a student without mask head), but easy to do by mistake.
                    self._warned_no_mask = True
                    who = "student" if s_mask is None else "senior teacher"
                    warnings.warn(f"distill.seg_weight={c.seg_weight} but the {who} has no mask "
                                  f"output: segmentation imitation is skipped", stacklevel=2)

        # Detached device tensors: the training loop reads them once per log interval.
        values = [loss.detach().float()] + [terms[k].detach().float() for k in LOG_KEYS[1:6]]
        logs = dict(zip(LOG_KEYS[:6], values))
        logs["w_pt"], logs["w_st"] = w_pt, w_st
        return loss, logs
