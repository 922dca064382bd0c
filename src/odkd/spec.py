"""PoseSpec: everything a deployed pose model needs besides its weights (input size, joints,
flip pairs, skeleton, the training config).

The spec travels inside exported ONNX files as ``metadata_props`` (string key/values, prefixed
``odkd.``), so ``odkd infer`` and ``odkd eval --backend onnxruntime`` need no extra flags.
Loading a model with its spec is :mod:`odkd.deploy.loader`'s job: this module stays below both
the loader and the onnxruntime model, which read specs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from odkd.config import Config, load_config
from odkd.errors import CheckpointError, OdkdError
from odkd.keypoints import COCO_KEYPOINTS, COCO_SKELETON, flip_pairs_from_names

META_PREFIX = "odkd."


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

    def codec(self):
        """The :class:`~odkd.codec.HeatmapCodec` this model was trained with: the spec's input
        size and stride, the rest from the training config stored with it."""
        from odkd.codec import HeatmapCodec   # odkd.codec imports torch: on use only

        return HeatmapCodec.from_config(self.eval_config())


def default_keypoints(num_joints: int) -> tuple[list[str], list[list[int]]]:
    """(names, 1-based skeleton): COCO's for 17 joints, generic names and no skeleton otherwise."""
    if num_joints == len(COCO_KEYPOINTS):
        return list(COCO_KEYPOINTS), [list(p) for p in COCO_SKELETON]
    return [f"kpt_{i}" for i in range(num_joints)], []


def check_input_size(size, stride: int = 4) -> None:
    """OdkdError naming the sizes that work unless ``size`` (width, height) is two positive
    multiples of the heatmap stride (the heatmaps are input_size / stride, exactly)."""
    w, h = size
    if w > 0 and h > 0 and w % stride == 0 and h % stride == 0:
        return
    near = [f"{max(stride, v // stride * stride)}" for v in (w, h)]
    raise OdkdError(f"input size {w}x{h}: width and height must be positive multiples of the "
                    f"heatmap stride {stride} (e.g. {near[0]}x{near[1]})")


def spec_for_model(model, cfg: Config | None = None,
                   input_size: tuple[int, int] | list[int] | None = None) -> PoseSpec:
    """Spec of a built odkd model; settings from ``cfg`` (default config when None)."""
    cfg = cfg or Config()
    names, skeleton = default_keypoints(int(model.num_joints))
    pairs = cfg.data.flip_pairs if cfg.data.flip_pairs is not None else \
        flip_pairs_from_names(names)
    size = tuple(int(v) for v in (input_size or cfg.data.input_size))
    check_input_size(size, int(cfg.data.heatmap_stride))
    config = {k: v for k, v in cfg.to_dict().items() if k != "distill"}
    config["data"]["input_size"] = list(size)
    config["model"].update(name=str(model.odkd_name), num_joints=int(model.num_joints),
                           with_mask=bool(model.with_mask))
    return PoseSpec(name=str(model.odkd_name), num_joints=int(model.num_joints),
                    with_mask=bool(model.with_mask), input_size=(size[0], size[1]),
                    heatmap_stride=int(cfg.data.heatmap_stride), keypoint_names=names,
                    flip_pairs=[list(p) for p in pairs], skeleton=skeleton, config=config)

