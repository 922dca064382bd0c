"""An odkd checkpoint (or an official HRNet / mmpose one) as a real-image teacher.

The same call as the built-in teachers (:class:`odkd.teachers.base.Teacher`): the student's
crop region is re-cropped from the source image by odkd's own crop (``warp_crop``, the crop of
training and evaluation) at the checkpoint's input size, normalised as in training, run with
the flip test its config asks for (:func:`odkd.codec.predict_heatmaps`) and decoded by the
checkpoint's own codec. Its heatmaps and mask (for a model with a mask head) come back too.

This is for real images; distillation on the student's crop tensor keeps
:class:`odkd.distill.teachers.FrozenTeacher`.
"""
from __future__ import annotations

import os

import numpy as np

from odkd.errors import CheckpointError
from odkd.teachers.base import Teacher
from odkd.teachers.runtime import Runner

PREFIX = "checkpoint:"
SUFFIXES = (".pt", ".pth", ".pth.tar", ".ckpt")


def is_checkpoint_name(name: str) -> bool:
    """``checkpoint:PATH``, or a path ending like a PyTorch checkpoint."""
    return name.startswith(PREFIX) or name.lower().endswith(SUFFIXES)


def checkpoint_run_config(path: str, input_size=None, flip_test: bool | None = None):
    """The settings a checkpoint runs with (:func:`odkd.models.checkpoint.checkpoint_config`:
    its stored training config without the distill part, else defaults), at ``input_size`` /
    ``flip_test`` when given."""
    from odkd.models.checkpoint import checkpoint_config

    cfg = checkpoint_config(path)
    if input_size is not None:
        cfg.data.input_size = [int(v) for v in input_size]
    if flip_test is not None:
        cfg.eval.flip_test = bool(flip_test)
    return cfg


