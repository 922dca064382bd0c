"""Orderly Dual-Teacher Knowledge Distillation (Zhao et al., arXiv 2104.10414), in four files.

Read them in this order:

* ``schedule.py`` -- which teacher teaches at which training step: the primary teacher (PT, weaker)
  first, then the senior teacher (ST, stronger, with a segmentation output) = "orderly";
* ``binarize.py`` -- cut target heatmaps at ``tau * peak`` to drop the teachers' noise;
* ``losses.py`` -- ground truth + PT keypoint imitation + ST keypoint and mask imitation
  (and the FPD single-teacher baseline);
* ``teachers.py`` -- frozen teachers: eval mode, no grad, bf16 autocast on GPU.

Real teachers (MoveNet, BlazePose, ... of :mod:`odkd.teachers`) on images without labels add
three: ``cache.py`` (their outputs, computed once per augmented view and kept on disk),
``views.py`` (training samples with confidence-weighted targets) and ``real.py`` (the training
set a run gets from both).

A training step is then::

    needed = loss_fn.needed_teachers(step)           # skip teachers with zero weight
    t_out = run_teachers(teachers, images, needed)
    loss, logs = loss_fn(student(images), batch, t_out, step)
"""
from odkd.distill.binarize import BINARIZE_MODES, binarize
from odkd.distill.losses import DistillLoss, mask_kl, teachers_in_use
from odkd.distill.schedule import SCHEDULES, describe_schedule, teacher_weights
from odkd.distill.teachers import FrozenTeacher, load_teachers, run_teachers

__all__ = [
    "BINARIZE_MODES", "SCHEDULES", "DistillLoss", "FrozenTeacher", "binarize",
    "describe_schedule", "load_teachers", "mask_kl", "run_teachers", "teacher_weights",
    "teachers_in_use",
]
