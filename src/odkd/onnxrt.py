"""One way to open an ONNX model in onnxruntime, shared by deployed students (odkd.deploy) and
ONNX teachers (odkd.teachers); it sits at the bottom layer so both may import it."""
from __future__ import annotations

import os

from odkd.errors import CheckpointError, OdkdError


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
