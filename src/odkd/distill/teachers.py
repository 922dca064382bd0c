"""Frozen teachers: loaded once, never trained, cheap to run.

A teacher is an ordinary odkd model (trained by ``odkd train`` or converted from an official
checkpoint) wrapped in :class:`FrozenTeacher`: eval mode for good (BatchNorm keeps its running
statistics), no parameter requires a gradient, the forward runs under ``torch.no_grad`` and, on
CUDA, under bf16 autocast (about twice as fast; the outputs are only regression targets, so bf16
precision is plenty). Outputs always come back as float32. Because the statistics never change,
every BatchNorm that directly follows a convolution inside an ``nn.Sequential`` is folded into
that convolution once, at wrapping time (one op instead of two per layer: the teacher forward
runs 1.3x faster on CPU with channels_last, docs/performance.md; same outputs to ~1e-6).
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import nn

from odkd.config import ConfigError, DistillConfig, TeacherConfig
from odkd.distill.losses import teachers_in_use
from odkd.models.fold import fold_batchnorm


TEACHER_NAMES = {"pt": "primary teacher (PT)", "st": "senior teacher (ST)"}


class FrozenTeacher(nn.Module):
    """Wrap a pose model so that it can only be used for inference.

    ``train()`` is a no-op that keeps eval mode, so a training loop calling ``.train()`` on
    everything it holds cannot switch the teacher's BatchNorm/Dropout to training behaviour.
    """

    def __init__(self, model: nn.Module, amp: bool = True, fold_bn: bool = True) -> None:
        super().__init__()
        self.model = model
        # amp: bf16 autocast on CUDA; both off only for the naive baseline of bench train
        self.amp = amp
        super().train(False)
        self.folded_bn = fold_batchnorm(model) if fold_bn else 0
        self.model.requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)

    @property
    def with_mask(self) -> bool:
        return bool(getattr(self.model, "with_mask", False))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            if self.amp and images.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = self.model(images)
            else:
                out = self.model(images)
        return {k: v.float() for k, v in out.items()}


def _load_one(key: str, tc: TeacherConfig, device: torch.device | str) -> FrozenTeacher:
    from odkd.models.checkpoint import build_from_checkpoint  # lazy: keeps this module light

    field = f"distill.{key}.checkpoint"
    if not os.path.isfile(tc.checkpoint):
        raise ConfigError(f"{field}: file not found: {tc.checkpoint}")
    # with_mask is left to the checkpoint (odkd files record it, foreign ones are inspected) and
    # checked below, so a PT that happens to have a mask head still loads.
    model = build_from_checkpoint(tc.checkpoint, name=tc.model or None, with_mask=None)
    if tc.with_mask and not getattr(model, "with_mask", False):
        raise ConfigError(f"distill.{key}.with_mask: true, but {tc.checkpoint} holds a model "
                          f"without a mask output; give an ST trained with model.with_mask=true, "
                          f"or set distill.{key}.with_mask=false and distill.seg_weight=0")
    return FrozenTeacher(model).to(device)


def load_teachers(cfg: DistillConfig, device: torch.device | str
                  ) -> dict[str, FrozenTeacher | None]:
    """``{"pt": teacher or None, "st": teacher or None}`` for ``cfg``.

    A teacher the schedule (with its weights) never uses is not loaded, even if a checkpoint is
    given: it would only cost memory. A teacher it does use must have a checkpoint.
    """
    used = teachers_in_use(cfg)
    teachers: dict[str, FrozenTeacher | None] = {"pt": None, "st": None}
    for key in ("pt", "st"):
        tc: TeacherConfig = getattr(cfg, key)
        if key not in used:
            continue
        if not tc.checkpoint and tc.name:
            continue   # a real teacher: its outputs come with the batch (odkd.distill.real)
        if not tc.checkpoint:
            raise ConfigError(f"distill.{key}.checkpoint: schedule {cfg.schedule!r} uses the "
                              f"{TEACHER_NAMES[key]} but no checkpoint is given; set "
                              f"distill.{key}.checkpoint=PATH (train one with `odkd train`)")
        teachers[key] = _load_one(key, tc, device)
    return teachers


def run_teachers(teachers: dict[str, FrozenTeacher | None], images: torch.Tensor,
                 needed: Iterable[str], cached: dict | None = None
                 ) -> dict[str, dict[str, torch.Tensor] | None]:
    """Run only the ``needed`` teachers on ``images``; the others map to None.

    ``cached``: outputs of real teachers that came with the batch
    (:func:`odkd.distill.views.teacher_outputs_from_batch`). A needed teacher with no model is
    taken from there; one with both gets the model's heatmaps with the cached per-joint
    weights and mask (the model's own mask wins)."""
    needed = set(needed)
    cached = {k: v for k, v in (cached or {}).items() if v is not None}
    out: dict[str, dict[str, torch.Tensor] | None] = {
        k: cached.get(k) if k in needed else None for k in ("pt", "st")}
    for key in sorted(needed):
        teacher = teachers.get(key)
        if teacher is None and key in cached:
            continue
        if teacher is None:
            raise ValueError(f"teacher {key!r} is needed but was not loaded "
                             f"(loaded: {sorted(k for k, t in teachers.items() if t is not None)})")
        online = teacher(images)
        if key in cached:
            online = {**{k: v for k, v in cached[key].items() if k != "heatmaps"}, **online}
        out[key] = online
    return out
