"""``odkd train CONFIG [key=value ...] [--resume]``."""
from __future__ import annotations

from odkd.config import load_config


def add_run_arguments(p) -> None:
    """Arguments shared by ``odkd train`` and ``odkd distill``."""
    p.add_argument("config", help="YAML config file (or shipped config name)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue from WORKDIR/last.pt")
    p.add_argument("--workdir", help="output folder (same as workdir=DIR)")


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

    overrides = list(args.overrides) + ([f"workdir={args.workdir}"] if args.workdir else [])
    cfg = load_config(args.config, overrides)
    out = (run_distill if distill else train)(cfg, resume=args.resume)
    if is_main():
        print(f"[odkd] done: best AP {out['best_ap']:.4f}; checkpoints {out['best']} {out['last']}")
    return 0


def run(args) -> int:
    return run_training(args, distill=False)
