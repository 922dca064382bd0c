"""torch.compile (inductor, CPU) against eager for the converged experiment's student step.

    OMP_NUM_THREADS=1 python tools/compile_probe.py compile   # or: eager

Lite-HRNet-18 with mask head, batch 16 of 64x96 crops, channels_last, fused Adam, one thread
(the experiment's ``threads_per_job``). Prints the first step's time (for ``compile``: tracing,
lowering and the C++ build of forward and backward) and images/s over the next 20 steps.
One mode per process, so the two figures are not paired: quote them only when the gap is far
larger than the machine's drift (issue 13 asked whether ``train.compile`` helps on CPU).
"""
import sys
import time

import torch

import odkd.models.litehrnet as L


def main(mode: str) -> None:
    torch.set_num_threads(1)
    cl = torch.channels_last
    m = L.litehrnet_18(17, True).to(memory_format=cl)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, fused=True)
    x = torch.randn(16, 3, 96, 64).contiguous(memory_format=cl)
    mc = torch.compile(m) if mode == "compile" else m

    def step():
        out = mc(x)
        loss = (out["heatmaps"] ** 2).mean() + (out["mask"] ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    step()
    print("first step", time.perf_counter() - t, flush=True)
    for _ in range(3):
        step()
    t = time.perf_counter()
    for _ in range(20):
        step()
    print(mode, "img/s", 16 * 20 / (time.perf_counter() - t))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("compile", "eager"):
        sys.exit("usage: python tools/compile_probe.py compile|eager")
    main(sys.argv[1])
