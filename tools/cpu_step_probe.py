"""CPU training-step throughput at the converged experiment's scale (docs/performance.md: why `odkd experiment` runs `jobs: 2, threads_per_job: 1`).

One student step = forward + backward + Adam on a batch of 16 crops of 64x96; a KD step adds
one teacher forward (inference mode) and its MSE. Layouts compared on the same machine, back to
back: one process with 2 threads ("1x2") and two 1-thread processes at once ("2x1", the
experiment's `jobs: 2`, images/s summed), and optionally channels_last.

    python tools/cpu_step_probe.py [--model litehrnet_18] [--teacher litehrnet_18] [--steps 20]

Run it on an idle machine: anything else on the cores changes every figure.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def one(model: str, teacher: str, threads: int, steps: int, kd: bool, channels_last: bool,
        batch: int) -> float:
    import torch

    from odkd.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = build_model(model, 17, False)
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    t = build_model(teacher, 17, False).eval() if kd else None
    x = torch.randn(batch, 3, 96, 64)
    if channels_last:
        m = m.to(memory_format=torch.channels_last)
        t = t.to(memory_format=torch.channels_last) if t is not None else None
        x = x.contiguous(memory_format=torch.channels_last)
    for i in range(steps + 5):
        if i == 5:  # first steps warm the allocator and oneDNN's kernels
            t0 = time.perf_counter()
        out = m(x)["heatmaps"]
        loss = out.pow(2).mean()
        if t is not None:
            with torch.inference_mode():
                target = t(x)["heatmaps"]
            loss = loss + (out - target.clone()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="litehrnet_18")
    ap.add_argument("--teacher", default="litehrnet_18")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--worker", nargs=3, metavar=("THREADS", "KD", "CL"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        th, kd, cl = int(a.worker[0]), a.worker[1] == "1", a.worker[2] == "1"
        print(json.dumps(one(a.model, a.teacher, th, a.steps, kd, cl, a.batch)))
        return
    base = [sys.executable, __file__, "--model", a.model, "--teacher", a.teacher,
            "--steps", str(a.steps), "--batch", str(a.batch), "--worker"]
    rows = []
    for kd in ("0", "1"):
        for layout, procs, threads, cl in (("1x2", 1, "2", "0"), ("1x2 channels_last", 1, "2", "1"),
                                           ("2x1", 2, "1", "0")):
            ps = [subprocess.Popen(base + [threads, kd, cl], stdout=subprocess.PIPE, text=True)
                  for _ in range(procs)]
            rates = [float(p.communicate()[0]) for p in ps]
            rows.append((("KD step" if kd == "1" else "student step"), layout, sum(rates)))
            print(f"| {rows[-1][0]} | {layout} | {sum(rates):.1f} |", flush=True)
    for step in ("student step", "KD step"):
        r = {lay: v for s, lay, v in rows if s == step}
        print(f"{step}: 2x1 / 1x2 = {r['2x1'] / r['1x2']:.2f}x, channels_last "
              f"{r['1x2 channels_last'] / r['1x2']:.2f}x")


if __name__ == "__main__":
    main()
