"""``odkd eval [CONFIG] --checkpoint PATH [--ann FILE --images DIR] [--boxes gt|DETS.json]
[--no-flip] [--out DIR] [--oracle]``."""
from __future__ import annotations

import os

from odkd.config import load_config
from odkd.errors import OdkdError


def register(sub) -> None:
    p = sub.add_parser("eval", help="COCO keypoint evaluation of a checkpoint (or the GT oracle)",
                       description="Evaluate a checkpoint on a COCO-format keypoint set with "
                                   "pycocotools. Without CONFIG the settings stored in the "
                                   "checkpoint are used.")
    p.add_argument("config", nargs="?", help="YAML config (optional)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--checkpoint", help="odkd / official HRNet / mmpose checkpoint")
    p.add_argument("--model", help="architecture for foreign checkpoints (e.g. hrnet_w32)")
    p.add_argument("--ann", help="COCO person_keypoints json (default: data.val_ann)")
    p.add_argument("--images", help="image folder (default: data.val_images)")
    p.add_argument("--boxes", default=None, help="'gt' or a COCO-results detection json")
    p.add_argument("--no-flip", action="store_true", help="disable flip test")
    p.add_argument("--oracle", action="store_true",
                   help="decode heatmaps encoded from the ground truth (no checkpoint needed)")
    p.add_argument("--out", help="folder for results.json and metrics.json")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default auto)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="run --checkpoint with PyTorch or onnxruntime (an `odkd export` ONNX "
                        "file); default: onnxruntime for .onnx files, torch otherwise")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from odkd.data.coco import detections_summary
    from odkd.engine.evaluate import build_eval_records, format_metrics, run_evaluation
    from odkd.utils import pick_device

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not os.path.exists(args.config):
        # `odkd eval key=value ...` without a config: the first override lands in CONFIG
        overrides.insert(0, args.config)
        args.config = None
    loaded = None
    if args.checkpoint and not args.oracle:
        from odkd.deploy.loader import load_pose

        # the loader of `odkd.load` / `odkd infer`: stored config (or CONFIG), model, spec
        loaded = load_pose(args.checkpoint, backend=args.backend, device=args.device,
                           name=args.model or None, config=args.config, overrides=overrides,
                           verbose=True)
        cfg = loaded.cfg
    elif args.checkpoint:
        from odkd.deploy.spec import checkpoint_config

        cfg = checkpoint_config(args.checkpoint, args.config, overrides)
    else:
        cfg = load_config(args.config, overrides)
    if args.no_flip:
        cfg.eval.flip_test = False
    if args.device:
        cfg.train.device = args.device
    ann = args.ann or cfg.data.val_ann
    images = args.images or cfg.data.val_images
    if not ann or not images:
        raise OdkdError("no evaluation set: give --ann FILE --images DIR (or data.val_ann / "
                        "data.val_images in the config)")
    boxes = args.boxes or cfg.data.boxes or "gt"
    if not args.oracle and not args.checkpoint:
        raise OdkdError("give --checkpoint PATH (or --oracle to evaluate ground-truth heatmaps)")

    model, device = (loaded.model, loaded.device) if loaded else (None,
                                                                  pick_device(cfg.train.device))
    skipped: dict = {}
    coco, records = build_eval_records(cfg, ann, images, boxes, oracle=args.oracle,
                                       skipped=skipped)
    what = "GT" if boxes == "gt" else detections_summary(boxes, records, skipped)
    print(f"[odkd] {coco.summary()}; evaluating {len(records)} boxes ({what})"
          f"{' with the GT oracle' if args.oracle else ''}; protocol {cfg.eval.protocol}, "
          f"{'bf16' if cfg.eval.amp == 'bf16' and not args.oracle else 'fp32'}")
    out_dir = args.out
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with torch.inference_mode():
        metrics = run_evaluation(cfg, model, coco, records, device, out_dir=out_dir,
                                 oracle=args.oracle)
    print(format_metrics(metrics))
    if out_dir:
        print(f"[odkd] wrote {os.path.join(out_dir, 'results.json')} and metrics.json")
    return 0
