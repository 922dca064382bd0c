"""``odkd infer IMAGE|DIR|VIDEO [--checkpoint CKPT|NAME] [--boxes auto|detect|full|DETS.json]
[--out DIR]``: top-down inference with skeleton + mask overlays and a COCO results json.

Out of the box it runs the model shipped with odkd (``odkd-lightning``) on the people odkd's
offline person detector finds (``auto``: when ``odkd teachers fetch ssd-mobilenet-v2`` has been
run; otherwise the whole image is one person)."""
from __future__ import annotations

import argparse
import os

BOX_HELP = ("'auto' (default): 'detect' when the offline person detector ssd-mobilenet-v2 is "
            "in the teacher cache (`odkd teachers fetch ssd-mobilenet-v2`), else 'full'; "
            "'detect': that detector on each frame, a pose per person found; 'full': the whole "
            "image as one box; or a COCO results json with person bboxes")


def register(sub) -> None:
    p = sub.add_parser(
        "infer", help="pose inference on images / a folder / a video, with overlays",
        description="Top-down inference on person boxes (found by odkd's offline person "
                    "detector, read from a COCO detection results json, or 'full': the whole "
                    "image as one box). Writes one PNG overlay per image (an MP4 per video) "
                    "and results.json (COCO results format) to --out.")
    p.add_argument("input", nargs="?", default=None, metavar="INPUT",
                   help="an image, a folder of images or a video")
    p.add_argument("--input", dest="input_option", default=None, metavar="INPUT",
                   help="the same as the positional INPUT (give one of the two)")
    p.add_argument("--checkpoint", default="odkd-lightning",
                   help="odkd checkpoint (PyTorch), an ONNX file from `odkd export`, or the "
                        "name of a model shipped with odkd (default: odkd-lightning)")
    p.add_argument("--boxes", default="auto", help=BOX_HELP)
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
                   help="CPU threads (torch intra-op / onnxruntime intra-op, the detector's)")
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--det-thr", type=float, default=None,
                   help="minimum person box score (default 0.5 for --boxes detect, 0 for a "
                        "detections json)")
    p.add_argument("--kpt-thr", type=float, default=0.2, help="draw joints scoring above this")
    p.add_argument("--no-mask", action="store_true", help="do not draw predicted masks")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N images/frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def input_path(args: argparse.Namespace) -> str:
    """The one input: positional or --input (a one-line error for both or neither)."""
    from odkd.errors import DataError

    if args.input is not None and args.input_option is not None:
        raise DataError(f"two inputs given ({args.input} and --input {args.input_option}); "
                        "give one image, folder or video")
    path = args.input if args.input is not None else args.input_option
    if path is None:
        raise DataError("no input: give an image, a folder of images or a video, e.g. "
                        "`odkd infer photo.jpg`")
    if not os.path.exists(path):
        raise DataError(f"{path}: no such image, folder or video")
    return path


def run(args: argparse.Namespace) -> int:
    from odkd.api import load
    from odkd.data.coco import format_skips
    from odkd.deploy.infer import BOX_MODES, DETECTOR, box_threshold, run_inference
    from odkd.errors import DataError

    inp = input_path(args)
    if args.boxes not in BOX_MODES and not os.path.isfile(args.boxes):
        raise DataError(f"--boxes {args.boxes}: neither {', '.join(BOX_MODES)} nor an existing "
                        "detections json")
    # the API's loader: the checkpoint's eval settings reach `odkd infer` and `odkd.load` alike
    pose = load(args.checkpoint, backend=args.backend, device=args.device, model=args.model,
                input_size=args.input_size, threads=args.threads, batch_size=args.batch_size,
                flip=False if args.no_flip else None)
    mode = pose.box_mode(args.boxes) if args.boxes in BOX_MODES else args.boxes
    detector = pose.detector() if mode == "detect" else None
    if detector is not None:
        print(f"[odkd] person boxes: {DETECTOR} detections scoring >= "
              f"{box_threshold(mode, args.det_thr):g}")
    opts = pose.options(boxes=mode, ann=args.ann, det_thr=args.det_thr,
                        kpt_thr=args.kpt_thr, draw_masks=not args.no_mask,
                        max_frames=args.max_frames, progress=not args.no_progress)
    out = run_inference(pose.predictor, inp, args.out, opts, detector=detector)
    k = pose.spec.num_joints
    print(f"[odkd] {out['frames']} frame(s), {out['instances']} person(s), "
          f"{out['keypoints_drawn']} of {out['instances'] * k} keypoints above --kpt-thr "
          f"{args.kpt_thr:g} drawn{format_skips(out['skipped']).replace('skipped:', 'boxes skipped:')}; "
          f"wrote {len(out['overlays'])} overlay file(s) and {out['results']}")
    if mode == "detect" and out["frames_without_people"]:
        print(f"[odkd] no person detected in {out['frames_without_people']} of {out['frames']} "
              f"frame(s) (try a lower --det-thr, or --boxes full for one person per image)")
    if out["instances"] and not out["keypoints_drawn"]:
        print(f"[odkd] no keypoint scored above --kpt-thr {args.kpt_thr:g}: the overlays show "
              "no joints (an undertrained model? try a lower --kpt-thr)")
    return 0
