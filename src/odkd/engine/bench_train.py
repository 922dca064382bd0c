"""``odkd bench train``: training throughput, naive vs optimized, measured in the same run.

Prints one JSON object:

- ``naive_img_s``: eager fp32 (teachers too), CPU augmentation in DataLoader workers
  (TopDownDataset), NCHW.
- ``optimized_img_s``: decode-only workers + :mod:`odkd.data.device_aug`, channels_last, fused
  Adam, teachers with BatchNorm folded into their convs, and on CUDA also bf16 autocast and
  ``torch.compile`` (on CPU bf16 and compile slow these models down or take minutes to
  compile; the ``optimized`` field says what was on).
- ``step_img_s``: the student step and the KD step alone (one fixed batch, no input pipeline),
  naive and optimized *interleaved* step by step, so that a machine whose speed drifts during
  the run (shared CPUs drift by tens of percent) moves both alike; ``step_speedup`` is their
  ratio. This is the figure to quote for the step itself.
- ``speedup``: optimized / naive. Both include the input pipeline and the teachers' forwards.
- ``kd_over_student``: optimized step time with the teachers / without them (same batch).
- ``peak_mem_mb``: peak device memory (CUDA) or peak host RSS (CPU; ``peak_mem_kind``).
- ``loader_img_s``: the CPU-augmentation loader alone; ``loader_decode_img_s``: the decode-only
  loader alone; ``device_aug_img_s``: the device augmentation alone.

Data: a small SynthPose split generated in a temporary folder (decoded images cached in the
workers, as ``data.cache_images`` does). Teachers get random weights: speed does not depend
on them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import replace

import torch
from torch.utils.data import DataLoader

from odkd.config import Config, DistillConfig, TeacherConfig
from odkd.engine import step as _step  # module attribute: tests can watch train_step
from odkd.errors import OdkdError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="hrnet_w16", help="student architecture")
    parser.add_argument("--teachers", default="",
                        help="comma-separated teacher architectures, e.g. hrnet_w32 or "
                             "hrnet_w32,hrnet_w48 (random weights); empty = no distillation")
    parser.add_argument("--device", default="auto", help="auto | cuda | cuda:N | cpu")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--input-size", type=int, nargs=2, default=[192, 256],
                        metavar=("W", "H"), help="model input width and height")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first (compilation happens here)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers")
    parser.add_argument("--images", type=int, default=64, help="synthetic images to generate")
    parser.add_argument("--image-size", type=int, nargs=2, default=[320, 256],
                        metavar=("W", "H"), help="synthetic image size")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="torch.compile in the optimized path (auto: on CUDA only)")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile mode (reduce-overhead = CUDA graphs)")
    parser.add_argument("--amp", choices=["auto", "none", "bf16"], default="auto",
                        help="student precision in the optimized path (auto: bf16 on CUDA, "
                             "fp32 on CPU, where bf16 was slower even with AMX; teachers on "
                             "CPU stay fp32)")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forever(loader, dataset):
    """Batches across epochs (the data is small; epochs roll over during a measurement)."""
    epoch = 0
    while True:
        dataset.set_epoch(epoch)
        yield from loader
        epoch += 1


def _loader(dataset, batch: int, workers: int, device: torch.device, collate=None):
    from odkd.engine.loader import EpochSampler

    return DataLoader(dataset, batch_size=batch, sampler=EpochSampler(len(dataset), 0),
                      num_workers=workers, drop_last=True, collate_fn=collate,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def _make_data(tmp: str, args) -> Config:
    from odkd.synth.generate import generate_split

    info = generate_split(tmp, "train", args.images, 0, size=tuple(args.image_size),
                          workers=max(1, min(4, os.cpu_count() or 1)), progress=False)
    cfg = Config()
    cfg.data = replace(cfg.data, train_ann=info["ann_file"], train_images=info["image_dir"],
                       input_size=list(args.input_size), workers=args.workers,
                       cache_images=True, color_jitter=0.2)
    cfg.model = replace(cfg.model, name=args.model)
    cfg.train = replace(cfg.train, batch_size=args.batch)
    return cfg


class _Stepper:
    """One training step (student forward/backward + teachers), for a given set of options."""

    def __init__(self, cfg: Config, device: torch.device, teachers: dict, *, amp: bool,
                 channels_last: bool, compile_: bool, compile_mode: str, fused: bool):
        from odkd.distill.losses import DistillLoss
        from odkd.engine.step import SupervisedObjective, build_optimizer, maybe_compile
        from odkd.models import build_model

        torch.manual_seed(0)
        self.device, self.amp, self.channels_last = device, amp, channels_last
        model = build_model(cfg.model.name, cfg.model.num_joints, False).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(cfg, model.parameters(), device, fused=fused)
        ccfg = replace(cfg, train=replace(cfg.train, compile=compile_, compile_mode=compile_mode))
        self.model = maybe_compile(model, ccfg)
        self.teachers = {}
        for k, t in teachers.items():
            if channels_last:
                t = t.to(memory_format=torch.channels_last)
            self.teachers[k] = maybe_compile(t, ccfg)
        self.supervised = SupervisedObjective()
        self.kd = None
        if teachers:
            schedule = "simultaneous" if len(teachers) == 2 else "pt_only"
            self.kd = DistillLoss(DistillConfig(schedule=schedule, seg_weight=0.0,
                                                st=TeacherConfig(with_mask=False)), total_steps=1)
        # the step's precision comes from the config, as in training
        self.cfg = replace(cfg, train=replace(cfg.train, amp="bf16" if amp else "none",
                                              grad_clip=0.0))

    def __call__(self, images: torch.Tensor, gt: dict, with_teachers: bool = True) -> None:
        """One step of ``odkd.engine.step.train_step``: the function training runs."""
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        kd = with_teachers and self.kd is not None
        _step.train_step(self.cfg, self.device, self.model, self.kd if kd else self.supervised,
                          self.teachers if kd else {}, self.optimizer, images, gt, 0)


def _time(fn, warmup: int, steps: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / max(1, steps)


def _paired(fns: dict, warmup: int, steps: int, device: torch.device) -> dict:
    """Seconds per call of each of ``fns``, called in turn within every round: drift in the
    machine's speed during the measurement falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    total = dict.fromkeys(fns, 0.0)
    for _ in range(steps):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            total[name] += time.perf_counter() - t0
    return {name: t / max(1, steps) for name, t in total.items()}


