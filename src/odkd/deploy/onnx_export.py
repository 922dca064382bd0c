"""Export an odkd pose model to ONNX (dynamic batch, fixed crop size) and verify it.

The graph has one input ``image`` (N, 3, H, W) float32 (ImageNet-normalised RGB, as the
dataset produces) and outputs ``heatmaps`` (N, K, H/4, W/4) plus ``mask`` (N, 1, H/4, W/4)
logits when the model has a mask head. The :class:`~odkd.spec.PoseSpec` is stored as
``odkd.*`` metadata properties.
"""
from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
import torch
from torch import nn

from odkd.errors import OdkdError
from odkd.spec import PoseSpec
from odkd.utils import atomic_write_bytes

DEFAULT_OPSET = 17
VERIFY_TOL = 1e-3


class _TupleOutputs(nn.Module):
    """ONNX outputs are positional: turn the model's dict into a fixed-order tuple."""

    def __init__(self, model: nn.Module, with_mask: bool) -> None:
        super().__init__()
        self.model = model
        self.with_mask = with_mask

    def forward(self, x: torch.Tensor):
        out = self.model(x)
        if self.with_mask:
            return out["heatmaps"], out["mask"]
        return out["heatmaps"]


def output_names(with_mask: bool) -> list[str]:
    return ["heatmaps", "mask"] if with_mask else ["heatmaps"]


def export_onnx(model: nn.Module, spec: PoseSpec, out_path: str,
                opset: int = DEFAULT_OPSET) -> None:
    """Write ``model`` (an odkd model) to ``out_path`` as ONNX with ``spec`` as metadata.

    The model's train/eval flags are restored afterwards (the exporter itself would restore the
    wrapper's flag and thereby switch a model in eval mode to training).
    """
    import onnx

    w, h = spec.input_size
    modes = [(m, m.training) for m in model.modules()]
    ref = next(iter(model.parameters()))
    wrapper = _TupleOutputs(model, spec.with_mask).eval()
    names = output_names(spec.with_mask)
    dummy = torch.zeros(1, 3, h, w, device=ref.device, dtype=ref.dtype)
    try:
        with torch.no_grad():
            # eager run first: readable errors (e.g. HRNet's size check)
            out = wrapper(dummy)
        got = tuple((out[0] if spec.with_mask else out).shape[-2:])
        want = (h // spec.heatmap_stride, w // spec.heatmap_stride)
        if got != want:
            raise OdkdError(f"{spec.name} at input size {w}x{h} gives {got[1]}x{got[0]} "
                            f"heatmaps, not input / {spec.heatmap_stride} = {want[1]}x{want[0]}; "
                            "this architecture does not support that size")
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = os.path.join(tmp, "model.onnx")
            with warnings.catch_warnings():
                # The TorchScript exporter is deprecated in favour of torch.export's, which needs
                # onnxscript (not a dependency); it still traces these plain CNNs exactly.
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper, (dummy,), tmp_path, input_names=["image"], output_names=names,
                    dynamic_axes={n: {0: "batch"} for n in ["image", *names]},
                    opset_version=int(opset), do_constant_folding=True, dynamo=False)
            proto = onnx.load(tmp_path)
    finally:
        for m, training in modes:
            m.training = training
    del proto.metadata_props[:]
    for k, v in spec.to_metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "odkd"
    onnx.checker.check_model(proto)
    atomic_write_bytes(out_path, proto.SerializeToString())


@torch.no_grad()
def verify_onnx(model: nn.Module, onnx_path: str, batch: int = 2, seed: int = 0,
                threads: int | None = None) -> dict[str, float]:
    """Max abs difference per output between onnxruntime and PyTorch on random input.

    ``batch`` > 1 also exercises the dynamic batch axis (the graph was traced at batch 1).
    """
    from odkd.onnxrt import OrtPoseModel

    ort_model = OrtPoseModel(onnx_path, threads=threads)
    w, h = ort_model.spec.input_size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, h, w, generator=gen)
    was_training = model.training
    model.eval()
    try:
        ref = model(x.to(next(iter(model.parameters())).device))
    finally:
        model.train(was_training)
    got = ort_model(x)
    diffs = {}
    for key in output_names(ort_model.spec.with_mask):
        a = ref[key].float().cpu().numpy()
        b = got[key].numpy()
        if a.shape != b.shape:
            raise OdkdError(f"{onnx_path}: output {key!r} has shape {b.shape}, PyTorch gives "
                            f"{a.shape}")
        diffs[key] = float(np.abs(a - b).max())
        diffs[key + "_ref_max_abs"] = float(np.abs(a).max())
    return diffs
