"""``odkd export CKPT --format onnx --out model.onnx [--input-size W H] [--opset N]
[--model NAME] [--int8 [--calib-ann FILE --calib-images DIR | --calib-synth LEVEL]]``: ONNX
with a dynamic batch axis, verified against PyTorch; with ``--int8`` also the graph-optimised
fp32 file and an int8 one next to it (:mod:`odkd.deploy.quantize`)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a checkpoint to ONNX (dynamic batch) and verify it",
        description="Export a checkpoint to ONNX with a dynamic batch axis and a fixed crop "
                    "size, store the model name, input size, keypoint names, skeleton and flip "
                    "pairs as metadata (so `odkd infer` / `odkd eval --backend onnxruntime` need "
                    "no extra flags), then compare onnxruntime with PyTorch on random input.")
    p.add_argument("checkpoint", help="odkd checkpoint (or official / mmpose with --model)")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    p.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None,
                   help="crop size (default: data.input_size of the checkpoint's config, "
                        "else 192 256)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--model", default=None, help="architecture for foreign checkpoints")
    p.add_argument("--tol", type=float, default=None,
                   help="max allowed abs difference to PyTorch (default 1e-3)")
    q = p.add_argument_group(
        "int8", "--int8 writes OUT as the graph-optimised fp32 model and OUT's stem + .int8.onnx "
                "as its static int8 quantization (QDQ, per-channel int8 weights, uint8 "
                "activations calibrated on evaluation crops of the training data)")
    q.add_argument("--int8", action="store_true", help="also write the int8 model")
    q.add_argument("--calib-ann", default=None,
                   help="COCO person_keypoints json to calibrate on; people need only a box "
                        "(default: data.train_ann of the checkpoint's config)")
    q.add_argument("--calib-images", default=None,
                   help="its image folder (default: data.train_images of the config, else the "
                        "json's info.image_root as `odkd data import` writes it)")
    q.add_argument("--calib-synth", default=None, choices=["easy", "medium", "hard"],
                   help="calibrate on freshly drawn SynthPose training images of this "
                        "difficulty instead (seed 0, 256x256)")
    q.add_argument("--calib-crops", type=int, default=None,
                   help="people to calibrate on, spread over the set (default 256)")
    q.add_argument("--calib-method", default="minmax", choices=["minmax", "percentile",
                                                                "entropy"],
                   help="how activation ranges are set from the calibration crops: the "
                        "extremes seen (minmax), a percentile of each tail (percentile), or "
                        "the range closest in KL divergence (entropy)")
    q.add_argument("--calib-percentile", type=float, default=None,
                   help="percentile: the share of values kept inside the range, in %% "
                        "(default 99.999)")
    q.add_argument("--int8-ops", default="all", choices=["all", "conv"],
                   help="all (default): every operator type onnxruntime quantizes but "
                        "ConvTranspose (no int8 kernel); conv: Conv, MatMul, Gemm only")
    q.add_argument("--int8-fp32", nargs="*", default=None, metavar="REGEX",
                   help="ONNX node names (regular expressions) to keep in fp32; default: the "
                        "layers the architecture declares (MoveNet: its last conv and heatmap "
                        "head); the flag alone: every layer int8")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from odkd.deploy.loader import load_torch_model
    from odkd.deploy.onnx_export import DEFAULT_OPSET, VERIFY_TOL, export_onnx, verify_onnx
    from odkd.errors import OdkdError

    calib_flags = [f for f, v in (("--calib-ann", args.calib_ann),
                                  ("--calib-images", args.calib_images),
                                  ("--calib-synth", args.calib_synth),
                                  ("--calib-crops", args.calib_crops),
                                  ("--int8-fp32", args.int8_fp32)) if v is not None]
    if calib_flags and not args.int8:
        raise OdkdError(f"{calib_flags[0]} only applies with --int8")
    if args.calib_synth and (args.calib_ann or args.calib_images):
        raise OdkdError("give --calib-synth or --calib-ann/--calib-images, not both")
    model, spec = load_torch_model(args.checkpoint, name=args.model, input_size=args.input_size)
    opset = args.opset or DEFAULT_OPSET
    tol = VERIFY_TOL if args.tol is None else args.tol
    w, h = spec.input_size
    with torch.no_grad():
        export_onnx(model, spec, args.out, opset=opset)
    diffs = verify_onnx(model, args.out, batch=2)
    print(f"wrote {args.out}: {spec.name}, input {w}x{h} (dynamic batch), {spec.num_joints} "
          f"joints{', mask output' if spec.with_mask else ''}, opset {opset}")
    for key in [k for k in diffs if not k.endswith("_ref_max_abs")]:
        print(f"onnxruntime vs PyTorch on random input (batch 2): {key} max abs diff "
              f"{diffs[key]:.3g} (PyTorch max abs {diffs[key + '_ref_max_abs']:.3g})")
    bad = {k: v for k, v in diffs.items() if not k.endswith("_ref_max_abs") and not v <= tol}
    if bad:
        raise OdkdError(f"{args.out}: onnxruntime differs from PyTorch by more than {tol:g} "
                        f"({', '.join(f'{k} {v:.3g}' for k, v in bad.items())}); the export is "
                        "not faithful")
    if args.int8:
        export_int8(args, model, spec, tol)
    return 0


def export_int8(args: argparse.Namespace, model, spec, tol: float) -> None:
    """OUT -> graph-optimised fp32 (verified again), then OUT.int8.onnx calibrated on crops."""
    import os
    import tempfile

    from odkd.deploy.onnx_export import verify_onnx
    from odkd.deploy.quantize import (DEFAULT_CROPS, DEFAULT_PERCENTILE, calibration_crops,
                                      compare_outputs, int8_path, optimize_fp32, quantize_onnx,
                                      synth_calibration_set)
    from odkd.errors import OdkdError
    from odkd.models.fake_quant import declared_fp32_nodes

    n = DEFAULT_CROPS if args.calib_crops is None else args.calib_crops
    if n < 1:
        raise OdkdError(f"--calib-crops must be >= 1, got {n}")
    optimize_fp32(args.out, args.out)
    diffs = verify_onnx(model, args.out, batch=2)
    if not diffs["heatmaps"] <= tol:
        raise OdkdError(f"{args.out}: the optimised graph differs from PyTorch by "
                        f"{diffs['heatmaps']:.3g} > {tol:g}")
    print(f"optimised {args.out} (onnxruntime basic graph optimisations): heatmaps max abs "
          f"diff to PyTorch {diffs['heatmaps']:.3g}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.calib_synth:
            ann, images = synth_calibration_set(tmp, n, args.calib_synth)
            source = {"calibration_data": f"SynthPose train, {args.calib_synth}, seed 0"}
        else:
            train = spec.config.get("data", {})
            ann = args.calib_ann or train.get("train_ann") or ""
            images = args.calib_images or train.get("train_images") or ""
            if not ann:
                raise OdkdError("--int8 needs calibration data: --calib-ann FILE [--calib-images "
                                "DIR], or --calib-synth LEVEL (the checkpoint's config names no "
                                "data.train_ann)")
            source = {"calibration_data": os.path.basename(ann)}
        crops = calibration_crops(spec, ann, images, n)
        out8 = int8_path(args.out)
        fp32 = declared_fp32_nodes(model) if args.int8_fp32 is None else args.int8_fp32
        quantize_onnx(args.out, out8, crops, method=args.calib_method,
                      ops=args.int8_ops, calibration=source,
                      log=lambda s: print(f"[odkd] {s}", flush=True), fp32_nodes=fp32,
                      percentile=DEFAULT_PERCENTILE if args.calib_percentile is None
                      else args.calib_percentile)
    cmp = compare_outputs(args.out, out8, crops[:64])
    print(f"wrote {out8}: int8 (QDQ, per-channel weights, {len(crops)} calibration crops, "
          f"{args.calib_method}); on 64 of those crops vs fp32: heatmaps max abs diff "
          f"{cmp['heatmaps_max_abs_diff']:.3g} (fp32 max {cmp['heatmaps_ref_max_abs']:.3g}), "
          f"same heatmap maximum for {100 * cmp['heatmaps_same_argmax']:.1f} % of joints")