def run(args) -> int:
    from odkd.data.dataset import build_datasets
    from odkd.data.device_aug import DecodedDataset, DeviceAugment, collate_decoded
    from odkd.distill.teachers import FrozenTeacher
    from odkd.engine.step import prepare_batch
    from odkd.models import build_model
    from odkd.utils import pick_device

    device = pick_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OdkdError(f"--device {args.device}: CUDA is not available on this machine")
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        raise OdkdError("--batch and --steps must be >= 1, --warmup >= 0")
    cuda = device.type == "cuda"
    compile_ = args.compile == "on" or (args.compile == "auto" and cuda)
    amp = args.amp == "bf16" or (args.amp == "auto" and cuda)
    names = [n.strip() for n in args.teachers.split(",") if n.strip()]
    if len(names) > 2:
        raise OdkdError(f"--teachers {args.teachers!r}: at most two (primary, senior)")
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    with tempfile.TemporaryDirectory(prefix="odkd-bench-") as tmp:
        cfg = _make_data(tmp, args)
        train_set, _, _ = build_datasets(cfg, val=False)
        if len(train_set) < args.batch:
            raise OdkdError(f"--images {args.images}: only {len(train_set)} persons, fewer than "
                            f"--batch {args.batch}; generate more images")
        decoded = DecodedDataset(train_set)
        dev_aug = DeviceAugment.for_dataset(decoded, device)
        w = args.workers
        cpu_loader = _loader(train_set, args.batch, w, device)
        dec_loader = _loader(decoded, args.batch, w, device, collate_decoded)
        cpu_batches, dec_batches = _forever(cpu_loader, train_set), _forever(dec_loader, decoded)

        def teachers(optimized: bool) -> dict:
            keys = ["pt", "st"][:len(names)]
            torch.manual_seed(1)  # the same random teachers for both paths
            return {k: FrozenTeacher(build_model(n, cfg.model.num_joints, False),
                                     amp=optimized and amp, fold_bn=optimized).to(device)
                    for k, n in zip(keys, names)}

        n = args.batch
        res: dict = {}
        res["loader_img_s"] = n / _time(lambda: next(cpu_batches), args.warmup, args.steps,
                                        device)
        res["loader_decode_img_s"] = n / _time(lambda: next(dec_batches), args.warmup,
                                               args.steps, device)
        fixed = next(dec_batches)
        res["device_aug_img_s"] = n / _time(lambda: dev_aug(fixed), args.warmup, args.steps,
                                            device)

        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        naive = _Stepper(cfg, device, teachers(False), amp=False, channels_last=False,
                         compile_=False, compile_mode="default", fused=False)

        def naive_step() -> None:
            naive(*prepare_batch(next(cpu_batches), device))

        res["naive_img_s"] = n / _time(naive_step, args.warmup, args.steps, device)

        opt = _Stepper(cfg, device, teachers(True), amp=amp, channels_last=True,
                       compile_=compile_, compile_mode=args.compile_mode, fused=None)

        def opt_step() -> None:
            opt(*prepare_batch(next(dec_batches), device, dev_aug))

        t_opt = _time(opt_step, args.warmup, args.steps, device)
        res["optimized_img_s"] = n / t_opt
        res["speedup"] = res["optimized_img_s"] / res["naive_img_s"]
        if names:
            images, gt = prepare_batch(fixed, device, dev_aug)
            t_kd = _time(lambda: opt(images, gt, True), args.warmup, args.steps, device)
            t_st = _time(lambda: opt(images, gt, False), args.warmup, args.steps, device)
            res["kd_over_student"] = t_kd / t_st
            res["kd_step_ms"], res["student_step_ms"] = 1e3 * t_kd, 1e3 * t_st
        else:
            res["kd_over_student"] = None
        images, gt = prepare_batch(fixed, device, dev_aug)
        fns = {"student_naive": lambda: naive(images, gt, False),
               "student_optimized": lambda: opt(images, gt, False)}
        if names:
            fns.update({"kd_naive": lambda: naive(images, gt, True),
                        "kd_optimized": lambda: opt(images, gt, True)})
        paired = _paired(fns, args.warmup, args.steps, device)
        res["step_img_s"] = {k: round(n / t, 2) for k, t in paired.items()}
        res["step_speedup"] = {
            step: round(paired[f"{step}_naive"] / paired[f"{step}_optimized"], 3)
            for step in ("student", "kd") if f"{step}_naive" in paired}
        del naive
        if cuda:
            res["peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            res["peak_mem_kind"] = "cuda_max_allocated"
        else:
            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            res["peak_mem_mb"] = kb / 1024.0
            res["peak_mem_kind"] = "host_max_rss"
        del cpu_batches, dec_batches, cpu_loader, dec_loader

    out = {
        "model": args.model, "teachers": names, "batch": args.batch,
        "input_size": list(args.input_size), "steps": args.steps, "warmup": args.warmup,
        "workers": args.workers,
        **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()},
        "optimized": {"device_aug": True, "amp": "bf16" if amp else "none",
                      "channels_last": True, "compile": compile_,
                      "compile_mode": args.compile_mode if compile_ else None,
                      "fused_optimizer": _step.fused_supported(device),
                      "teacher_bn_folded": bool(names)},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else platform.processor()
        or platform.machine(),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": sys.version.split()[0],
    }
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="odkd bench train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
