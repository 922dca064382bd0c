"""Which teacher teaches at which training step (iteration).

The paper's point is the *order*: the student first imitates the primary teacher (PT, weaker,
closer to the student's capacity), then the senior teacher (ST, stronger, with a segmentation
output). The other schedules exist for the ablation:

==============  =========================================================================
orderly         PT for steps ``< switch``, then ST (``switch = round(pt_fraction*total)``)
reverse         ST first, then PT for the *last* ``switch`` steps (same PT share as orderly)
simultaneous    both teachers at every step, 0.5 each (see below)
pt_only         PT at every step
st_only         ST at every step
none            no teacher (ground truth only: the "scratch" student)
==============  =========================================================================

The schedule is only the timing; the loss formula is ``distill.method`` (odkd or fpd), so the
FPD baseline is ``method=fpd`` with ``pt_only`` (or ``st_only``).

``simultaneous`` gives each teacher 0.5, i.e. the student imitates the average of the two
teachers' losses: the total teacher weight is then 1 at every step, as in every other schedule,
so the ablation compares *ordering* and not *amount* of distillation.

The unit is the global training iteration (``total`` = epochs x steps per epoch), not the
epoch: short schedules (a few epochs) can then put the PT-to-ST switch anywhere, and the
switch lands at the same point of training whatever the epoch length.

Rounding is half up (``floor(x + 0.5)``), not Python's banker's ``round``, so that e.g.
``pt_fraction=0.5`` over 5 steps gives PT 3 steps rather than a surprising 2.
"""
from __future__ import annotations

import math

from odkd.config import FPD_HINT, ConfigError

SCHEDULES: tuple[str, ...] = ("orderly", "reverse", "simultaneous", "pt_only", "st_only",
                              "none")
TEACHERS: tuple[str, ...] = ("pt", "st")


def check_schedule(schedule: str, pt_fraction: float = 0.5) -> None:
    """Raise :class:`ConfigError` naming the ``distill.*`` field when a setting is invalid."""
    if schedule == "fpd":
        raise ConfigError(f"distill.schedule: 'fpd' is no longer a schedule; {FPD_HINT}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"distill.schedule: unknown schedule {schedule!r}; "
                          f"choose one of {list(SCHEDULES)}")
    if not 0.0 <= pt_fraction <= 1.0:
        raise ConfigError(f"distill.pt_fraction: expected a value in [0, 1], got {pt_fraction!r}")


def switch_step(total_steps: int, pt_fraction: float) -> int:
    """Number of steps the PT teaches in orderly/reverse (rounded half up)."""
    return int(math.floor(pt_fraction * total_steps + 0.5))


def teacher_weights(schedule: str, step: int, total_steps: int, pt_fraction: float
                    ) -> tuple[float, float]:
    """``(w_pt, w_st)``: how much each teacher counts at training ``step`` (0-based iteration).

    Steps at or past ``total_steps`` (e.g. extra fine-tuning) keep the last phase's weights.
    """
    check_schedule(schedule, pt_fraction)
    if total_steps < 1:
        raise ConfigError(f"training steps (train.epochs x steps per epoch): expected >= 1, "
                          f"got {total_steps!r}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    switch = switch_step(total_steps, pt_fraction)
    if schedule == "orderly":
        return (1.0, 0.0) if step < switch else (0.0, 1.0)
    if schedule == "reverse":
        return (0.0, 1.0) if step < total_steps - switch else (1.0, 0.0)
    if schedule == "simultaneous":
        return (0.5, 0.5)
    if schedule == "pt_only":
        return (1.0, 0.0)
    if schedule == "st_only":
        return (0.0, 1.0)
    return (0.0, 0.0)  # none


def schedule_teachers(schedule: str, pt_fraction: float = 0.5) -> set[str]:
    """Teachers the schedule uses at *some* step, whatever the number of steps.

    Used to decide which checkpoints must be given before training starts. For orderly/reverse
    a teacher with a zero share (pt_fraction 0 or 1) is not needed.
    """
    check_schedule(schedule, pt_fraction)
    if schedule in ("orderly", "reverse"):
        used = set()
        if pt_fraction > 0.0:
            used.add("pt")
        if pt_fraction < 1.0:
            used.add("st")
        return used
    return {"simultaneous": {"pt", "st"}, "pt_only": {"pt"}, "st_only": {"st"},
            "none": set()}[schedule]


def describe_schedule(schedule: str, total_steps: int, pt_fraction: float,
                      steps_per_epoch: int = 0) -> str:
    """One line for logs, e.g. ``orderly: PT steps 0-499, ST steps 500-999``.

    With ``steps_per_epoch`` each span also says where it lies in epochs of training (``epochs
    0-4.5``: from the start to half-way through the fifth epoch).
    """
    if total_steps < 1:
        raise ConfigError(f"training steps (train.epochs x steps per epoch): expected >= 1, "
                          f"got {total_steps!r}")
    # The weights only change at 0, switch and total - switch: evaluate teacher_weights at
    # every candidate start and merge equal neighbours, so the text cannot drift from what
    # teacher_weights does (and long COCO schedules need no walk over a million steps).
    switch = switch_step(total_steps, pt_fraction)
    starts = sorted({0, switch, total_steps - switch} & set(range(total_steps)))
    phases: list[list] = []
    for k, start in enumerate(starts):
        end = (starts[k + 1] if k + 1 < len(starts) else total_steps) - 1
        w = teacher_weights(schedule, start, total_steps, pt_fraction)
        if phases and phases[-1][2] == w:
            phases[-1][1] = end
        else:
            phases.append([start, end, w])
    parts = []
    for start, end, (w_pt, w_st) in phases:
        who = [f"{name}" + ("" if w == 1.0 else f"x{w:g}")
               for name, w in (("PT", w_pt), ("ST", w_st)) if w > 0]
        span = f"step {start}" if start == end else f"steps {start}-{end}"
        if steps_per_epoch:
            span += f" (epochs {start / steps_per_epoch:g}-{(end + 1) / steps_per_epoch:g})"
        parts.append(f"{' + '.join(who) or 'GT only'} {span}")
    return f"{schedule}: " + ", ".join(parts)
