"""``odkd eval [CONFIG] --checkpoint PATH | --model TEACHER [--ann FILE --images DIR]
[--boxes gt|DETS.json] [--metric coco|pck] [--no-flip] [--out DIR] [--oracle]``."""
from __future__ import annotations

import os

from odkd.config import load_config
from odkd.errors import OdkdError


def register(sub) -> None:
    p = sub.add_parser("eval", help="COCO keypoint evaluation of a checkpoint, a real teacher "
                                    "(or the GT oracle)",
                       description="Evaluate a checkpoint or a real teacher on a COCO-format "
                                   "keypoint set with pycocotools (--metric coco), or on a "
                                   "14-joint set such as LSP by PCK@0.2 on the protocol box and "
                                   "OKS AP over the labelled joints (--metric pck). Without "
                                   "CONFIG the settings stored in the checkpoint are used.")
    p.add_argument("config", nargs="?", help="YAML config (optional)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--checkpoint", help="odkd / official HRNet / mmpose checkpoint")
    p.add_argument("--model", help="with --checkpoint: the architecture of a foreign checkpoint "
                                   "(e.g. hrnet_w32); without it: a real teacher to evaluate "
                                   "(a name from `odkd teachers list`, KEYPOINTS+MASK, "
                                   "checkpoint:PATH or a teacher YAML file)")
    p.add_argument("--metric", choices=["coco", "pck"], default="coco",
                   help="coco: COCO keypoint AP on the boxes of --boxes (default); pck: one crop "
                        "per annotated person on the protocol box (its joints' extent, square, "
                        "1.25x), PCK@0.2 over the limb joints (odkd.eval.pck), OKS AP over "
                        "the labelled joints, and mask IoU for mask models where the set has "
                        "segmentations")
    p.add_argument("--threads", type=int, default=None,
                   help="runtime threads of a teacher (default 1) or torch threads")
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
    from odkd.engine.evaluate import (build_eval_records, format_metrics, run_evaluation,
                                      run_teacher_evaluation)
    from odkd.utils import pick_device

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not os.path.exists(args.config):
        # `odkd eval key=value ...` without a config: the first override lands in CONFIG
        overrides.insert(0, args.config)
        args.config = None
    if args.threads is not None and args.threads < 1:
        raise OdkdError(f"--threads must be >= 1, got {args.threads}")
    # --model without --checkpoint names a teacher: it is run, not built from weights
    teacher_name = args.model if args.model and not args.checkpoint else None
    if teacher_name and args.oracle:
        raise OdkdError("--oracle evaluates ground-truth heatmaps: give no --model")
    if args.metric == "pck":
        return run_pck(args, teacher_name, overrides)
    loaded = None
    if teacher_name:
        cfg = load_config(args.config, overrides)
    elif args.checkpoint and not args.oracle:
        from odkd.deploy.loader import load_pose

        # the loader of `odkd.load` / `odkd infer`: stored config (or CONFIG), model, spec
        loaded = load_pose(args.checkpoint, backend=args.backend, device=args.device,
                           name=args.model or None, config=args.config, overrides=overrides,
                           verbose=True)
        cfg = loaded.cfg
    elif args.checkpoint:
        from odkd.models.checkpoint import checkpoint_config

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
    if not args.oracle and not args.checkpoint and not teacher_name:
        raise OdkdError("give --checkpoint PATH, --model TEACHER (or --oracle to evaluate "
                        "ground-truth heatmaps)")

    model, device = (loaded.model, loaded.device) if loaded else (None,
                                                                  pick_device(cfg.train.device))
    skipped: dict = {}
    coco, records = build_eval_records(cfg, ann, images, boxes, oracle=args.oracle,
                                       skipped=skipped)
    what = "GT" if boxes == "gt" else detections_summary(boxes, records, skipped)
    teacher = _teacher(teacher_name, args) if teacher_name else None
    if teacher is not None and coco.num_joints != 17:
        raise OdkdError(f"{ann}: {coco.num_joints} joints per person; teachers give COCO-17")
    how = f"teacher {teacher.name}, {args.threads or 1} thread(s)" if teacher else \
        f"protocol {cfg.eval.protocol}, " \
        f"{'bf16' if cfg.eval.amp == 'bf16' and not args.oracle else 'fp32'}"
    print(f"[odkd] {coco.summary()}; evaluating {len(records)} boxes ({what})"
          f"{' with the GT oracle' if args.oracle else ''}; {how}")
    out_dir = args.out
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with torch.inference_mode():
        if teacher is not None:
            metrics = run_teacher_evaluation(cfg, teacher, coco, records, out_dir=out_dir)
        else:
            metrics = run_evaluation(cfg, model, coco, records, device, out_dir=out_dir,
                                     oracle=args.oracle)
    print(format_metrics(metrics))
    if out_dir:
        print(f"[odkd] wrote {os.path.join(out_dir, 'results.json')} and metrics.json")
    return 0


