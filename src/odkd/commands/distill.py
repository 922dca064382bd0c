"""``odkd distill CONFIG [key=value ...] [--resume]``."""
from __future__ import annotations

from odkd.commands.train import add_run_arguments, run_training


def register(sub) -> None:
    p = sub.add_parser("distill", help="distil a student from the primary and senior teachers",
                       description="Train a student with ground truth plus teacher imitation. "
                                   "distill.schedule picks the order (orderly, simultaneous, "
                                   "reverse, pt_only, st_only, none), distill.method the loss "
                                   "(odkd, or fpd for the FPD baseline); distill.pt.checkpoint "
                                   "and distill.st.checkpoint name the teachers.")
    add_run_arguments(p)
    p.set_defaults(func=lambda args: run_training(args, distill=True))
