"""``odkd export CKPT --format onnx --out model.onnx [--input-size W H] [--opset N]
[--model NAME]``: ONNX with a dynamic batch axis, verified against PyTorch."""
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from odkd.deploy.loader import load_torch_model
    from odkd.deploy.onnx_export import DEFAULT_OPSET, VERIFY_TOL, export_onnx, verify_onnx
    from odkd.errors import OdkdError

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
    return 0
