"""``odkd infer --checkpoint CKPT --input IMAGE|DIR|VIDEO [--boxes BOXES.json|full] [--out DIR]``:
top-down inference with skeleton + mask overlays and a COCO results json."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "infer", help="pose inference on images / a folder / a video, with overlays",
        description="Top-down inference on person boxes (a COCO detection results json, or "
                    "'full': the whole image as one box). Writes one PNG overlay per image (an "
                    "MP4 per video) and results.json (COCO results format) to --out.")
    p.add_argument("--checkpoint", required=True,
                   help="odkd checkpoint (PyTorch) or an ONNX file from `odkd export`")
    p.add_argument("--input", required=True, help="an image, a folder of images or a video")
    p.add_argument("--boxes", default="full",
                   help="'full' (default) or a COCO results json with person bboxes")
    p.add_argument("--ann", default=None,
                   help="COCO json whose images[] map file names to the image ids of --boxes "
                        "(default: numeric file names, e.g. 000000000785.jpg -> 785)")
    p.add_argument("--out", default="infer_out", help="output folder (default infer_out)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="default: onnxruntime for .onnx files, torch otherwise")
    p.add_argument("--model", default=None, help="architecture for foreign checkpoints")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None,
                   help="crop size for PyTorch checkpoints (default: from the checkpoint)")
    p.add_argument("--batch-size", type=int, default=32, help="crops per forward pass")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (torch intra-op / onnxruntime intra-op)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--det-thr", type=float, default=0.0, help="minimum detection score")
    p.add_argument("--kpt-thr", type=float, default=0.2, help="draw joints scoring above this")
    p.add_argument("--no-mask", action="store_true", help="do not draw predicted masks")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N images/frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from odkd.api import load
    from odkd.data.coco import format_skips
    from odkd.deploy.infer import run_inference

    # the API's loader: the checkpoint's eval settings reach `odkd infer` and `odkd.load` alike
    pose = load(args.checkpoint, backend=args.backend, device=args.device, model=args.model,
                input_size=args.input_size, threads=args.threads, batch_size=args.batch_size,
                flip=False if args.no_flip else None)
    opts = pose.options(boxes=args.boxes, ann=args.ann, det_thr=args.det_thr,
                        kpt_thr=args.kpt_thr, draw_masks=not args.no_mask,
                        max_frames=args.max_frames, progress=not args.no_progress)
    out = run_inference(pose.predictor, args.input, args.out, opts)
    k = pose.spec.num_joints
    print(f"[odkd] {out['frames']} frame(s), {out['instances']} person(s), "
          f"{out['keypoints_drawn']} of {out['instances'] * k} keypoints above --kpt-thr "
          f"{args.kpt_thr:g} drawn{format_skips(out['skipped']).replace('skipped:', 'boxes skipped:')}; "
          f"wrote {len(out['overlays'])} overlay file(s) and {out['results']}")
    if out["instances"] and not out["keypoints_drawn"]:
        print(f"[odkd] no keypoint scored above --kpt-thr {args.kpt_thr:g}: the overlays show "
              "no joints (an undertrained model? try a lower --kpt-thr)")
    return 0
