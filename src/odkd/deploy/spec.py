"""PoseSpec: everything a deployed pose model needs besides its weights, and loading a model
(odkd/foreign checkpoint for PyTorch, or an exported ONNX file for onnxruntime) with its spec.

The spec travels inside exported ONNX files as ``metadata_props`` (string key/values, prefixed
``odkd.``), so ``odkd infer`` and ``odkd eval --backend onnxruntime`` need no extra flags.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from odkd.config import Config, load_config
from odkd.data.keypoints import COCO_KEYPOINTS, COCO_SKELETON, flip_pairs_from_names
from odkd.errors import CheckpointError, OdkdError

META_PREFIX = "odkd."
BACKENDS = ("torch", "onnxruntime")


@dataclass
class PoseSpec:
    name: str                               # architecture, e.g. "hrnet_w32"
    num_joints: int
    with_mask: bool
    input_size: tuple[int, int]             # (width, height) of the network input
    heatmap_stride: int = 4
    keypoint_names: list[str] = field(default_factory=list)
    flip_pairs: list[list[int]] = field(default_factory=list)
    skeleton: list[list[int]] = field(default_factory=list)   # 1-based pairs, as in COCO json
    config: dict[str, Any] = field(default_factory=dict)      # training config (no distill part)

    def to_metadata(self) -> dict[str, str]:
        """``odkd.*`` string properties for an ONNX file."""
        values = {
            "name": self.name, "num_joints": self.num_joints, "with_mask": self.with_mask,
            "input_size": list(self.input_size), "heatmap_stride": self.heatmap_stride,
            "keypoint_names": self.keypoint_names, "flip_pairs": self.flip_pairs,
            "skeleton": self.skeleton, "config": self.config,
        }
        out = {META_PREFIX + k: json.dumps(v) for k, v in values.items()}
        out[META_PREFIX + "format_version"] = "1"
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> "PoseSpec":
        """Inverse of :meth:`to_metadata`; CheckpointError naming the field when one is bad."""
        if META_PREFIX + "name" not in meta:
            raise CheckpointError(f"{source}: not an odkd ONNX export (no 'odkd.name' metadata); "
                                  "export it with `odkd export`")

        def get(key: str, typ: type, default: Any = None) -> Any:
            raw = meta.get(META_PREFIX + key)
            if raw is None:
                if default is not None:
                    return default
                raise CheckpointError(f"{source}: metadata field odkd.{key} is missing")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise CheckpointError(f"{source}: metadata field odkd.{key} is not JSON") from None
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                raise CheckpointError(f"{source}: metadata field odkd.{key} should be "
                                      f"{typ.__name__}, got {value!r}")
            return value

        size = get("input_size", list)
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise CheckpointError(f"{source}: metadata field odkd.input_size must be "
                                  f"[width, height], got {size!r}")
        spec = cls(name=get("name", str), num_joints=get("num_joints", int),
                   with_mask=get("with_mask", bool), input_size=(size[0], size[1]),
                   heatmap_stride=get("heatmap_stride", int, 4),
                   keypoint_names=get("keypoint_names", list, []),
                   flip_pairs=get("flip_pairs", list, []), skeleton=get("skeleton", list, []),
                   config=get("config", dict, {}))
        for a, b in spec.flip_pairs:
            if not (0 <= a < spec.num_joints and 0 <= b < spec.num_joints):
                raise CheckpointError(f"{source}: metadata field odkd.flip_pairs has pair "
                                      f"[{a}, {b}] outside 0..{spec.num_joints - 1}")
        return spec

    def eval_config(self, path: str | None = None, overrides: list[str] | tuple = ()) -> Config:
        """The stored training config (or, like ``odkd eval`` with a checkpoint, the config file
        ``path`` instead) with ``overrides``, at this model's input size and joints."""
        base = None if path else {k: v for k, v in self.config.items() if k != "distill"}
        cfg = load_config(path, list(overrides), base=base)
        if path and list(cfg.data.input_size) != list(self.input_size):
            raise OdkdError(f"{path}: data.input_size {list(cfg.data.input_size)} differs from the "
                            f"exported model's fixed input size {list(self.input_size)}")
        cfg.data.input_size = list(self.input_size)
        cfg.data.heatmap_stride = self.heatmap_stride
        cfg.data.flip_pairs = [list(p) for p in self.flip_pairs]
        cfg.model.name, cfg.model.num_joints = self.name, self.num_joints
        cfg.model.with_mask = self.with_mask
        return cfg


def default_keypoints(num_joints: int) -> tuple[list[str], list[list[int]]]:
    """(names, 1-based skeleton): COCO's for 17 joints, generic names and no skeleton otherwise."""
    if num_joints == len(COCO_KEYPOINTS):
        return list(COCO_KEYPOINTS), [list(p) for p in COCO_SKELETON]
    return [f"kpt_{i}" for i in range(num_joints)], []


def spec_for_model(model, cfg: Config | None = None,
                   input_size: tuple[int, int] | list[int] | None = None) -> PoseSpec:
    """Spec of a built odkd model; settings from ``cfg`` (default config when None)."""
    cfg = cfg or Config()
    names, skeleton = default_keypoints(int(model.num_joints))
    pairs = cfg.data.flip_pairs if cfg.data.flip_pairs is not None else \
        flip_pairs_from_names(names)
    size = tuple(int(v) for v in (input_size or cfg.data.input_size))
    config = {k: v for k, v in cfg.to_dict().items() if k != "distill"}
    config["data"]["input_size"] = list(size)
    config["model"].update(name=str(model.odkd_name), num_joints=int(model.num_joints),
                           with_mask=bool(model.with_mask))
    return PoseSpec(name=str(model.odkd_name), num_joints=int(model.num_joints),
                    with_mask=bool(model.with_mask), input_size=(size[0], size[1]),
                    heatmap_stride=int(cfg.data.heatmap_stride), keypoint_names=names,
                    flip_pairs=[list(p) for p in pairs], skeleton=skeleton, config=config)


