"""``odkd demo [--out DIR]``: SynthPose data + the `demo` experiment + the final table."""
from __future__ import annotations

import os
import time


DESCRIPTION = ("Generate SynthPose, train the primary and senior teachers, then the students "
               "of the demo config (scratch and ODKD, one seed), evaluate on the val and "
               "occluded splits and print the table.")


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole paper pipeline offline on CPU in minutes",
                       description=DESCRIPTION)
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--config", default="demo", help="experiment config (default: shipped demo)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the experiment")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

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
