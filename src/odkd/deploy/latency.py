"""One latency table: odkd students (any ``MODEL_BUILDERS`` name at any input size; PyTorch,
onnxruntime fp32 and int8) and the real teachers (MoveNet, BlazePose through their own
runtimes, :mod:`odkd.teachers`), timed in one interleaved run.

Every candidate is a (model, runtime, threads) triple with three steps, timed separately on
one person box of one source image, batch 1:

- ``pre``: the crop and the model's own input preparation (odkd: ``warp_crop`` +
  ``normalize_crop``; teachers: their re-crop + ``codec.preprocess``);
- ``model``: the runtime call alone;
- ``post``: decoding to image keypoints (odkd: ``HeatmapCodec.decode``; teachers:
  ``codec.postprocess`` and the inverse affine).

Interleaving: each round visits every candidate once, in a fresh random order (seeded), so
slow drift of the machine (other processes, clock changes) falls on all candidates alike and
no candidate always runs right after the same one. A visit makes ``switch`` untimed calls,
then ``burst`` timed ones: the timed calls see the model as a stream of crops does, warm, not
the moments after another runtime ran. Why: a multi-threaded runtime's worker threads keep
spinning for a while after its call (onnxruntime's do by default, and turning that off costs
each call more in wake-ups), and on two cores they slowed the next model's first call; timed
one call per visit, onnxruntime's 2-thread latencies came out above its 1-thread ones.
Statistics are medians with the 10th and 90th percentiles.
"""
from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from odkd.deploy.latency_report import TEACHER_RUNTIME_NAMES, accuracy_for, read_accuracy
from odkd.errors import OdkdError

STAGES = ("pre", "model", "post")
STUDENT_RUNTIMES = ("torch", "onnxruntime", "onnxruntime-int8", "onnxruntime-int8-all")
RUNTIME_NAMES = {"torch": "PyTorch eager (BN folded, channels_last)",
                 "onnxruntime": "onnxruntime fp32",
                 "onnxruntime-int8": "onnxruntime int8 (QDQ; the layers the architecture "
                                     "declares stay fp32, as `odkd export --int8` does)",
                 "onnxruntime-int8-all": "onnxruntime int8 (QDQ), every layer "
                                         "(`odkd export --int8 --int8-fp32`)"}
INT8_FILES = {"onnxruntime-int8": "int8", "onnxruntime-int8-all": "int8all"}


@dataclass
class Candidate:
    """One timed row: ``pre() -> x``, ``run(x) -> y``, ``post(y)``; ``setup()`` runs untimed
    before each call (e.g. torch's process-wide thread count)."""

    model: str                      # e.g. "litehrnet_18" or "movenet-lightning"
    runtime: str                    # e.g. "onnxruntime-int8" or "tflite"
    input_size: tuple[int, int]     # (W, H)
    threads: int
    pre: Callable[[], Any]
    run: Callable[[Any], Any]
    post: Callable[[Any], Any]
    setup: Callable[[], None] | None = None
    info: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        w, h = self.input_size
        return f"{self.model}@{w}x{h}/{self.runtime}/t{self.threads}"


