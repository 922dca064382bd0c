"""``odkd data import FORMAT SRC --out OUT.json``: real photo sets in their published formats
(LSP, TUD, Penn-Fudan, a folder of images, a video) -> a COCO person_keypoints json."""
from __future__ import annotations

import argparse
import json
import os

FORMAT_HELP = {
    "lsp": "Leeds Sports Pose folder (joints.mat + images/): 12 COCO limb joints per person",
    "tud": "TUD pedestrians folder (.idl boxes, .al points, maps/ masks): boxes + masks",
    "pennfudan": "PennFudanPed folder (Annotation/, PNGImages/, PedMasks/): boxes + masks",
    "folder": "a folder of images: an unlabelled set",
    "video": "a video file: sampled frames written as JPEGs next to the json, unlabelled",
}


def register(sub) -> None:
    p = sub.add_parser("data", help="import real photo sets (LSP, TUD, Penn-Fudan, images, "
                                    "video) to COCO format",
                       description="Dataset utilities.")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    imp = dsub.add_parser(
        "import", help="convert a dataset in its published format to COCO person_keypoints",
        description="Write OUT.json (COCO person_keypoints: images, person annotations with "
                    "boxes, COCO-17 keypoints where the format has them, RLE masks where it "
                    "has them). Image file names are relative to the folder printed as "
                    "'images:' (stored as info.image_root, relative to the json). The whole "
                    "source is read and checked before anything is written. Formats: "
                    + "; ".join(f"{k}: {v}" for k, v in FORMAT_HELP.items()) + ".")
    imp.add_argument("format", choices=list(FORMAT_HELP), help="source format")
    imp.add_argument("src", help="the dataset folder (or video file) as published")
    imp.add_argument("--out", required=True, metavar="OUT.json", help="json file to write")
    imp.add_argument("--split", default=None,
                     help="lsp: all, train (images 1-1000), test (1001-2000) or A-B "
                          "(default all)")
    imp.add_argument("--whole-image-box", action="store_true",
                     help="folder/video: one person box covering each whole image "
                          "(box_source: whole_image) instead of no annotations")
    imp.add_argument("--detect", nargs="?", const="ssd-mobilenet-v2", default=None,
                     metavar="DETECTOR",
                     help="folder/video/lsp: person boxes from an offline detector (default "
                          "ssd-mobilenet-v2; movenet-multipose is the more precise one; "
                          "`odkd teachers fetch` sets them up)")
    imp.add_argument("--det-thr", type=float, default=0.3,
                     help="--detect: lowest detection score kept (default 0.3)")
    imp.add_argument("--recursive", action="store_true", help="folder: include subfolders")
    imp.add_argument("--every", type=int, default=None,
                     help="video: keep every N-th frame (default every frame)")
    imp.add_argument("--fps", type=float, default=None,
                     help="video: keep about this many frames per second of video")
    imp.add_argument("--max-frames", type=int, default=None,
                     help="video: stop after this many kept frames")
    imp.add_argument("--json", action="store_true", help="print the counts as one JSON line")
    imp.set_defaults(func=run_import_cmd)
    mrg = dsub.add_parser("merge", help="merge COCO jsons (e.g. several imported sets) into one",
                          description="Write OUT.json holding the images and people of every "
                                      "INPUT json (ids renumbered, file names relative to one "
                                      "common image folder).")
    mrg.add_argument("inputs", nargs="+", metavar="INPUT.json")
    mrg.add_argument("--out", required=True, metavar="OUT.json", help="json file to write")
    mrg.set_defaults(func=run_merge_cmd)


def run_merge_cmd(args) -> int:
    from odkd.data.importers.common import write_coco
    from odkd.data.importers.merge import merge_coco

    result = merge_coco(args.inputs)
    write_coco(result, args.out)
    print(f"data merge: {result.summary()}")
    print(f"wrote {args.out}")
    return 0


def run_import_cmd(args) -> int:
    from odkd.data.importers import run_import

    detect = None
    if args.detect:
        from odkd.teachers.detector import get_detector

        # built first: a missing or unknown detector is one line before any image is read
        detector = get_detector(args.detect, score_threshold=args.det_thr)

        def detect(rgb):
            return detector(rgb, args.det_thr)
    result = run_import(args.format, args.src, args.out, detect=detect,
                        detector=args.detect or "", split=args.split,
                        whole_image_box=args.whole_image_box or None,
                        recursive=args.recursive or None, every=args.every, fps=args.fps,
                        max_frames=args.max_frames)
    counts = result.counts()
    if args.json:
        print(json.dumps({"format": args.format, "out": args.out,
                          "images_dir": result.image_root, **counts}))
        return 0
    print(f"data import {args.format}: {result.summary()}")
    print(f"wrote {args.out}")
    print(f"images: {os.path.relpath(result.image_root)} (the folder file_name is relative to)")
    return 0
