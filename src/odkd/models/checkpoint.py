"""Checkpoint I/O: the odkd format, and loading official HRNet / mmpose / ``module.`` files.

odkd checkpoint (see docs/development.md)::

    {"format": "odkd", "version": 1,
     "model": {"name": str, "num_joints": int, "with_mask": bool},
     "state_dict": {...}, ...extra (epoch, optimizer, config, ...)}

Foreign files are recognised by :func:`detect_format` and renamed to odkd/official key names by
:func:`extract_state_dict`; loading is always strict (missing, unexpected and mis-shaped keys are
reported together in one :class:`~odkd.errors.CheckpointError`).
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from odkd.errors import CheckpointError
from odkd.utils import atomic_torch_save

PathLike = Union[str, os.PathLike]

FORMAT_VERSION = 1
RESERVED_KEYS = ("format", "version", "model", "state_dict")

# Human-readable names used in messages.
FORMAT_DESCRIPTIONS = {
    "odkd": "odkd checkpoint",
    "official": "plain (official HRNet layout) state_dict",
    "official_training": "official HRNet training checkpoint",
    "mmpose": "mmpose checkpoint",
    "module_prefixed": "'module.'-prefixed (DataParallel/DDP) state_dict",
    "tfjs": "MoveNet TF.js graph model",
    "ssd_backbone": "SSD-MobileNet-v2 graph (its MobileNetV2 trunk)",
    "effnet_lite_tflite": "EfficientNet-Lite3 int8 TFLite classifier (its trunk)",
}
# Formats that start only part of a model: the keys under these prefixes must match; every
# other key keeps the model's fresh initialisation, by declaration rather than strict=False.
PARTIAL_FORMATS = {"ssd_backbone": ("backbone.",), "effnet_lite_tflite": ("backbone.",)}
# formats whose BatchNorms are folded into the convs (identity BNs): training recalibrates them
FOLDED_BN_FORMATS = ("tfjs", "ssd_backbone", "effnet_lite_tflite")

_MAX_LISTED = 10   # keys listed per category in a mismatch message


# --------------------------------------------------------------------------------------- read/write

def _unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel/DDP or torch.compile wrappers (their keys get prefixes)."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def save_checkpoint(path: PathLike, model: nn.Module, extra: dict[str, Any] | None = None) -> None:
    """Write an odkd checkpoint atomically; ``extra`` adds e.g. epoch/optimizer/config."""
    target = _unwrap(model)
    try:
        meta = {"name": str(target.odkd_name), "num_joints": int(target.num_joints),
                "with_mask": bool(target.with_mask)}
    except AttributeError as e:
        raise ValueError("save_checkpoint needs a model from odkd.models.build_model "
                         f"(attributes odkd_name, num_joints, with_mask): {e}") from e
    ckpt: dict[str, Any] = {
        "format": "odkd", "version": FORMAT_VERSION, "model": meta,
        # CPU copies so the file loads anywhere and does not pin GPU memory while pickling.
        "state_dict": {k: v.detach().cpu() for k, v in target.state_dict().items()},
    }
    for k, v in (extra or {}).items():
        if k in RESERVED_KEYS:
            raise ValueError(f"save_checkpoint: extra key {k!r} is reserved")
        ckpt[k] = v
    atomic_torch_save(ckpt, os.fspath(path))


def _numpy_globals() -> list:
    """numpy array/scalar reconstructors, allowlisted for weights_only loads.

    mmpose/mmengine files keep numpy arrays in ``meta`` (dataset sigmas, flip indices); these are
    plain data, so allowing their reconstructors keeps ``weights_only=True`` meaningful.
    """
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray  # type: ignore[no-redef]
    dtype_classes = [c for c in vars(getattr(np, "dtypes", object)).values()
                     if isinstance(c, type) and issubclass(c, np.dtype)]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def _torch_load(path: str) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "numpy" not in str(e) or not hasattr(torch.serialization, "safe_globals"):
            raise
    with torch.serialization.safe_globals(_numpy_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _short_reason(e: BaseException) -> str:
    """One useful line of a torch.load error. The weights_only error wraps its reason, often on
    a later line, in paragraphs of boilerplate; keep the reason and say what was blocked."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    reason = []
    for ln in lines:
        if "WeightsUnpickler error:" in ln:
            ln = ln.split("WeightsUnpickler error:", 1)[1].strip()
        elif ln.startswith(_TORCH_BOILERPLATE):
            continue
        if ln:
            reason.append(ln)
    text = " ".join(reason) or type(e).__name__
    m = re.search(r"GLOBAL ([\w.]+)", text)
    if m:
        return (f"refused: the file asks to import and call {m.group(1)}, which a checkpoint of "
                "weights never needs (odkd loads with weights_only=True; re-save the "
                "state_dict alone if you trust the file)")
    if "weights only load failed" in str(e).lower():
        return f"not a PyTorch checkpoint of tensors ({text})"
    return text