class TorchRunner(Runner):
    """One normalised crop (1, 3, H, W) -> [heatmaps (1, K, h, w), mask logits (1, 1, h, w)
    (models with a mask head)], through :func:`odkd.codec.predict_heatmaps`, the flip test of
    evaluation and inference."""

    def __init__(self, model, codec, flip_pairs, flip_test: bool, device):
        self.model, self.heatmap_codec = model, codec
        self.flip_pairs, self.flip_test, self.device = flip_pairs, flip_test, device
        w, h = codec.input_size
        self.input_details = [dict(name="image", shape=(1, 3, h, w), dtype=np.dtype(np.float32))]
        self.output_details = [dict(name="heatmaps")] + \
            ([dict(name="mask")] if getattr(model, "with_mask", False) else [])

    def run(self, inputs):
        import torch

        from odkd.codec import predict_heatmaps

        x = torch.from_numpy(np.ascontiguousarray(inputs[0], dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            heat, mask = predict_heatmaps(self.model, x, self.heatmap_codec, self.flip_pairs,
                                          self.flip_test)
        outs = [heat.float().cpu().numpy()]
        if mask is not None:
            outs.append(mask.float().cpu().numpy())
        return outs


class CheckpointCodec:
    """Pre- and post-processing of an odkd pose model: ImageNet normalisation, decoding with
    the checkpoint's :class:`~odkd.codec.HeatmapCodec`. Heatmap (and mask) pixel u sits at input
    coordinate stride * u (odkd's geometry: one affine, scaled to the output size).

    ``path`` may be an ``odkd export`` ONNX file, run by onnxruntime at its fixed input size;
    ``threads`` is its onnxruntime threads, or torch's (process-wide) for a checkpoint."""

    def __init__(self, path: str, model: str | None = None, input_size=None,
                 flip_test: bool | None = None, device: str = "cpu",
                 threads: int | None = None):
        from odkd.models.checkpoint import build_from_checkpoint
        from odkd.models.zoo import not_found_hint, resolve_checkpoint
        from odkd.utils import pick_device

        path = resolve_checkpoint(path)   # a shipped model's name, as every loader takes
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: checkpoint file not found {not_found_hint()}")
        if path.lower().endswith(".onnx"):   # an `odkd export` file (fp32 or int8)
            self._setup_onnx(path, model, input_size, flip_test, threads)
            return
        if threads:
            import torch

            torch.set_num_threads(int(threads))   # process-wide: torch has no per-model threads
        cfg = checkpoint_run_config(path, input_size, flip_test)
        net = build_from_checkpoint(path, name=model or None, with_mask=None, verbose=False)
        dev = pick_device(device)
        self._setup(path, net.eval().to(dev), cfg, dev)

    def _setup_onnx(self, path: str, model: str | None, input_size, flip_test,
                    threads: int | None) -> None:
        import torch

        from odkd.onnxrt import OrtPoseModel

        net = OrtPoseModel(path, threads=threads or 1)
        if model and model != net.spec.name:
            raise CheckpointError(f"{path}: holds {net.spec.name}, but {model!r} was requested")
        if input_size is not None and list(input_size) != list(net.spec.input_size):
            raise CheckpointError(f"{path}: an ONNX export runs at its fixed input size "
                                  f"{list(net.spec.input_size)}, not {list(input_size)}")
        cfg = net.spec.eval_config()
        if flip_test is not None:
            cfg.eval.flip_test = bool(flip_test)
        self._setup(path, net, cfg, torch.device("cpu"))

    def _setup(self, name: str, net, cfg, dev) -> None:
        from odkd.codec import HeatmapCodec
        from odkd.keypoints import COCO_KEYPOINTS, flip_pairs_from_names

        if int(net.num_joints) != len(COCO_KEYPOINTS):
            raise CheckpointError(f"{name}: holds a {net.num_joints}-joint model; a teacher gives "
                                  f"COCO-17 keypoints")
        self.heatmap_codec = HeatmapCodec.from_config(cfg)
        self.input_size = self.heatmap_codec.input_size
        self.stride = self.heatmap_codec.heatmap_stride
        self.has_mask = bool(getattr(net, "with_mask", False))
        pairs = cfg.data.flip_pairs if cfg.data.flip_pairs is not None else \
            flip_pairs_from_names(list(COCO_KEYPOINTS))
        self.flip_test = bool(cfg.eval.flip_test)
        self.runner = TorchRunner(net, self.heatmap_codec, pairs, self.flip_test, dev)

    def preprocess(self, crop_rgb: np.ndarray) -> list[np.ndarray]:
        from odkd.data.dataset import normalize_crop

        return [normalize_crop(crop_rgb)[None]]

    def postprocess(self, outs: list[np.ndarray]) -> dict:
        """keypoints (17, 3): x, y in input pixels and the heatmap peak; heatmaps (17, h, w);
        mask (h, w) person probability, for a model with a mask head."""
        from odkd.teachers.blazepose import sigmoid

        heat = np.asarray(outs[0], dtype=np.float32)
        h, w = heat.shape[2:]
        s = self.stride
        # the crop centre / size that makes the codec's heatmap -> image map the identity
        size = np.array([[w * s, h * s]], dtype=np.float64)
        xy, conf = self.heatmap_codec.decode(heat, size / 2, size)
        kp = np.concatenate([xy[0], conf[0][:, None]], axis=1).astype(np.float64)
        to_input = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
        out = {"keypoints": kp, "heatmaps": heat[0], "heatmap_to_input": to_input}
        if len(outs) > 1:
            out["mask"] = sigmoid(outs[1][0, 0]).astype(np.float32)
            out["mask_to_input"] = to_input
        return out


class CheckpointTeacher(Teacher):
    """:class:`Teacher` whose crop is odkd's ``warp_crop`` (the training and evaluation crop)."""

    def crop(self, image: np.ndarray, center, scale, rotation: float = 0.0):
        from odkd.data.dataset import warp_crop

        mat, ts = self.crop_affine(center, scale, rotation)
        return warp_crop(image, center, ts, rotation, self.input_size), mat


def checkpoint_teacher(name: str, num_threads: int | None = None, **options) -> Teacher:
    """``checkpoint:PATH`` (or PATH) -> teacher; PATH may also be an ``odkd export`` ONNX
    file, run by onnxruntime. ``options``: ``model`` (architecture of a foreign checkpoint,
    e.g. hrnet_w32), ``input_size`` (W, H), ``flip_test``, ``device``. ``num_threads`` sets
    torch's intra-op threads (process-wide), or the ONNX model's."""
    path = name[len(PREFIX):] if name.startswith(PREFIX) else name
    return CheckpointTeacher(os.path.basename(path),
                             CheckpointCodec(path, threads=num_threads, **options))
