"""int8 ONNX: onnxruntime static quantization of an ``odkd export`` file.

``quantize_onnx`` writes two files: the fp32 graph after onnxruntime's portable graph
optimisations (``quant_pre_process``: shape inference, constant folding, redundant nodes
removed; the file quantization starts from and the fp32 model to compare against), and the
int8 model in QDQ format (QuantizeLinear / DequantizeLinear pairs around each quantized
operator, which onnxruntime fuses into int8 kernels): weights int8 per output channel,
activations uint8 with ranges calibrated on crops of the training data. Both keep the
``odkd.*`` metadata, so ``odkd eval``, ``odkd infer`` and ``odkd.load`` run either file
through :class:`~odkd.onnxrt.OrtPoseModel` unchanged.

Calibration crops are made by the evaluation path of :class:`~odkd.data.dataset.TopDownDataset`
(box -> padded crop -> ImageNet normalisation), so the quantizer sees exactly the inputs the
model sees at inference.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from typing import Callable, Sequence

import numpy as np

from odkd.errors import DataError, OdkdError
from odkd.spec import META_PREFIX, PoseSpec
from odkd.utils import atomic_write_bytes

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_PERCENTILE = 99.999
DEFAULT_CROPS = 256
OP_SETS = ("all", "conv")


def ops_to_quantize(kind: str = "all") -> list[str]:
    """Operator types to quantize. ``all``: every type onnxruntime's QDQ quantizer handles
    but ConvTranspose; ``conv``: Conv, MatMul and Gemm only.

    Why ``all`` by default: with only the convolutions quantized, every elementwise operator
    between them (Lite-HRNet has hundreds: sigmoid weightings, additions, resizes) needs its
    own dequantize / quantize pair, and Lite-HRNet-18 ran slower than fp32; with them in
    int8 too it ran faster. ConvTranspose is left in fp32 because onnxruntime's CPU provider
    has no int8 kernel for it: quantized, its weights were dequantized on every call
    (MobileNetV2's deconvolution head took twice its fp32 time)."""
    if kind == "conv":
        return ["Conv", "MatMul", "Gemm"]
    if kind != "all":
        raise OdkdError(f"--int8-ops: expected one of {', '.join(OP_SETS)}, got {kind!r}")
    from onnxruntime.quantization.registry import QDQRegistry

    return sorted(op for op in QDQRegistry if op != "ConvTranspose")


SYNTH_SOURCE = "synth"


def int8_path(out_path: str) -> str:
    """``model.onnx`` -> ``model.int8.onnx`` (the int8 file written next to the fp32 one)."""
    root, ext = os.path.splitext(out_path)
    return f"{root}.int8{ext or '.onnx'}"


def calibration_crops(spec: PoseSpec, ann_file: str, image_dir: str,
                      num_crops: int) -> np.ndarray:
    """(N, 3, H, W) float32 evaluation crops (the model's own data settings: box padding,
    input size) of ``num_crops`` people spread evenly over the records of a COCO
    person_keypoints file (sorted by image and annotation id). A crop needs only the person's
    box, so a label-free set (``odkd data import --detect``) calibrates on all its people;
    an empty ``image_dir`` means the json's own ``info.image_root``."""
    from odkd.data.coco import load_coco
    from odkd.data.dataset import TopDownDataset

    if num_crops < 1:
        raise OdkdError(f"--calib-crops must be >= 1, got {num_crops}")
    if not os.path.isfile(ann_file):
        raise DataError(f"{ann_file}: calibration annotation file not found")
    if image_dir and not os.path.isdir(image_dir):
        raise DataError(f"{image_dir}: calibration image folder not found")
    coco = load_coco(ann_file, image_dir, train=True)
    if not coco.records:   # a label-free set: its people by their boxes
        coco = load_coco(ann_file, image_dir, train=True, unlabelled=True)
    if coco.num_joints != spec.num_joints:
        raise DataError(f"{ann_file}: field categories[].keypoints has {coco.num_joints} names "
                        f"but the model has {spec.num_joints} joints")
    if not coco.records:
        raise DataError(f"{ann_file}: field annotations: no person to calibrate on")
    data = spec.eval_config().data
    data.cache_images = True
    ds = TopDownDataset(coco.records, coco.flip_pairs, coco.upper_body_ids, data, train=False,
                        return_image_mask=False)
    n = min(num_crops, len(ds))
    idx = np.unique(np.linspace(0, len(ds) - 1, n).round().astype(int))
    return np.stack([ds[int(i)]["image"].numpy() for i in idx]).astype(np.float32)


def synth_calibration_set(out_dir: str, num_crops: int, difficulty: str, seed: int = 0,
                          size: tuple[int, int] = (256, 256)) -> tuple[str, str]:
    """Draw SynthPose training images (about two people each) for ``num_crops`` crops into
    ``out_dir``; returns (annotation file, image folder)."""
    from odkd.synth import generate_split

    images = max(1, math.ceil(num_crops / 2))
    generate_split(out_dir, "train", images, seed, size=size, difficulty=difficulty,
                   workers=1, progress=False)
    return (os.path.join(out_dir, "annotations", "person_keypoints_train.json"),
            os.path.join(out_dir, "train"))


class _CropReader:
    """onnxruntime's CalibrationDataReader protocol over an array of crops, in batches."""

    def __init__(self, input_name: str, crops: np.ndarray, batch: int = 16) -> None:
        self.input_name, self.crops, self.batch, self.pos = input_name, crops, batch, 0

    def get_next(self):
        if self.pos >= len(self.crops):
            return None
        x = self.crops[self.pos:self.pos + self.batch]
        self.pos += self.batch
        return {self.input_name: np.ascontiguousarray(x)}

    def rewind(self) -> None:
        self.pos = 0


def _write_with_metadata(proto, meta: dict[str, str], out_path: str) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "odkd"
    atomic_write_bytes(out_path, proto.SerializeToString())


def _metadata(model) -> dict[str, str]:
    """The metadata of an ONNX file, or of a loaded ModelProto."""
    import onnx

    if isinstance(model, str):
        model = onnx.load(model, load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def optimize_fp32(src: str, dst: str) -> None:
    """The fp32 graph after onnxruntime's portable (basic-level) graph optimisations, with the
    metadata of ``src``; ``dst`` may be ``src``."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = _metadata(src)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "opt.onnx")
        # onnxruntime's symbolic shape inference is for transformers' symbolic dimensions;
        # it gives up on some of these graphs and then leaves temporary files in the working
        # directory. ONNX's own shape inference, which runs either way, gives a CNN's shapes.
        quant_pre_process(src, out, skip_symbolic_shape=True)
        proto = onnx.load(out)
    onnx.checker.check_model(proto)
    _write_with_metadata(proto, meta, dst)


def fp32_node_names(graph, patterns: Sequence[str]) -> list[str]:
    """Names of the nodes of ``graph`` that a pattern of ``patterns`` (regular expressions,
    matched at the start of the name) selects; OdkdError naming a pattern that selects none
    (a model whose export names its layers otherwise)."""
    names = [n.name for n in graph.node]
    picked: list[str] = []
    for pat in patterns:
        try:
            rx = re.compile(pat)
        except re.error as e:
            raise OdkdError(f"--int8-fp32: {pat!r} is not a regular expression ({e})") from None
        hit = [n for n in names if rx.match(n)]
        if not hit:
            raise OdkdError(f"--int8-fp32: {pat!r} matches no node of the graph (node names "
                            f"look like {names[len(names) // 2]!r})")
        picked += [n for n in hit if n not in picked]
    return picked


def calibrate_ranges(fp32_path: str, crops: np.ndarray, op_types: Sequence[str], method: str,
                     tmp: str, percentile: float = DEFAULT_PERCENTILE):
    """Activation ranges of ``fp32_path`` on ``crops`` by onnxruntime's calibrators, as
    (TensorsData, CalibrationMethod). Each tensor gets (low, high), not (-a, a): the
    activations are uint8 with a zero point, and most are ReLU6 outputs, which a symmetric
    range (onnxruntime's percentile default) would give half the codes for values that
    never occur.

    ``minmax``: the extremes seen. ``percentile``: ``(100 - percentile) / 2`` % cut from each
    tail of a 2048-bin histogram. ``entropy``: the range whose 128-level quantization keeps
    the 2048-bin histogram closest in KL divergence (TensorRT's calibration); onnxruntime's
    own default of 128 bins for both leaves that search nothing to cut, so it returned the
    min-max range."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    if method not in CALIBRATION_METHODS:
        raise OdkdError(f"--calib-method: expected one of {', '.join(CALIBRATION_METHODS)}, "
                        f"got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise OdkdError(f"--calib-percentile: expected a value in (50, 100], got {percentile}")
    calib, options = {
        "minmax": (CalibrationMethod.MinMax, {"symmetric": False}),
        "percentile": (CalibrationMethod.Percentile,
                       {"symmetric": False, "num_bins": 2048, "percentile": percentile}),
        "entropy": (CalibrationMethod.Entropy,
                    {"symmetric": False, "num_bins": 2048, "num_quantized_bins": 128}),
    }[method]
    import onnx

    input_name = onnx.load(fp32_path, load_external_data=False).graph.input[0].name
    calibrator = create_calibrator(fp32_path, list(op_types),
                                   augmented_model_path=os.path.join(tmp, "augmented.onnx"),
                                   calibrate_method=calib, extra_options=options)
    calibrator.collect_data(_CropReader(input_name, crops))
    return calibrator.compute_data(), calib


def quantize_onnx(fp32_path: str, out_path: str, crops: np.ndarray,
                  method: str = "minmax", ops: str = "all",
                  calibration: dict | None = None,
                  log: Callable[[str], None] | None = None,
                  fp32_nodes: Sequence[str] = (),
                  percentile: float = DEFAULT_PERCENTILE) -> dict:
    """Quantize ``fp32_path`` (an optimised odkd export) to ``out_path`` with ``crops`` as
    calibration inputs; returns the quantization record stored as ``odkd.quantization``.

    ``ops``: which operator types to quantize (:func:`ops_to_quantize`).
    ``calibration``: a description of where the crops came from, stored with the record.
    ``fp32_nodes``: regular expressions of node names left in fp32 (a model's declared
    ``default_cfg["int8_fp32"]``, :func:`odkd.models.fake_quant.declared_fp32_nodes`).
    ``method`` / ``percentile``: how activation ranges are read from the crops
    (:func:`calibrate_ranges`)."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if crops.ndim != 4 or not len(crops):
        raise OdkdError(f"calibration needs (N, 3, H, W) crops, got shape {crops.shape}")
    log = log or (lambda s: None)
    src = onnx.load(fp32_path, load_external_data=False)
    meta = _metadata(src)
    keep = fp32_node_names(src.graph, fp32_nodes)
    del src
    extra = {
        # Per-channel scales need int8 weights to span [-127, 127] symmetric around 0, the
        # form onnxruntime's int8 convolution kernels take.
        "WeightSymmetric": True, "ActivationSymmetric": False,
    }
    record = {"format": "QDQ", "weights": "int8, per output channel, symmetric",
              "activations": "uint8, per tensor", "calibration_method": method,
              **({"calibration_percentile": percentile} if method == "percentile" else {}),
              "calibration_crops": int(len(crops)),
              "operators": ops, **(calibration or {})}
    if keep:
        record["fp32_nodes"] = list(fp32_nodes)
        record["fp32_node_count"] = len(keep)
    op_types = ops_to_quantize(ops)
    log(f"calibrating on {len(crops)} crops ({method}) and quantizing "
        f"{'every operator type onnxruntime can but ConvTranspose' if ops == 'all' else ', '.join(op_types)}"
        + (f"; {len(keep)} nodes stay fp32" if keep else ""))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "int8.onnx")
        ranges, calib = calibrate_ranges(fp32_path, crops, op_types, method, tmp, percentile)
        cache = os.path.join(tmp, "ranges.json")
        save_tensors_data(ranges, cache)
        # The ranges go in as onnxruntime's calibration cache: quantize_static's own
        # calibration cannot be given the histogram settings calibrate_ranges needs.
        quantize_static(fp32_path, out, None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calib, op_types_to_quantize=op_types,
                        nodes_to_exclude=keep, extra_options=extra,
                        calibration_cache_path=cache)
        proto = onnx.load(out)
    meta[META_PREFIX + "quantization"] = json.dumps(record)
    onnx.checker.check_model(proto)
    _write_with_metadata(proto, meta, out_path)
    return record


def compare_outputs(fp32_path: str, int8_path_: str, crops: np.ndarray,
                    threads: int | None = None) -> dict[str, float]:
    """How far the int8 model is from the fp32 one on ``crops``: per output, max and mean
    abs difference, the fp32 max abs value, and for heatmaps the share of joints whose
    heatmap maximum lands on the same pixel."""
    from odkd.onnxrt import OrtPoseModel

    a, b = OrtPoseModel(fp32_path, threads=threads), OrtPoseModel(int8_path_, threads=threads)
    ref, got = a(crops), b(crops)
    out: dict[str, float] = {}
    for key in ref:
        r, g = ref[key].numpy(), got[key].numpy()
        out[f"{key}_max_abs_diff"] = float(np.abs(r - g).max())
        out[f"{key}_mean_abs_diff"] = float(np.abs(r - g).mean())
        out[f"{key}_ref_max_abs"] = float(np.abs(r).max())
    r, g = ref["heatmaps"].numpy(), got["heatmaps"].numpy()
    n, k = r.shape[:2]
    same = r.reshape(n, k, -1).argmax(-1) == g.reshape(n, k, -1).argmax(-1)
    out["heatmaps_same_argmax"] = float(same.mean())
    return out


def quantization_info(path: str) -> dict | None:
    """The ``odkd.quantization`` record of an ONNX file, None for an fp32 export."""
    raw = _metadata(path).get(META_PREFIX + "quantization")
    return json.loads(raw) if raw else None
