"""OrtPoseModel: an exported odkd model run by onnxruntime and called like an odkd model.

``model(images)`` takes an (N, 3, H, W) float tensor and returns ``{"heatmaps": tensor, "mask":
tensor?}`` (CPU float32), and ``eval()`` / ``train()`` / ``training`` / ``to()`` exist, so the
evaluation and inference code (flip test, decoding, NMS) runs unchanged on either backend.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from odkd.deploy.spec import PoseSpec
from odkd.errors import CheckpointError, OdkdError
from odkd.onnxrt import make_session


class OrtPoseModel:
    """An exported odkd model run by onnxruntime (see module docstring)."""

    def __init__(self, path: str, threads: int | None = None, device: str = "cpu") -> None:
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: ONNX file not found")
        self.path = path
        self.session = make_session(path, threads=threads, device=device)
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = PoseSpec.from_metadata(dict(meta), path)
        outs = [o.name for o in self.session.get_outputs()]
        if "heatmaps" not in outs:
            raise CheckpointError(f"{path}: graph has no 'heatmaps' output (outputs: {outs})")
        self.output_names = ["heatmaps"] + (["mask"] if self.spec.with_mask else [])
        self.input_name = self.session.get_inputs()[0].name
        # Attributes odkd models carry (save_checkpoint, logs, evaluation).
        self.odkd_name = self.spec.name
        self.num_joints = self.spec.num_joints
        self.with_mask = self.spec.with_mask
        self.training = False

    def __call__(self, images) -> dict[str, torch.Tensor]:
        x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) \
            else np.asarray(images, dtype=np.float32)
        w, h = self.spec.input_size
        if x.ndim != 4 or x.shape[1:] != (3, h, w):
            raise OdkdError(f"{self.path}: expects (N, 3, {h}, {w}) input, got {tuple(x.shape)}")
        outs = self.session.run(self.output_names, {self.input_name: np.ascontiguousarray(x)})
        return {k: torch.from_numpy(v) for k, v in zip(self.output_names, outs)}

    # No-ops that let code written for nn.Module (model.eval(), model.to(device)) run unchanged.
    def eval(self) -> "OrtPoseModel":
        return self

    def train(self, mode: bool = True) -> "OrtPoseModel":
        if mode:
            raise OdkdError(f"{self.path}: an onnxruntime model cannot be trained")
        return self

    def to(self, *args, **kwargs) -> "OrtPoseModel":
        return self
