"""``odkd distill CONFIG [key=value ...] [--resume]``."""
from __future__ import annotations

from odkd.config import load_config


def register(sub) -> None:
    p = sub.add_parser("distill", help="distil a student from the primary and senior teachers",
                       description="Train a student with ground truth plus teacher imitation. "
                                   "distill.schedule picks the order (orderly, simultaneous, "
                                   "reverse, pt_only, st_only, fpd, none); distill.pt.checkpoint "
                                   "and distill.st.checkpoint name the teachers.")
    p.add_argument("config", help="YAML config file (or shipped config name)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue from WORKDIR/last.pt")
    p.add_argument("--workdir", help="output folder (same as workdir=DIR)")
    p.set_defaults(func=run)


def run(args) -> int:
    from odkd.engine.distill import distill

    overrides = list(args.overrides) + ([f"workdir={args.workdir}"] if args.workdir else [])
    cfg = load_config(args.config, overrides)
    out = distill(cfg, resume=args.resume)
    from odkd.engine.dist import is_main

    if is_main():
        print(f"[odkd] done: best AP {out['best_ap']:.4f}; checkpoints {out['best']} {out['last']}")
    return 0
