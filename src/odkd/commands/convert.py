"""``odkd convert SRC DST [--model NAME] [--num-joints K]``: any supported checkpoint -> odkd."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "convert", help="convert an official HRNet / mmpose / DataParallel checkpoint to odkd",
        description="Read SRC (odkd, official HRNet state_dict or training checkpoint, mmpose "
                    "0.x/1.x, 'module.'-prefixed state_dict), load it strictly into the named "
                    "architecture and write an odkd checkpoint to DST.")
    p.add_argument("src", help="checkpoint to read")
    p.add_argument("dst", help="odkd checkpoint to write")
    p.add_argument("--model", default=None,
                   help="architecture (e.g. hrnet_w32); required unless SRC is an odkd file")
    p.add_argument("--num-joints", type=int, default=None,
                   help="joints of the head (default: read from final_layer.weight)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from odkd.models.checkpoint import FORMAT_DESCRIPTIONS, convert

    fmt, model = convert(args.src, args.dst, name=args.model, num_joints=args.num_joints,
                         verbose=False)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.src}: detected {fmt} ({FORMAT_DESCRIPTIONS[fmt]})")
    print(f"wrote {args.dst}: {model.odkd_name}, {model.num_joints} joints"
          f"{', mask head' if model.with_mask else ''}, {n_params:,} parameters")
    return 0