def checkpoint_config(path: str, config: str | None = None,
                      overrides: list[str] | tuple = ()) -> Config:
    """The settings a model from ``path`` runs with: the config stored in an odkd training
    checkpoint (its distill part dropped: teachers play no part in using a model), or the
    config file ``config`` instead, then ``overrides``; defaults when neither exists.

    This is the one place a config is rebuilt from a checkpoint (``odkd.load``, ``odkd
    infer``, ``odkd eval``, ``odkd export``, ``odkd bench infer``)."""
    from odkd.config import ConfigError
    from odkd.models.checkpoint import read_checkpoint

    base = None
    if not config:
        obj = read_checkpoint(path)
        if isinstance(obj, dict) and obj.get("format") == "odkd" \
                and isinstance(obj.get("config"), dict):
            base = {k: v for k, v in obj["config"].items() if k != "distill"}
        del obj  # the model is built from a second read; do not hold two copies
    try:
        return load_config(config, list(overrides), base=base)
    except ConfigError as e:
        if base is None:
            raise
        raise ConfigError(f"{path}: stored config: {e}") from None


def _torch_pose(path: str, name: str | None, input_size, verbose: bool, config: str | None,
                overrides) -> tuple[Any, PoseSpec, Config]:
    from odkd.models.checkpoint import build_from_checkpoint

    cfg = checkpoint_config(path, config, overrides)
    model = build_from_checkpoint(path, name=name, verbose=verbose).eval()
    spec = spec_for_model(model, cfg, input_size)
    cfg.data.input_size = list(spec.input_size)
    cfg.model.name, cfg.model.num_joints = spec.name, spec.num_joints
    cfg.model.with_mask = spec.with_mask
    return model, spec, cfg


def load_torch_model(path: str, name: str | None = None,
                     input_size: tuple[int, int] | list[int] | None = None,
                     verbose: bool = False):
    """(model in eval mode, PoseSpec) from any checkpoint ``odkd eval`` reads; the settings come
    from the config stored in odkd training checkpoints (defaults otherwise)."""
    model, spec, _ = _torch_pose(path, name, input_size, verbose, None, ())
    return model, spec


def resolve_backend(path: str, backend: str | None) -> str:
    """``backend`` or, when None, 'onnxruntime' for ``.onnx`` files and 'torch' otherwise."""
    if backend is None:
        return "onnxruntime" if path.lower().endswith(".onnx") else "torch"
    if backend not in BACKENDS:
        raise OdkdError(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    if backend == "torch" and path.lower().endswith(".onnx"):
        raise OdkdError(f"{path}: an ONNX file needs --backend onnxruntime")
    return backend


@dataclass
class LoadedPose:
    model: Any              # eval-mode torch module or OrtPoseModel: images -> {"heatmaps", ...}
    spec: PoseSpec
    cfg: Config             # eval settings (flip test, decoder, padding, NMS) at the model's size
    device: Any             # torch.device the inputs go to
    codec: Any = None       # HeatmapCodec of ``cfg`` (filled in when None)

    def __post_init__(self) -> None:
        if self.codec is None:
            from odkd.codec import HeatmapCodec   # odkd.codec imports torch: on use only

            self.codec = HeatmapCodec.from_config(self.cfg)


def load_pose(path: str, backend: str | None = None, device: str | None = "auto",
              name: str | None = None, input_size=None, threads: int | None = None,
              config: str | None = None, overrides: list[str] | tuple = (),
              verbose: bool = False) -> LoadedPose:
    """Checkpoint (odkd / official HRNet / mmpose, or an ``odkd export`` ONNX file) -> model,
    spec and eval config, for ``odkd.load``, ``odkd infer`` and ``odkd eval``.

    ``device`` None takes ``train.device`` of the config. ``threads`` sets torch's intra-op
    threads (process-wide, as the CLI's --threads) or onnxruntime's."""
    from odkd.utils import pick_device

    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    if threads is not None and threads < 1:
        raise OdkdError(f"threads must be >= 1, got {threads}")
    if resolve_backend(path, backend) == "onnxruntime":
        from odkd.deploy.ort_model import OrtPoseModel

        model = OrtPoseModel(path, threads=threads, device=device or "cpu")
        if input_size is not None and tuple(input_size) != tuple(model.spec.input_size):
            raise OdkdError(f"{path}: exported for input size {list(model.spec.input_size)}, "
                            f"--input-size {list(input_size)} was given; re-export instead")
        cfg = model.spec.eval_config(config, overrides)
        cfg.train.amp = cfg.eval.amp = "none"   # autocast has no meaning for onnxruntime
        # Inputs are handed to onnxruntime as numpy arrays, so they are prepared on the CPU.
        return LoadedPose(model, model.spec, cfg, pick_device("cpu"))
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    model, spec, cfg = _torch_pose(path, name, input_size, verbose, config, overrides)
    dev = pick_device(device or cfg.train.device)
    return LoadedPose(model.to(dev), spec, cfg, dev)
