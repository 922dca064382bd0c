"""Which teacher teaches at which epoch.

The paper's point is the *order*: the student first imitates the primary teacher (PT, weaker,
closer to the student's capacity), then the senior teacher (ST, stronger, with a segmentation
output). The other schedules exist for the ablation:

==============  =========================================================================
orderly         PT for epochs ``< switch``, then ST (``switch = round(pt_fraction*total)``)
reverse         ST first, then PT for the *last* ``switch`` epochs (same PT share as orderly)
simultaneous    both teachers at every epoch, 0.5 each (see below)
pt_only         PT at every epoch
st_only         ST at every epoch
none            no teacher (ground truth only: the "scratch" student)
fpd             one teacher (``fpd_teacher``: pt | st) at every epoch, FPD's loss mix
==============  =========================================================================

``simultaneous`` gives each teacher 0.5, i.e. the student imitates the average of the two
teachers' losses: the total teacher weight is then 1 at every epoch, as in every other schedule,
so the ablation compares *ordering* and not *amount* of distillation.

Rounding is half up (``floor(x + 0.5)``), not Python's banker's ``round``, so that e.g.
``pt_fraction=0.5`` over 5 epochs gives PT 3 epochs rather than a surprising 2.
"""
from __future__ import annotations

import math

from odkd.config import ConfigError

SCHEDULES: tuple[str, ...] = ("orderly", "reverse", "simultaneous", "pt_only", "st_only",
                              "none", "fpd")
TEACHERS: tuple[str, ...] = ("pt", "st")


def check_schedule(schedule: str, pt_fraction: float = 0.5, fpd_teacher: str = "pt") -> None:
    """Raise :class:`ConfigError` naming the ``distill.*`` field when a setting is invalid."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"distill.schedule: unknown schedule {schedule!r}; "
                          f"choose one of {list(SCHEDULES)}")
    if not 0.0 <= pt_fraction <= 1.0:
        raise ConfigError(f"distill.pt_fraction: expected a value in [0, 1], got {pt_fraction!r}")
    if schedule == "fpd" and fpd_teacher not in TEACHERS:
        raise ConfigError(f"distill.fpd_teacher: expected one of {list(TEACHERS)}, "
                          f"got {fpd_teacher!r}")


def switch_epoch(total_epochs: int, pt_fraction: float) -> int:
    """Number of epochs the PT teaches in orderly/reverse (rounded half up)."""
    return int(math.floor(pt_fraction * total_epochs + 0.5))


def teacher_weights(schedule: str, epoch: int, total_epochs: int, pt_fraction: float,
                    fpd_teacher: str = "pt") -> tuple[float, float]:
    """``(w_pt, w_st)``: how much each teacher counts at ``epoch`` (0-based).

    Epochs at or past ``total_epochs`` (e.g. extra fine-tuning) keep the last phase's weights.
    """
    check_schedule(schedule, pt_fraction, fpd_teacher)
    if total_epochs < 1:
        raise ConfigError(f"train.epochs: expected >= 1, got {total_epochs!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    switch = switch_epoch(total_epochs, pt_fraction)
    if schedule == "orderly":
        return (1.0, 0.0) if epoch < switch else (0.0, 1.0)
    if schedule == "reverse":
        return (0.0, 1.0) if epoch < total_epochs - switch else (1.0, 0.0)
    if schedule == "simultaneous":
        return (0.5, 0.5)
    if schedule == "pt_only":
        return (1.0, 0.0)
    if schedule == "st_only":
        return (0.0, 1.0)
    if schedule == "fpd":
        return (1.0, 0.0) if fpd_teacher == "pt" else (0.0, 1.0)
    return (0.0, 0.0)  # none


def schedule_teachers(schedule: str, pt_fraction: float = 0.5, fpd_teacher: str = "pt"
                      ) -> set[str]:
    """Teachers the schedule uses at *some* epoch, whatever the number of epochs.

    Used to decide which checkpoints must be given before training starts. For orderly/reverse
    a teacher with a zero share (pt_fraction 0 or 1) is not needed.
    """
    check_schedule(schedule, pt_fraction, fpd_teacher)
    if schedule in ("orderly", "reverse"):
        used = set()
        if pt_fraction > 0.0:
            used.add("pt")
        if pt_fraction < 1.0:
            used.add("st")
        return used
    return {"simultaneous": {"pt", "st"}, "pt_only": {"pt"}, "st_only": {"st"}, "none": set(),
            "fpd": {fpd_teacher}}[schedule]


def describe_schedule(schedule: str, total_epochs: int, pt_fraction: float,
                      fpd_teacher: str = "pt") -> str:
    """One line for logs, e.g. ``orderly: PT epochs 0-4, ST epochs 5-9``."""
    if total_epochs < 1:
        raise ConfigError(f"train.epochs: expected >= 1, got {total_epochs!r}")
    # Walk the epochs and group equal weights: one code path for every schedule, and the
    # description cannot drift from what teacher_weights actually does.
    phases: list[tuple[int, int, tuple[float, float]]] = []
    for epoch in range(total_epochs):
        w = teacher_weights(schedule, epoch, total_epochs, pt_fraction, fpd_teacher)
        if phases and phases[-1][2] == w:
            phases[-1] = (phases[-1][0], epoch, w)
        else:
            phases.append((epoch, epoch, w))
    parts = []
    for start, end, (w_pt, w_st) in phases:
        who = [f"{name}" + ("" if w == 1.0 else f"x{w:g}")
               for name, w in (("PT", w_pt), ("ST", w_st)) if w > 0]
        span = f"epoch {start}" if start == end else f"epochs {start}-{end}"
        parts.append(f"{' + '.join(who) or 'GT only'} {span}")
    extra = f" (teacher {fpd_teacher.upper()})" if schedule == "fpd" else ""
    return f"{schedule}{extra}: " + ", ".join(parts)
