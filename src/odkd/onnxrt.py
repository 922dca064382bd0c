"""One way to open an ONNX model in onnxruntime, shared by deployed students (odkd.deploy) and
ONNX teachers (odkd.teachers), and :class:`OrtPoseModel`, an ``odkd export`` file called like
an odkd model; both sit low (beside the codec, below models, teachers, evaluation and
deployment) so that all of them may import them.

``OrtPoseModel(path)(images)`` takes an (N, 3, H, W) float tensor and returns ``{"heatmaps":
tensor, "mask": tensor?}`` (CPU float32), and ``eval()`` / ``train()`` / ``training`` / ``to()``
exist, so the evaluation and inference code (flip test, decoding, NMS) runs unchanged on
either backend."""
from __future__ import annotations

import os

import numpy as np

from odkd.errors import CheckpointError, OdkdError
from odkd.spec import PoseSpec


def make_session(path: str, threads: int | None = None, device: str = "cpu"):
    """onnxruntime InferenceSession; ``threads`` sets intra-op threads (None: ORT's default).

    ``device`` 'cuda'/'cuda:N' uses the CUDA provider when this onnxruntime has it, 'auto' uses
    it when available; otherwise the CPU provider. A missing or unloadable file is one
    CheckpointError line naming it.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise OdkdError("ONNX models need onnxruntime: pip install 'odkd[deploy]'") from None
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: ONNX model not found")
    opts = ort.SessionOptions()
    if threads is not None:
        if threads < 1:
            raise OdkdError(f"threads must be >= 1, got {threads}")
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    available = ort.get_available_providers()
    providers: list = ["CPUExecutionProvider"]
    if device.startswith("cuda") or device == "auto":
        if "CUDAExecutionProvider" in available:
            idx = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"]
        elif device.startswith("cuda"):
            raise OdkdError(f"device {device}: this onnxruntime has no CUDA provider "
                            f"(available: {', '.join(available)}); install onnxruntime-gpu")
    try:
        return ort.InferenceSession(path, sess_options=opts, providers=providers)
    except Exception as e:  # onnxruntime raises its own untyped exceptions for bad files
        msg = " ".join(str(e).split())[:160] or type(e).__name__
        raise CheckpointError(f"{path}: not a loadable ONNX model ({msg})") from None


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

    def __call__(self, images) -> dict:
        import torch   # here: ONNX teachers use make_session without torch

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