def read_checkpoint(path: PathLike) -> Any:
    """``torch.load`` on CPU with ``weights_only=True``; CheckpointError if missing or unreadable."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise CheckpointError(f"{p}: checkpoint file not found")
    from odkd.models.tfjs import is_tfjs_model
    if is_tfjs_model(p):
        # MoveNet's shipped weights (movenet-lightning.json + .bin): usable as model.init and
        # by `odkd convert` like any checkpoint
        from odkd.models.movenet import load_movenet_tfjs
        return {"format": "tfjs", "state_dict": load_movenet_tfjs(p)}
    from odkd.models.efficientnet_lite import is_efficientnet_lite_tflite
    if is_efficientnet_lite_tflite(p):
        from odkd.models.efficientnet_lite import load_efficientnet_lite_tflite
        return {"format": "effnet_lite_tflite", "state_dict": load_efficientnet_lite_tflite(p)}
    from odkd.models.ssd_backbone import ssd_backbone_state_dict, ssd_trunk_graph
    graph = ssd_trunk_graph(p)
    if graph is not None:
        # the COCO-trained trunk of the stored SSD person detector: a student's start
        return {"format": "ssd_backbone", "state_dict": ssd_backbone_state_dict(graph, p)}
    try:
        return _torch_load(p)
    except Exception as e:  # corrupt zip, truncated pickle, disallowed globals, ...
        raise CheckpointError(f"{p}: cannot read checkpoint: {_short_reason(e)}") from e


# ------------------------------------------------------------------------------- format handling

def _is_state_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                for k, v in obj.items())


def _all_prefixed(keys, prefix: str) -> bool:
    keys = list(keys)
    return bool(keys) and all(k.startswith(prefix) for k in keys)


def detect_format(obj: Any, source: str = "checkpoint") -> str:
    """One of 'odkd', 'official', 'official_training', 'mmpose', 'module_prefixed', 'tfjs',
    'ssd_backbone', 'effnet_lite_tflite'."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict, found {type(obj).__name__}")
    if obj.get("format") in ("odkd", *FOLDED_BN_FORMATS):
        return obj["format"]
    if _is_state_dict(obj):
        return "module_prefixed" if _all_prefixed(obj, "module.") else "official"
    sd = obj.get("state_dict")
    if isinstance(sd, Mapping) and any(
            isinstance(k, str) and k.startswith(("backbone.", "keypoint_head.", "head."))
            for k in sd):
        return "mmpose"
    if isinstance(sd, Mapping) or isinstance(obj.get("best_state_dict"), Mapping):
        return "official_training"
    keys = ", ".join(map(str, list(obj)[:10])) or "none"
    raise CheckpointError(f"{source}: unrecognised checkpoint (top-level keys: {keys}); expected "
                          "an odkd, official HRNet, mmpose or plain state_dict file")


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` when every key carries it (DataParallel/DDP wrap the whole model)."""
    if _all_prefixed(sd, prefix):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def _from_mmpose(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in _strip(sd, "module.").items():
        if k.startswith("data_preprocessor."):    # mmpose 1.x normalisation mean/std buffers
            continue
        for old, new in (("backbone.", ""), ("keypoint_head.final_layer.", "final_layer."),
                         ("head.final_layer.", "final_layer.")):
            if k.startswith(old):
                k = new + k[len(old):]
                break
        # Other head keys (deconvs, ...) stay as they are and surface as unexpected keys.
        out[k] = v
    return out


def _checked(sd: Any, source: str, field: str) -> Mapping[str, torch.Tensor]:
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{source}: field {field!r} is not a dict")
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: {field}[{k!r}] is a {type(v).__name__}, "
                                  "not a tensor")
    return sd


def extract_state_dict(obj: Any, source: str = "checkpoint"
                       ) -> tuple[dict[str, torch.Tensor], str]:
    """Normalise any supported checkpoint to (state_dict with odkd/official keys, format)."""
    fmt = detect_format(obj, source)
    if fmt == "odkd":
        version = obj.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise CheckpointError(f"{source}: unsupported odkd checkpoint version {version!r} "
                                  f"(this odkd reads version <= {FORMAT_VERSION})")
        return dict(_checked(obj.get("state_dict"), source, "state_dict")), fmt
    if fmt in FOLDED_BN_FORMATS:
        return dict(_checked(obj.get("state_dict"), source, "state_dict")), fmt
    if fmt == "official":
        return dict(obj), fmt
    if fmt == "module_prefixed":
        return _strip(obj, "module."), fmt
    if fmt == "mmpose":
        return _from_mmpose(_checked(obj["state_dict"], source, "state_dict")), fmt
    # official_training: upstream saves model.state_dict() (DataParallel, 'module.' keys) and
    # best_state_dict = model.module.state_dict() of the same epoch; prefer the former.
    field = "state_dict" if isinstance(obj.get("state_dict"), Mapping) else "best_state_dict"
    return _strip(_checked(obj[field], source, field), "module."), fmt


# ------------------------------------------------------------------------------------- loading

def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def _load_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], source: str, fmt: str,
                     init_missing: tuple[str, ...]) -> list[str]:
    """Strict load with one readable error; returns the keys filled from the model itself."""
    target = _unwrap(model)
    expected = target.state_dict()
    sd = dict(sd)
    filled: list[str] = []
    if fmt in PARTIAL_FORMATS:
        covered = PARTIAL_FORMATS[fmt]
        init_missing = tuple(init_missing) + tuple(
            {k.split(".")[0] + "." for k in expected if not k.startswith(covered)})
    for k, v in expected.items():
        if k in sd:
            continue
        if k.endswith("num_batches_tracked"):
            # Files from torch < 0.4.1 lack this BN counter; it is only read with momentum=None,
            # and torch itself zero-fills it for such old files.
            sd[k] = torch.zeros((), dtype=torch.long)
            filled.append(k)
        elif init_missing and k.startswith(init_missing):
            sd[k] = v   # an explicitly new part (e.g. a mask head) keeps its fresh init
            filled.append(k)
    _check_values(sd, source)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} checkpoint {tuple(sd[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listed(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listed(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {_listed(shapes)}")
        name = getattr(target, "odkd_name", type(target).__name__)
        raise CheckpointError(f"{source} ({FORMAT_DESCRIPTIONS[fmt]}) does not match model "
                              f"{name}: " + "; ".join(parts))
    target.load_state_dict(sd, strict=True)
    return filled


def _check_values(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights that can only give NaN: non-finite values, negative BatchNorm variances
    (sqrt of a negative). Found when loading, such a file would otherwise crash or mislead
    inference far from the cause."""
    for k, v in sd.items():
        if not v.is_floating_point() or v.numel() == 0:
            continue
        bad = int((~torch.isfinite(v)).sum())
        if bad:
            raise CheckpointError(f"{source}: {k} has {bad} non-finite value(s) (NaN/inf); the "
                                  "model would output NaN")
        if k.endswith("running_var") and bool((v < 0).any()):
            raise CheckpointError(f"{source}: {k} has {int((v < 0).sum())} negative value(s) "
                                  f"(min {float(v.min()):.4g}); a BatchNorm variance cannot be "
                                  "negative, the model would output NaN")


def load_weights(model: nn.Module, path_or_obj: PathLike | Mapping, verbose: bool = True,
                 init_missing: tuple[str, ...] = ()) -> str:
    """Load any supported checkpoint into ``model`` strictly; returns the detected format.

    ``init_missing``: model key prefixes that may be absent from the file and keep their fresh
    initialisation, e.g. ``("mask_layer.",)`` to add a mask head to official HRNet weights.
    Everything else must match exactly.
    """
    if isinstance(path_or_obj, Mapping):
        source, obj = "<checkpoint dict>", path_or_obj
    else:
        source = os.fspath(path_or_obj)
        obj = read_checkpoint(source)
    sd, fmt = extract_state_dict(obj, source)
    filled = _load_state_dict(model, sd, source, fmt, tuple(init_missing))
    if verbose:
        note = f" ({len(filled)} key(s) kept from the model: {_listed(filled)})" if filled else ""
        print(f"loaded {FORMAT_DESCRIPTIONS[fmt]} from {source}{note}")
    return fmt


def _build(path: PathLike, name: str | None, num_joints: int | None, with_mask: bool | None,
           verbose: bool) -> tuple[nn.Module, str]:
    from odkd.models import build_model   # late import: odkd.models imports builders lazily

    source = os.fspath(path)
    obj = read_checkpoint(source)
    sd, fmt = extract_state_dict(obj, source)
    if fmt == "odkd":
        meta = obj.get("model")
        if not isinstance(meta, Mapping):
            raise CheckpointError(f"{source}: field 'model' is missing or not a dict")
        stored = {}
        for field, typ in (("name", str), ("num_joints", int), ("with_mask", bool)):
            if not isinstance(meta.get(field), typ):
                raise CheckpointError(f"{source}: field model.{field} is missing or not {typ.__name__}")
            stored[field] = meta[field]
        for field, asked in (("name", name), ("num_joints", num_joints), ("with_mask", with_mask)):
            if asked is not None and asked != stored[field]:
                raise CheckpointError(f"{source}: holds model.{field}={stored[field]!r}, "
                                      f"but {asked!r} was requested")
        name, num_joints, with_mask = stored["name"], stored["num_joints"], stored["with_mask"]
    else:
        if name is None:
            raise CheckpointError(f"{source}: a {FORMAT_DESCRIPTIONS[fmt]} does not say which "
                                  "architecture it holds; pass the model name (e.g. hrnet_w32)")
        if num_joints is None:
            head = sd.get("final_layer.weight")
            if head is None:
                raise CheckpointError(f"{source}: cannot infer num_joints (no final_layer.weight);"
                                      " pass it explicitly")
            num_joints = int(head.shape[0])
        if with_mask is None:
            with_mask = "mask_layer.weight" in sd
    model = build_model(name, num_joints=num_joints, with_mask=with_mask)
    filled = _load_state_dict(model, sd, source, fmt, ())
    if verbose:
        note = f" ({len(filled)} BN counter(s) zero-filled)" if filled else ""
        print(f"loaded {FORMAT_DESCRIPTIONS[fmt]} from {source} into {name}{note}")
    return model, fmt


def build_from_checkpoint(path: PathLike, name: str | None = None, num_joints: int | None = None,
                          with_mask: bool | None = None, verbose: bool = True) -> nn.Module:
    """Build the model a checkpoint holds and load it strictly.

    odkd files carry their architecture; foreign files need ``name`` (num_joints is read from
    ``final_layer.weight`` when not given).
    """
    return _build(path, name, num_joints, with_mask, verbose)[0]


def convert(src: PathLike, dst: PathLike, name: str | None = None, num_joints: int | None = None,
            verbose: bool = True) -> tuple[str, nn.Module]:
    """Re-save any supported checkpoint as an odkd checkpoint; returns (source format, model)."""
    model, fmt = _build(src, name, num_joints, None, verbose)
    extra: dict[str, Any] = {"converted_from": os.fspath(src), "source_format": fmt}
    default = getattr(model, "default_cfg", None) or {}
    if "input_size" in default:
        # the input size the weights were trained at (MoveNet: 192 or 256 square), so that
        # eval, infer and export run the converted model at it
        extra["config"] = {"model": {"name": model.odkd_name},
                           "data": {"input_size": [int(v) for v in default["input_size"]],
                                    "heatmap_stride": int(default.get("heatmap_stride", 4))}}
    save_checkpoint(dst, model, extra=extra)
    return fmt, model


def checkpoint_config(path: PathLike, config: str | None = None,
                      overrides: list[str] | tuple = ()):
    """The settings a model from ``path`` runs with: the config stored in an odkd training
    checkpoint (its distill part dropped: teachers play no part in using a model), or the
    config file ``config`` instead, then ``overrides``; defaults when neither exists.

    This is the one place a config is rebuilt from a checkpoint (``odkd.load``, ``odkd
    infer``, ``odkd eval``, ``odkd export``, ``odkd bench infer``)."""
    from odkd.config import ConfigError, load_config

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
