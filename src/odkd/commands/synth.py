"""``odkd synth``: generate SynthPose splits (COCO person_keypoints + jpgs), preview, bench."""
from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "synth", help="generate the embedded synthetic multi-person pose dataset (SynthPose)",
        description="Write DIR/annotations/person_keypoints_SPLIT.json and DIR/SPLIT/*.jpg. "
                    "The same arguments give byte-identical files whatever --workers is. "
                    "--bench instead prints generation throughput as JSON.")
    p.add_argument("--out", metavar="DIR", help="dataset root (required unless --bench)")
    p.add_argument("--split", default="train", choices=["train", "val", "occluded"],
                   help="train/val: 1-6 people; occluded: OCHuman-like heavy overlap")
    p.add_argument("--num-images", type=int, default=None,
                   help="images to write (default 1000; --bench: 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, nargs=2, default=[256, 256], metavar=("W", "H"))
    # written out here so building the CLI does not import OpenCV; tests/test_cli.py checks
    # them against odkd.synth.scene.DIFFICULTIES / DEFAULT_DIFFICULTY
    p.add_argument("--difficulty", default="medium", choices=["easy", "medium", "hard"],
                   help="medium (default): every pose kind, facing the camera (separates model "
                        "sizes at demo scale); hard: every pose kind at any yaw, left/right "
                        "only from face and clothing cues; easy: upright people facing the "
                        "camera (what a 2-core CPU can learn in minutes)")
    p.add_argument("--backgrounds", metavar="DIR", default=None,
                   help="folder of photos mixed in as backgrounds")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default: all cores)")
    p.add_argument("--preview", action="store_true",
                   help="also write DIR/preview_SPLIT.png (skeletons + mask overlays)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--bench", action="store_true",
                   help="print throughput JSON (images/s per core, masks included) and exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from odkd.errors import OdkdError

    if args.bench:
        from odkd.synth.bench import bench

        n = args.num_images or 500
        print(json.dumps(bench(n, tuple(args.size), args.split, args.workers or 1,
                               args.difficulty)))
        return 0
    if not args.out:
        raise OdkdError("--out DIR is required (or use --bench)")
    from odkd.synth import generate_split

    s = generate_split(args.out, args.split, args.num_images or 1000, args.seed,
                       tuple(args.size), args.backgrounds, args.workers,
                       progress=not args.no_progress, difficulty=args.difficulty)
    print(f"synth {s['split']}: {s['num_images']} images, {s['num_annotations']} people "
          f"({s['people_per_image']}/image), keypoints {s['visible_keypoints']} visible / "
          f"{s['occluded_keypoints']} occluded, mean max-IoU between boxes "
          f"{s['mean_max_iou']:.3f}, {s['images_per_s']} images/s on {s['workers']} workers")
    print(f"wrote {s['ann_file']} and {s['image_dir']}/")
    if args.preview:
        from odkd.synth.preview import contact_sheet

        print(f"wrote {contact_sheet(args.out, args.split)}")
    return 0
