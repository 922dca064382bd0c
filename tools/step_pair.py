"""A model file at two commits, timed step by step in one process.

    python tools/step_pair.py --against REV [--model litehrnet_18] [--steps 20] [--json F]

Loads ``src/odkd/models/<file>.py`` as it is in the working tree ("new") and as it was at git
revision ``REV`` ("old"), builds the same model from both with equal weights, and times the
converged experiment's CPU steps at one thread (the experiment's ``threads_per_job``): student
step (forward + backward + fused Adam, batch 16 crops of 64x96, channels_last, mask head), KD
step (the same plus a frozen, BN-folded teacher forward of the same file and its MSE), the
teacher forward alone, and the flip-test forward of an evaluation (batch 64): the old file as
evaluation ran it before 5a10c91 (NCHW, BatchNorm separate), the new one as it runs now
(BN folded, channels_last). Old and new alternate step by step, in alternating order, so the
machine's drift falls on both alike; the ratio of the medians is the figure to quote.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

FILES = {"litehrnet_18": "litehrnet"}


def load_at(rev: str, module: str):
    """The module ``odkd.models.<module>`` as it was at ``rev`` (imports resolve in today's
    package, which is fine for a model file that only uses torch and odkd.errors)."""
    src = subprocess.run(["git", "show", f"{rev}:src/odkd/models/{module}.py"], check=True,
                         capture_output=True, text=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"odkd_{module}_at_{rev}", f.name)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    os.unlink(f.name)
    return mod


def steps_for(builder, state: dict, batch: int):
    import torch

    from odkd.distill.teachers import FrozenTeacher

    cl = torch.channels_last
    m = builder(17, True)
    m.load_state_dict(state)
    m = m.to(memory_format=cl)
    t = builder(17, True)
    t.load_state_dict(state)
    t = FrozenTeacher(t)
    t.to(memory_format=cl)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
    x = torch.randn(batch, 3, 96, 64, generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=cl)

    def student():
        out = m(x)
        loss = out["heatmaps"].square().mean() + out["mask"].sigmoid().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def kd():
        out = m(x)
        target = t(x)
        loss = (out["heatmaps"] - target["heatmaps"]).square().mean() \
            + (out["mask"] - target["mask"]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def teacher():
        t(x)

    return {"student step": student, "KD step": kd, "teacher forward": teacher}


def eval_forward_for(builder, state: dict, batch: int, folded: bool):
    """The flip-test forward of a final evaluation (``predict_heatmaps``, batch ``batch``): as
    ``run_evaluation`` ran it before 5a10c91 (eval mode, NCHW, BatchNorm separate) or, with
    ``folded``, as it runs now (``inference_copy``: BN folded, channels_last)."""
    import torch

    from odkd.codec import HeatmapCodec, predict_heatmaps
    from odkd.models.fold import inference_copy

    m = builder(17, True)
    m.load_state_dict(state)
    m = inference_copy(m, True) if folded else m.eval()
    x = torch.randn(batch, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    if folded:
        x = x.contiguous(memory_format=torch.channels_last)
    codec = HeatmapCodec((64, 96))

    def run():
        with torch.inference_mode():
            predict_heatmaps(m, x, codec, [], True)

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="git revision of the old model file")
    ap.add_argument("--model", default="litehrnet_18", choices=sorted(FILES))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--eval-batch", type=int, default=64,
                    help="batch of the flip-test evaluation forward (eval.batch_size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default="", help="also write the figures here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    module = FILES[args.model]
    old = getattr(load_at(args.against, module), args.model)
    new = getattr(importlib.import_module(f"odkd.models.{module}"), args.model)
    torch.manual_seed(0)
    state = new(17, True).state_dict()
    fns = {"old": steps_for(old, state, args.batch), "new": steps_for(new, state, args.batch)}
    eval_row = f"eval forward x{args.eval_batch}"
    fns["old"][eval_row] = eval_forward_for(old, state, args.eval_batch, folded=False)
    fns["new"][eval_row] = eval_forward_for(new, state, args.eval_batch, folded=True)
    sizes = {eval_row: args.eval_batch}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    report = {"against": args.against, "head": rev, "model": args.model, "batch": args.batch,
              "threads": args.threads, "steps": args.steps, "rows": []}
    print(f"{args.model}, batch {args.batch} of 64x96, channels_last, {args.threads} thread(s); "
          f"old = {args.against}, new = working tree at {rev}; medians of {args.steps} steps")
    for kind in fns["old"]:
        times = {"old": [], "new": []}
        for v in ("old", "new"):  # warm-up: oneDNN picks and caches its kernels
            for _ in range(3):
                fns[v][kind]()
        for i in range(args.steps):
            for v in (("old", "new") if i % 2 == 0 else ("new", "old")):
                t0 = time.perf_counter()
                fns[v][kind]()
                times[v].append(time.perf_counter() - t0)
        mo, mn = statistics.median(times["old"]), statistics.median(times["new"])
        n = sizes.get(kind, args.batch)
        row = {"step": kind, "old_img_s": n / mo, "new_img_s": n / mn,
               "speedup": mo / mn}
        report["rows"].append(row)
        print(f"  {kind:16s} old {row['old_img_s']:6.1f} img/s   new {row['new_img_s']:6.1f} "
              f"img/s   {row['speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