def interleaved_times(cands: Sequence[Candidate], iters: int, warmup: int = 5, seed: int = 0,
                      clock: Callable[[], float] = time.perf_counter,
                      log: Callable[[str], None] | None = None, burst: int = 1,
                      switch: int = 0) -> dict[str, dict]:
    """``{candidate key: {"pre": [s, ...], "model": [...], "post": [...]}}``: ``warmup``
    untimed then ``iters`` timed rounds, each visiting every candidate once in a shuffled
    order; a visit makes ``switch`` untimed calls, then ``burst`` timed ones."""
    if iters < 1 or warmup < 0 or burst < 1 or switch < 0:
        raise OdkdError(f"iters and burst must be >= 1, warmup and switch >= 0, got {iters}, "
                        f"{burst}, {warmup}, {switch}")
    keys = [c.key for c in cands]
    if len(set(keys)) != len(keys):
        raise OdkdError(f"the same candidate twice: {sorted(k for k in keys if keys.count(k) > 1)}")
    rng = random.Random(seed)
    times = {c.key: {s: [] for s in STAGES} for c in cands}
    order = list(cands)
    for it in range(warmup + iters):
        rng.shuffle(order)
        for c in order:
            if c.setup is not None:
                c.setup()
            for call in range(switch + burst):
                t0 = clock()
                x = c.pre()
                t1 = clock()
                y = c.run(x)
                t2 = clock()
                c.post(y)
                t3 = clock()
                if it >= warmup and call >= switch:
                    rec = times[c.key]
                    rec["pre"].append(t1 - t0)
                    rec["model"].append(t2 - t1)
                    rec["post"].append(t3 - t2)
        if log and (it + 1 - warmup) % 10 == 0 and it >= warmup:
            log(f"round {it + 1 - warmup}/{iters}")
    return times


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def aggregate(cands: Sequence[Candidate], times: dict[str, dict]) -> list[dict]:
    """One row per candidate: median, p10 and p90 per stage in milliseconds."""
    rows = []
    for c in cands:
        t = times[c.key]
        row = {"key": c.key, "model": c.model, "runtime": c.runtime,
               "input_size": list(c.input_size), "threads": c.threads, "n": len(t["model"]),
               **c.info}
        for s in STAGES:
            row[f"{s}_ms"] = statistics.median(t[s]) * 1e3
            row[f"{s}_p10_ms"] = _quantile(t[s], 0.1) * 1e3
            row[f"{s}_p90_ms"] = _quantile(t[s], 0.9) * 1e3
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- candidates

def parse_student(spec: str) -> tuple[str, list[tuple[int, int]]]:
    """``NAME@WxH[,WxH...]`` -> (name, sizes)."""
    from odkd.models import MODEL_BUILDERS

    name, _, sizes = spec.partition("@")
    if name not in MODEL_BUILDERS:
        raise OdkdError(f"--student {spec}: unknown model {name!r}; choose one of "
                        f"{sorted(MODEL_BUILDERS)}")
    out = []
    for part in (sizes or "192x256").split(","):
        try:
            w, h = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise OdkdError(f"--student {spec}: size {part!r} is not WxH (e.g. 96x128)") from None
        out.append((w, h))
    return name, out


