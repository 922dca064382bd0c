"""Real teachers: public CPU pose models (MoveNet, BlazePose) behind one teacher interface.

``get_teacher(name)(image, centers, scales, rotations, codec)`` -> keypoints, heatmaps and (for
mask teachers) a person mask in the student's heatmap frame (:mod:`odkd.teachers.base`).
Models are fetched once into a cache by ``odkd teachers fetch`` (:mod:`odkd.teachers.store`).
An odkd checkpoint (:mod:`odkd.teachers.checkpoint`, odkd's own crop and codec) and a user's
ONNX model described by a YAML file (:mod:`odkd.teachers.onnx_yaml`) give the same call.
This package sits above :mod:`odkd.models` and :mod:`odkd.data` (layer 4), which only the
checkpoint backend imports.
"""
from odkd.teachers.base import CompositeTeacher, Teacher, render_heatmaps, teacher_scale
from odkd.teachers.registry import TEACHERS, get_teacher

__all__ = ["CompositeTeacher", "Teacher", "TEACHERS", "get_teacher", "render_heatmaps",
           "teacher_scale"]
