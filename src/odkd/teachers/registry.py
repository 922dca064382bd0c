"""Built-in teachers by name."""
from __future__ import annotations

import os

from odkd.config import ConfigError
from odkd.teachers import store
from odkd.teachers.base import CompositeTeacher, Teacher
from odkd.teachers.runtime import make_runner


def _movenet(runner, **kw):
    from odkd.teachers.movenet import MoveNetCodec
    return MoveNetCodec(runner)


def _blazepose(runner, **kw):
    from odkd.teachers.blazepose import BlazePoseCodec
    return BlazePoseCodec(runner, **kw)


BUILDERS = {"movenet-lightning": _movenet, "movenet-thunder": _movenet,
            "movenet-lightning-onnx": _movenet, "blazepose-lite": _blazepose,
            "blazepose-full": _blazepose, "blazepose-heavy": _blazepose}
TEACHERS = tuple(BUILDERS)


def get_teacher(name: str, num_threads: int = 1, cache: str | None = None, **options):
    """A built-in teacher (``TEACHERS``; its model must have been fetched, ``odkd teachers
    fetch``), an odkd / official checkpoint (``checkpoint:PATH`` or ``*.pt``,
    :mod:`odkd.teachers.checkpoint`), a user's ONNX model described by a YAML file
    (``*.yaml``, :mod:`odkd.teachers.onnx_yaml`), or ``KEYPOINTS+MASK`` for a composite.
    ``options`` go to the model's codec (e.g. ``confidence=`` for BlazePose, ``model=`` for a
    foreign checkpoint)."""
    from odkd.teachers.checkpoint import checkpoint_teacher, is_checkpoint_name
    from odkd.teachers.onnx_yaml import is_yaml_name, yaml_teacher

    # a file whose name holds "+" is that file, not a composite
    if "+" in name and not os.path.exists(name.removeprefix("checkpoint:")):
        kp_name, mask_name = name.split("+", 1)
        kp = get_teacher(kp_name, num_threads, cache, **options)
        mask = kp if mask_name == kp_name else get_teacher(mask_name, num_threads, cache)
        return CompositeTeacher(keypoints=kp, mask=mask)
    if is_checkpoint_name(name):
        return checkpoint_teacher(name, num_threads, **options)
    if is_yaml_name(name):
        return yaml_teacher(name, num_threads)
    if name not in BUILDERS:
        raise ConfigError(f"unknown teacher {name!r}; built-in: {', '.join(TEACHERS)}; or "
                          "checkpoint:PATH, or a teacher YAML file (docs/teachers.md)")
    m = store.MODELS[name]
    runner = make_runner(store.model_path(name, cache), m.runtime, num_threads)
    return Teacher(name, BUILDERS[name](runner, **options))