def check_student(name: str, size: tuple[int, int]) -> None:
    """The one-line refusal of a size the architecture does not take, here in the parent
    (the export runs in a child process): the stride check, then one eager forward, which
    carries the architectures' own checks (HRNet: multiples of 32)."""
    import torch

    from odkd.spec import spec_for_model
    from odkd.models import build_model

    model = build_model(name).eval()
    spec_for_model(model, input_size=size)
    with torch.no_grad():
        out = model(torch.zeros(1, 3, size[1], size[0]))["heatmaps"]
    want = (size[1] // 4, size[0] // 4)
    if tuple(out.shape[-2:]) != want:
        raise OdkdError(f"{name} at input size {size[0]}x{size[1]} gives "
                        f"{out.shape[-1]}x{out.shape[-2]} heatmaps, not {want[1]}x{want[0]}")


def _export_worker(jobs: list[tuple[str, tuple[int, int], str, str, str]], calib: int) -> None:
    """In a fresh process: export each (model, size) to fp32 and int8 ONNX. Here, because
    after torch.onnx.export the exporting process's multi-threaded eager runs were measured up
    to 30x slower (docs/development.md, CPU pitfalls), and PyTorch is timed in the parent."""
    import torch

    from odkd.deploy.onnx_export import export_onnx
    from odkd.deploy.quantize import optimize_fp32, quantize_onnx
    from odkd.spec import spec_for_model
    from odkd.models import build_model
    from odkd.models.fake_quant import declared_fp32_nodes

    torch.set_num_threads(1)
    for name, size, fp32, int8, int8all in jobs:
        torch.manual_seed(0)
        model = build_model(name).eval()
        spec = spec_for_model(model, input_size=size)
        export_onnx(model, spec, fp32)
        optimize_fp32(fp32, fp32)
        crops = np.random.default_rng(0).standard_normal(
            (calib, 3, size[1], size[0])).astype(np.float32)
        source = {"calibration_data": "random normal crops (timing only: weights are random)"}
        if int8:
            # the layers the architecture keeps in fp32, as `odkd export --int8` does
            quantize_onnx(fp32, int8, crops, calibration=source,
                          fp32_nodes=declared_fp32_nodes(model))
        if int8all:
            quantize_onnx(fp32, int8all, crops, calibration=source)


def export_students(students: list[tuple[str, list[tuple[int, int]]]], runtimes: Sequence[str],
                    out_dir: str, calib: int = 16) -> dict[tuple[str, tuple[int, int]], dict]:
    """ONNX files of every student size, made in a child process; ``{(name, size): {"fp32":
    path, "int8": path}}``."""
    import multiprocessing as mp

    jobs, paths = [], {}
    want_onnx = any(r.startswith("onnxruntime") for r in runtimes)
    for name, sizes in students:
        for size in sizes:
            stem = os.path.join(out_dir, f"{name}_{size[0]}x{size[1]}")
            p = {"fp32": stem + ".onnx"}
            for rt, key in INT8_FILES.items():
                p[key] = f"{stem}.{key}.onnx" if rt in runtimes else ""
            paths[(name, size)] = p
            if want_onnx:
                jobs.append((name, size, p["fp32"], p["int8"], p["int8all"]))
    if jobs:
        ctx = mp.get_context("spawn")
        proc = ctx.Process(target=_export_worker, args=(jobs, calib))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise OdkdError(f"exporting the students failed (exit code {proc.exitcode}); run "
                            "`odkd bench infer --model NAME --input-size W H` for the message")
    return paths


def student_candidates(name: str, size: tuple[int, int], paths: dict, runtimes: Sequence[str],
                       threads: Sequence[int], image: np.ndarray, box) -> list[Candidate]:
    import torch

    from odkd.codec import HeatmapCodec
    from odkd.config import Config
    from odkd.data.dataset import normalize_crop, warp_crop
    from odkd.onnxrt import make_session
    from odkd.spec import spec_for_model
    from odkd.geometry import box_to_center_scale
    from odkd.models import build_model
    from odkd.models.complexity import complexity
    from odkd.models.fold import scoring_model

    cfg = Config()
    cfg.data.input_size = list(size)
    codec = HeatmapCodec.from_config(cfg)
    center, scale = box_to_center_scale(box, size[0] / size[1], cfg.data.padding)
    centers, scales = center[None], scale[None]

    def pre():
        return normalize_crop(warp_crop(image, center, scale, 0.0, size))[None]

    def post(heat):
        return codec.decode(heat, centers, scales)

    torch.manual_seed(0)
    model = build_model(name).eval()
    spec_for_model(model, input_size=size)   # one-line refusal of sizes off the stride
    cx = complexity(model, size)
    info = {"params_m": cx["params"] / 1e6, "gflops": cx["gflops"],
            "decoder": codec.decoder}
    out = []
    for rt in runtimes:
        for t in threads:
            if rt == "torch":
                net, channels_last = scoring_model(model, torch.device("cpu"))

                def run(x, net=net, cl=channels_last):
                    xt = torch.from_numpy(x)
                    if cl:
                        xt = xt.contiguous(memory_format=torch.channels_last)
                    with torch.inference_mode():
                        return net(xt)["heatmaps"].numpy()

                def setup(t=t):
                    if torch.get_num_threads() != t:
                        torch.set_num_threads(t)

                out.append(Candidate(name, rt, size, t, pre, run, post, setup, dict(info)))
            else:
                path = paths[INT8_FILES.get(rt, "fp32")]
                sess = make_session(path, threads=t)
                iname = sess.get_inputs()[0].name

                def run(x, sess=sess, iname=iname):
                    return sess.run(["heatmaps"], {iname: x})[0]

                out.append(Candidate(name, rt, size, t, pre, run, post, None, dict(info)))
    return out


def teacher_candidates(name: str, threads: Sequence[int], image: np.ndarray, box,
                       cache: str | None = None) -> list[Candidate]:
    from odkd.geometry import affine_points, box_to_center_scale
    from odkd.teachers import get_teacher
    from odkd.teachers import store

    runtime = store.MODELS[name].runtime
    out = []
    for t in threads:
        teacher = get_teacher(name, num_threads=t, cache=cache)
        tw, th = teacher.input_size
        center, scale = box_to_center_scale(box, tw / th, 1.25)

        def pre(teacher=teacher, center=center, scale=scale):
            crop, mat = teacher.crop(image, center, scale, 0.0)
            return teacher.codec.preprocess(crop), mat

        def run(x, teacher=teacher):
            inputs, mat = x
            return teacher.runner.run(inputs), mat

        def post(y, teacher=teacher):
            outs, mat = y
            res = teacher.codec.postprocess(outs)
            inv = np.linalg.inv(np.vstack([mat, [0.0, 0.0, 1.0]]))[:2]
            return affine_points(res["keypoints"][:, :2], inv)

        out.append(Candidate(name, runtime, (tw, th), t, pre, run, post, None,
                             {"file": os.path.basename(store.model_path(name, cache))}))
    return out


def default_image(seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """A 640x480 RGB image of noise and a person-sized box in it: the cost of a crop, a
    network and a decode does not depend on the pixel values."""
    img = np.random.default_rng(seed).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    return img, [220.0, 60.0, 180.0, 360.0]


def bench_latency(students: list[tuple[str, list[tuple[int, int]]]], teachers: Sequence[str],
                  runtimes: Sequence[str] = STUDENT_RUNTIMES, threads: Sequence[int] = (1, 2),
                  iters: int = 50, warmup: int = 3, seed: int = 0, burst: int = 3,
                  switch: int = 1, accuracy: str | None = None, cache: str | None = None,
                  log: Callable[[str], None] | None = None) -> dict:
    """Build every candidate, time them in one interleaved run, return the JSON report."""
    import cv2

    from odkd.deploy.bench import machine_info

    log = log or (lambda s: None)
    if not threads or any(t < 1 for t in threads):
        raise OdkdError(f"--threads must be positive integers, got {list(threads)}")
    bad = [r for r in runtimes if r not in STUDENT_RUNTIMES]
    if bad:
        raise OdkdError(f"--runtimes: unknown {bad[0]!r}; choose from {list(STUDENT_RUNTIMES)}")
    metric, values = read_accuracy(accuracy) if accuracy else (None, {})
    cv2.setNumThreads(1)
    image, box = default_image(seed)
    load_before = os.getloadavg()
    cands: list[Candidate] = []
    for name, sizes in students:
        for size in sizes:
            check_student(name, size)
    with tempfile.TemporaryDirectory() as tmp:
        if students and any(r.startswith("onnxruntime") for r in runtimes):
            log(f"exporting {sum(len(s) for _, s in students)} student size(s) to ONNX (fp32"
                f"{', int8' if any(r in INT8_FILES for r in runtimes) else ''}) in a child "
                "process")
        paths = export_students(students, runtimes, tmp)
        for name, sizes in students:
            for size in sizes:
                cands += student_candidates(name, size, paths[(name, size)], runtimes, threads,
                                            image, box)
        for name in teachers:
            cands += teacher_candidates(name, threads, image, box, cache)
        log(f"timing {len(cands)} candidates: {warmup} + {iters} interleaved rounds, each "
            f"visit {switch} untimed + {burst} timed calls")
        t0 = time.time()
        times = interleaved_times(cands, iters, warmup, seed, log=log, burst=burst,
                                  switch=switch)
        wall = time.time() - t0
    rows = aggregate(cands, times)
    for r in rows:
        r["accuracy"] = accuracy_for(r, values)
    report = {
        "what": "latency per crop, batch 1: pre = crop + input preparation, model = runtime "
                "call, post = decode to image keypoints; medians (p10, p90) of one "
                "interleaved run",
        "settings": {"threads": list(threads), "iters": iters, "warmup": warmup, "seed": seed,
                     "burst": burst, "switch": switch,
                     "order": "every round visits each candidate once in a shuffled order; "
                              "a visit: `switch` untimed calls, then `burst` timed ones",
                     "student_weights": "random (timing does not depend on them); int8 "
                                        "calibrated on random crops",
                     "runtimes": {**RUNTIME_NAMES, **TEACHER_RUNTIME_NAMES}},
        "machine": {**machine_info(), "loadavg_before": list(load_before),
                    "loadavg_after": list(os.getloadavg())},
        "wall_s": wall, "accuracy_metric": metric, "rows": rows,
    }
    return report
