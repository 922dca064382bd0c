"""Real teachers: public CPU pose models (MoveNet, BlazePose) behind one teacher interface.

``get_teacher(name)(image, centers, scales, rotations, codec)`` -> keypoints, heatmaps and (for
mask teachers) a person mask in the student's heatmap frame (:mod:`odkd.teachers.base`).
Models are fetched once into a cache by ``odkd teachers fetch`` (:mod:`odkd.teachers.store`).
This package sits beside :mod:`odkd.models`: it imports only errors, utils, config, geometry,
keypoints and codec.
"""
from odkd.teachers.base import CompositeTeacher, Teacher, render_heatmaps, teacher_scale
from odkd.teachers.registry import TEACHERS, get_teacher

__all__ = ["CompositeTeacher", "Teacher", "TEACHERS", "get_teacher", "render_heatmaps",
           "teacher_scale"]