def _teacher(name: str, args, arch: str | None = None):
    """The teacher ``name``; for a checkpoint, ``arch`` is a foreign checkpoint's
    architecture."""
    from odkd.teachers import get_teacher
    from odkd.teachers.checkpoint import is_checkpoint_name

    opts = {}
    if is_checkpoint_name(name):
        # a checkpoint teacher runs with its stored settings; these flags still apply
        opts = {"flip_test": False if args.no_flip else None, "device": args.device or "cpu",
                "model": arch}
    elif args.no_flip:
        raise OdkdError(f"--no-flip: teacher {name} has no flip test of odkd's (only odkd "
                        "checkpoints do)")
    return get_teacher(name, num_threads=args.threads or 1, **opts)


def _is_onnx(args) -> bool:
    from odkd.deploy.loader import resolve_backend
    from odkd.models.zoo import resolve_checkpoint

    return resolve_backend(resolve_checkpoint(args.checkpoint), args.backend) == "onnxruntime"


def run_pck(args, teacher_name: str | None, overrides: list[str]) -> int:
    """``--metric pck``: the per-person protocol of ``odkd teachers eval`` (odkd.eval.people),
    for a teacher or, through the checkpoint teacher, a checkpoint."""
    import json

    from odkd.engine.evaluate import format_metrics
    from odkd.eval.coco_eval import write_metrics
    from odkd.eval.people import score_people, teacher_report
    from odkd.eval.pck import oks_ap

    if args.oracle:
        raise OdkdError("--metric pck scores a model or a teacher; --oracle is for --metric coco")
    if args.boxes not in (None, "gt"):
        raise OdkdError("--metric pck crops each person on the protocol box of its joints; "
                        "--boxes does not apply")
    if args.config or overrides:
        raise OdkdError("--metric pck runs a checkpoint with its stored settings; CONFIG and "
                        "overrides do not apply (--no-flip does)")
    if not args.ann:
        raise OdkdError("--metric pck needs --ann FILE (e.g. from `odkd data import lsp ... "
                        "--split test`)")
    if teacher_name:
        name, teacher = teacher_name, _teacher(teacher_name, args)
    elif args.checkpoint:
        from odkd.models.zoo import resolve_checkpoint
        from odkd.teachers.checkpoint import PREFIX

        name = args.checkpoint
        onnx = _is_onnx(args)   # also refuses --backend torch for an .onnx file
        if onnx and not resolve_checkpoint(args.checkpoint).lower().endswith(".onnx"):
            raise OdkdError(f"{args.checkpoint}: --backend onnxruntime runs an `odkd export` "
                            ".onnx file; export the checkpoint first")
        # the checkpoint teacher runs checkpoints and `odkd export` ONNX files alike; beside
        # --checkpoint, --model is a foreign checkpoint's architecture
        teacher = _teacher(PREFIX + args.checkpoint, args, arch=args.model)
    else:
        raise OdkdError("give --checkpoint PATH or --model TEACHER")
    scores = score_people(args.ann, args.images, {name: teacher})
    report, parts = teacher_report(name, teacher, scores)
    out_dir = args.out
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    metrics: dict = {}
    if len(scores.gts):
        # results carry ann_id too (for PCK); COCOeval reads image_id, keypoints and score
        metrics.update(oks_ap(args.ann, scores.results[name], out_dir=out_dir))
        metrics.update({"PCK@0.2": report["pck"], "confidence_auc": report["confidence_auc"]})
    if "mask_iou" in report:
        metrics["mask_iou"] = report["mask_iou"]
    metrics["latency_ms_mean"] = report.get("latency_ms_mean")
    # NaN (e.g. a confidence AUC with no wrong joint) is not JSON: null instead
    metrics = {k: None if isinstance(v, float) and v != v else v for k, v in metrics.items()}
    if out_dir:
        write_metrics(out_dir, metrics)
    print(f"[odkd] {name}: {'; '.join(parts)}; {scores.people} people, {scores.wall:.0f} s")
    if len(scores.gts):
        print("OKS AP over the labelled joints:")
        print(format_metrics(metrics))
    print(json.dumps({k: v for k, v in report.items() if k != "per_joint"}))
    if out_dir:
        print(f"[odkd] wrote {os.path.join(out_dir, 'metrics.json')}"
              f"{' and results.json' if len(scores.gts) else ''}")
    return 0
