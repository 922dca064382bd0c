"""``odkd demo [--out DIR]``: SynthPose data + the `demo` experiment + the final table."""
from __future__ import annotations

import os
import time


DESCRIPTION = ("`odkd demo`: generate SynthPose, train the primary and senior teachers, then "
               "the students of the demo config (scratch and ODKD, one seed), evaluate on the "
               "val and occluded splits and print the table. `odkd demo real`: distil MoveNet "
               "Lightning's architecture from the real teachers (PT movenet-lightning, ST "
               "movenet-thunder + blazepose-heavy's mask) on the shared real images without "
               "labels, and print LSP 1001-2000 PCK@0.2 and real-mini AP per method.")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole paper pipeline offline on CPU in minutes",
                       description=DESCRIPTION)
    p.add_argument("--out", default=None,
                   help="output folder (default demo_out, or real_out for `demo real`)")
    p.add_argument("--config", default="demo", help="experiment config (default: shipped demo)")
    p.add_argument("overrides", nargs="*",
                   help="`real` for the real-photo demo; dotted key=value overrides (of the "
                        "experiment, or of the real_distill config for `demo real`)")
    real = p.add_argument_group("demo real")
    real.add_argument("--shared", default="../shared",
                      help="the shared data folder holding data/real (default ../shared)")
    real.add_argument("--methods", default="start,pseudo,odkd",
                      help="comma-separated, from: " + ", ".join(REAL_METHODS))
    real.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    real.add_argument("--people", type=int, default=300,
                      help="training people, spread over the sets (default 300; 0 = all)")
    real.add_argument("--train", default=None, metavar="JSON",
                      help="train on this COCO json (e.g. `odkd data import folder ... "
                           "--detect`) instead of the shared real sets")
    real.add_argument("--jobs", type=int, default=2,
                      help="runs at once, one torch thread each (default 2)")
    p.set_defaults(func=run)


REAL_METHODS = ("start", "pseudo", "kd", "both", "odkd", "odkd_nomask", "odkd_nobin")


def run_real_demo(args, overrides) -> int:
    from odkd.experiment.real import run_real

    t0 = time.time()
    out = os.path.abspath(args.out or "real_out")
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    print(f"[odkd] demo real -> {out}: methods {', '.join(methods)}; seeds "
          f"{', '.join(map(str, seeds))}; {args.people or 'all'} people")
    run_real(out, args.shared, methods, seeds, overrides, jobs=args.jobs, people=args.people,
             train=args.train)
    print(f"[odkd] demo real finished in {(time.time() - t0) / 60:.1f} min")
    return 0


def run(args) -> int:
    import torch

    if args.overrides and args.overrides[0] == "real":
        return run_real_demo(args, args.overrides[1:])
    args.out = args.out or "demo_out"
    from odkd.experiment import load_experiment, run_experiment

    t0 = time.time()
    out = os.path.abspath(args.out)
    exp = load_experiment(args.config, [f"out={out}", f"synth.root={os.path.join(out, 'data')}",
                                        *args.overrides])
    print(f"[odkd] demo: {exp.name} -> {out} (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    res = run_experiment(exp)
    print(f"\n[odkd] demo finished in {(time.time() - t0) / 60:.1f} min. Files:")
    for f in res["files"]:  # what the experiment wrote: no curves.png without val AP logs
        print(f"  {f}")
    print(f"  {os.path.join(out, 'teachers')}/  (teacher checkpoints)")
    print(f"  {os.path.join(out, 'runs')}/      (one folder per method/student/seed)")
    return 0
