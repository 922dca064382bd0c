"""``odkd train CONFIG [key=value ...] [--resume] [--no-progress]``."""
from __future__ import annotations

import os

from odkd.config import ConfigError, load_config


def add_run_arguments(p) -> None:
    """Arguments shared by ``odkd train`` and ``odkd distill``."""
    # optional for argparse so that a missing CONFIG gets odkd's own message: argparse would
    # also call the (optional) overrides required
    p.add_argument("config", nargs="?",
                   help="YAML config file or shipped config name (`odkd configs` lists them)")
    p.add_argument("overrides", nargs="*", help="optional dotted key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue from WORKDIR/last.pt")
    p.add_argument("--workdir", help="output folder (same as workdir=DIR)")
    p.add_argument("--no-progress", action="store_true",
                   help="no per-iteration progress (bars on a terminal, periodic lines "
                        "otherwise); epoch lines stay")


def register(sub) -> None:
    p = sub.add_parser("train", help="train a pose model on COCO-format data",
                       description="Train a top-down heatmap pose model. CONFIG is a YAML file "
                                   "or the name of a shipped config; key=value pairs override it "
                                   "(e.g. train.epochs=20 data.sigma=2.5).")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run_training(args, distill: bool) -> int:
    from odkd.engine.dist import is_main
    from odkd.engine.distill import distill as run_distill
    from odkd.engine.train import train

    if not args.config or ("=" in args.config and not os.path.exists(args.config)):
        got = f" (got {args.config!r}, which looks like an override)" if args.config else ""
        raise ConfigError(f"CONFIG is required{got}: a YAML file or a shipped config name "
                          "(`odkd configs` lists them), then optional key=value overrides, "
                          "e.g. odkd train demo_scale train.epochs=2")
    overrides = list(args.overrides) + ([f"workdir={args.workdir}"] if args.workdir else [])
    cfg = load_config(args.config, overrides)
    out = (run_distill if distill else train)(cfg, resume=args.resume,
                                              progress=not args.no_progress)
    if is_main():
        print(f"[odkd] done: best AP {out['best_ap']:.4f}; checkpoints {out['best']} {out['last']}")
    return 0


def run(args) -> int:
    return run_training(args, distill=False)
