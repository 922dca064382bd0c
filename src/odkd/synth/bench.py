"""Generation throughput: images/s per core, including masks, RLE and JPEG encoding."""
from __future__ import annotations

import multiprocessing as mp
import os
import platform
import time
from typing import Any

from odkd.synth.generate import _init_worker, render_image
from odkd.synth.scene import DEFAULT_DIFFICULTY


def _render_range(job: tuple[int, int, str, tuple[int, int], str]) -> float:
    """Render ``count`` images; returns the CPU seconds this process spent on them."""
    start, count, split, size, difficulty = job
    c0 = time.process_time()
    for i in range(start, start + count):
        render_image(0, split, i, size, difficulty=difficulty)
    return time.process_time() - c0


def cpu_name() -> str:
    """CPU model from /proc/cpuinfo where available (platform.processor() is often empty)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench(num_images: int = 500, size: tuple[int, int] = (256, 256), split: str = "train",
          workers: int = 1, difficulty: str = DEFAULT_DIFFICULTY) -> dict[str, Any]:
    """Time ``render_image`` (scene, annotations with RLE masks, JPEG bytes; no disk writes).

    With ``workers > 1`` the images are split over processes and the aggregate rate is
    divided by the worker count, so the figure stays "per core".
    """
    size = (int(size[0]), int(size[1]))
    _init_worker()
    _render_range((10**6, 5, split, size, difficulty))  # warm-up: texture tiles, imports
    t0 = time.perf_counter()
    if workers <= 1:
        cpu = _render_range((0, num_images, split, size, difficulty))
    else:
        per = -(-num_images // workers)
        jobs = [(w * per, min(per, num_images - w * per), split, size, difficulty)
                for w in range(workers)]
        with mp.get_context().Pool(workers, initializer=_init_worker) as pool:
            pool.map(_render_range, [(10**6, 5, split, size, difficulty)] * workers)
            t0 = time.perf_counter()
            cpu = sum(pool.map(_render_range, jobs))
    dt = time.perf_counter() - t0
    rate = num_images / dt
    return {
        # wall-clock figure, and the same per CPU-second (robust on a shared machine)
        "images_per_s_per_core": round(rate / max(workers, 1), 1),
        "images_per_cpu_s": round(num_images / max(cpu, 1e-9), 1),
        "images_per_s": round(rate, 1), "workers": max(workers, 1), "num_images": num_images,
        "size": list(size), "split": split, "difficulty": difficulty,
        "includes": "render+masks+RLE+JPEG (no disk)",
        "machine": f"{platform.machine()} {cpu_name()}",
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
    }
