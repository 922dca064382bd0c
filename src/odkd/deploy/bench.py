"""Inference benchmark: params, GFLOPs, per-crop latency at batch 1 and throughput at batch 32,
for PyTorch eager and onnxruntime on the CPU at given thread counts.

Timings are medians over ``iters`` timed runs after ``warmup`` untimed ones (a median is robust
to the other processes of a shared machine). Inputs are random crops: the networks' cost does
not depend on the pixel values.
"""
from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from typing import Callable, Sequence

import torch
from torch import nn

from odkd.errors import OdkdError
from odkd.spec import PoseSpec


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import onnxruntime as ort

    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "onnxruntime": ort.__version__}


def _median_seconds(fn: Callable[[], object], warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, iters)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _row(seconds: float, batch: int) -> dict:
    return {"batch": batch, "ms_per_batch": seconds * 1e3, "ms_per_crop": seconds * 1e3 / batch,
            "crops_per_s": batch / seconds}


def bench_infer(model: nn.Module, spec: PoseSpec, threads: Sequence[int] = (1, 2),
                backends: Sequence[str] = ("torch", "onnxruntime"), batch_sizes=(1, 32),
                warmup: int = 1, iters: int = 10, batch_iters: int = 2,
                onnx_path: str | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Benchmark ``model`` (eval mode, CPU) at ``spec.input_size``; returns one JSON-able dict.

    ``iters`` timed runs at the first batch size (latency), ``batch_iters`` at the others
    (throughput; each run is already ``batch`` crops). ``onnx_path``: reuse an export
    instead of exporting to a temporary file.
    """
    from odkd.deploy.onnx_export import export_onnx
    from odkd.onnxrt import make_session
    from odkd.models.complexity import complexity

    for b in backends:
        if b not in ("torch", "onnxruntime"):
            raise OdkdError(f"unknown backend {b!r}; choose torch and/or onnxruntime")
    if not threads or any(t < 1 for t in threads):
        raise OdkdError(f"threads must be positive integers, got {list(threads)}")
    log = log or (lambda s: None)
    model = model.cpu().eval()
    w, h = spec.input_size
    cx = complexity(model, (w, h))
    report: dict = {
        "model": spec.name, "input_size": [w, h], "num_joints": spec.num_joints,
        "with_mask": spec.with_mask, "params": cx["params"], "params_m": cx["params"] / 1e6,
        "gflops": cx["gflops"], "gmacs": cx["gmacs"],
        "note": "gflops = 2 x multiply-accumulates (see odkd.models.complexity)",
        "timing": {"warmup": warmup, "iters": iters, "batch_iters": batch_iters,
                   "statistic": "median"},
        "machine": machine_info(), "results": {},
    }
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, 3, h, w, generator=gen) for b in batch_sizes}
    old_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # PyTorch first: after torch.onnx.export in the same process, multi-threaded eager
            # runs were measured up to 30x slower here (2 threads), so export only afterwards.
            for backend in sorted(backends, key=lambda b: b != "torch"):
                if backend == "onnxruntime" and onnx_path is None:
                    onnx_path = os.path.join(tmp, "model.onnx")
                    export_onnx(model, spec, onnx_path)
                per_thread: dict = {}
                for t in threads:
                    if backend == "torch":
                        torch.set_num_threads(t)

                        def run(x: torch.Tensor) -> object:
                            with torch.inference_mode():
                                return model(x)
                    else:
                        sess = make_session(onnx_path, threads=t)
                        name = sess.get_inputs()[0].name
                        np_inputs = {b: x.numpy() for b, x in inputs.items()}

                        def run(x: torch.Tensor, sess=sess, name=name) -> object:
                            return sess.run(None, {name: np_inputs[x.shape[0]]})
                    rows = {}
                    for i, b in enumerate(batch_sizes):
                        n = iters if i == 0 else batch_iters
                        sec = _median_seconds(lambda: run(inputs[b]), warmup, n)
                        rows[f"batch{b}"] = _row(sec, b)
                        log(f"{spec.name} {backend} threads={t} batch={b}: "
                            f"{sec * 1e3:.1f} ms/batch, {b / sec:.1f} crops/s")
                    per_thread[str(t)] = rows
                report["results"][backend] = per_thread
        finally:
            torch.set_num_threads(old_threads)
    report["summary"] = summarize(report)
    return report


def summarize(report: dict) -> dict:
    """{backend: {threads: {"latency_ms_b1", "throughput_b32"}}} from a bench_infer report
    (first batch size -> latency per crop, last -> throughput)."""
    out: dict = {}
    for backend, per_thread in report["results"].items():
        out[backend] = {}
        for t, rows in per_thread.items():
            keys = list(rows)
            first, last = rows[keys[0]], rows[keys[-1]]
            out[backend][t] = {f"latency_ms_b{first['batch']}": round(first["ms_per_crop"], 2),
                               f"throughput_b{last['batch']}": round(last["crops_per_s"], 1)}
    return out


def markdown_row(report: dict) -> str:
    """One markdown table row: model | params | GFLOPs | per backend/threads latency/throughput."""
    cells = [report["model"], f"{report['params_m']:.2f}M", f"{report['gflops']:.2f}"]
    for backend, per_thread in report["summary"].items():
        for t, vals in per_thread.items():
            lat, thr = list(vals.values())
            cells.append(f"{lat:.1f} / {thr:.0f}")
    return "| " + " | ".join(cells) + " |"

