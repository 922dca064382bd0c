"""Loading a pose model with its spec: an odkd / official HRNet / mmpose checkpoint for PyTorch,
or an ``odkd export`` ONNX file for onnxruntime (:class:`~odkd.onnxrt.OrtPoseModel`).
``odkd.load``, ``odkd infer``, ``odkd eval``, ``odkd export`` and ``odkd bench infer`` all load
through here; each also takes the name of a model shipped with odkd (``odkd-lightning``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from odkd.config import Config
from odkd.errors import CheckpointError, OdkdError
from odkd.models.checkpoint import checkpoint_config
from odkd.spec import PoseSpec, spec_for_model

BACKENDS = ("torch", "onnxruntime")


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
    from the config stored in odkd training checkpoints (defaults otherwise). ``path`` may be a
    shipped model's name."""
    from odkd.models.zoo import resolve_checkpoint

    model, spec, _ = _torch_pose(resolve_checkpoint(path), name, input_size, verbose, None, ())
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
    """Checkpoint (odkd / official HRNet / mmpose, or an ``odkd export`` ONNX file; or the name
    of a model shipped with odkd, :mod:`odkd.models.zoo`, when no such path exists) -> model,
    spec and eval config, for ``odkd.load``, ``odkd infer`` and ``odkd eval``.

    ``device`` None takes ``train.device`` of the config. ``threads`` sets torch's intra-op
    threads (process-wide, as the CLI's --threads) or onnxruntime's."""
    from odkd.models.zoo import not_found_hint, resolve_checkpoint
    from odkd.utils import pick_device

    path = resolve_checkpoint(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found {not_found_hint()}")
    if threads is not None and threads < 1:
        raise OdkdError(f"threads must be >= 1, got {threads}")
    if resolve_backend(path, backend) == "onnxruntime":
        from odkd.onnxrt import OrtPoseModel

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
