"""``odkd bench infer --checkpoint CKPT | --model M [--input-size W H] [--threads 1 2]``,
``odkd bench latency --student NAME@WxH[,WxH] ... --teachers ...`` (one interleaved latency
table, :mod:`odkd.deploy.latency`) and ``odkd bench train ...`` (implemented in
:mod:`odkd.engine.bench_train`)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

TRAIN_MODULE = "odkd.engine.bench_train"


def register(sub) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (inference, training)",
                       description="Speed benchmarks; each prints one JSON object on stdout.")
    modes = p.add_subparsers(dest="mode", required=True, metavar="MODE")

    inf = modes.add_parser(
        "infer", help="params, GFLOPs, latency (batch 1) and throughput (batch 32)",
        description="Params, GFLOPs, per-crop latency at batch 1 and throughput at batch 32 for "
                    "PyTorch eager and onnxruntime on the CPU, per thread count. Prints one "
                    "JSON object on stdout (progress on stderr).")
    inf.add_argument("--checkpoint", help="checkpoint to benchmark (its weights do not change "
                     "the timings; its config gives the input size)")
    inf.add_argument("--model", default=None,
                     help="architecture: alone, benchmark it with random weights (e.g. "
                          "hrnet_w32); with a foreign --checkpoint, the architecture it holds")
    inf.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None,
                     help="crop size (default: checkpoint config, else 192 256)")
    inf.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts")
    inf.add_argument("--backends", nargs="+", choices=["torch", "onnxruntime"],
                     default=["torch", "onnxruntime"])
    inf.add_argument("--batch", type=int, default=32, help="throughput batch size")
    inf.add_argument("--warmup", type=int, default=1)
    inf.add_argument("--iters", type=int, default=10, help="timed runs at batch 1")
    inf.add_argument("--batch-iters", type=int, default=2, help="timed runs at --batch")
    inf.add_argument("--markdown", action="store_true",
                     help="also print a markdown table row on stderr")
    inf.set_defaults(func=run_infer)

    lat = modes.add_parser(
        "latency", help="one interleaved latency table: students (PyTorch, onnxruntime fp32 "
                        "and int8) and the real teachers (their own runtimes)",
        description="Times odkd students (any architecture at any input size, random weights) "
                    "and the real teachers through their own runtimes in one interleaved run: "
                    "batch 1, each round runs every (model, runtime, threads) once in a "
                    "shuffled order, "
                    "--switch untimed then --burst timed calls per visit. Pre-processing "
                    "(crop + normalise), the model call and post-processing (decode) are timed "
                    "separately. Prints a markdown table "
                    "(progress on stderr) and writes JSON.")
    lat.add_argument("--student", action="append", default=[], metavar="NAME@WxH[,WxH...]",
                     help="a student architecture and its input sizes (width x height), e.g. "
                          "litehrnet_18@192x256,96x128; repeat for more")
    lat.add_argument("--teachers", nargs="*", default=None, metavar="NAME",
                     help="real teachers to time (default: every fetched one; `odkd teachers "
                          "fetch` first); give none to time students only")
    lat.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime",
                                                       "onnxruntime-int8"],
                     choices=["torch", "onnxruntime", "onnxruntime-int8",
                              "onnxruntime-int8-all"],
                     help="student runtimes (onnxruntime-int8 keeps the layers the "
                          "architecture declares in fp32, as `odkd export --int8`; "
                          "onnxruntime-int8-all quantizes every layer)")
    lat.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="thread counts")
    lat.add_argument("--iters", type=int, default=50, help="timed rounds")
    lat.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    lat.add_argument("--burst", type=int, default=3,
                     help="timed calls per visit of a candidate (default 3)")
    lat.add_argument("--switch", type=int, default=1,
                     help="untimed calls at the start of each visit, which absorb the "
                          "previous runtime's spinning threads (default 1)")
    lat.add_argument("--seed", type=int, default=0, help="seed of the round orders")
    lat.add_argument("--accuracy", default=None, metavar="FILE.json",
                     help='{"metric": NAME, "values": {KEY: number}} placed beside each row; '
                          "KEY: model, model@WxH or model@WxH/runtime")
    lat.add_argument("--json", default=None, metavar="OUT.json", help="write the report here")
    lat.add_argument("--markdown", default=None, metavar="OUT.md", help="write the table here")
    lat.add_argument("--plot", default=None, metavar="OUT.png",
                     help="accuracy against latency (a latency bar chart without --accuracy)")
    lat.add_argument("--cache", default=None, help="teacher cache (default $ODKD_CACHE/teachers)")
    lat.set_defaults(func=run_latency)

    # `train` options belong to odkd.engine.bench_train and are parsed there, so building the
    # CLI never imports it (nor torch). A prefix char '-' is not given to this parser, so every
    # token (options included) lands in `rest` untouched.
    tr = modes.add_parser("train", add_help=False, prefix_chars="\x01",
                          help="training throughput (see `odkd bench train --help`)")
    tr.add_argument("rest", nargs="*")
    tr.set_defaults(func=run_train)


def run_infer(args: argparse.Namespace) -> int:
    from odkd.deploy.bench import bench_infer, markdown_row
    from odkd.errors import OdkdError

    if args.checkpoint:
        from odkd.deploy.loader import load_torch_model

        model, spec = load_torch_model(args.checkpoint, name=args.model,
                                       input_size=args.input_size)
    elif args.model:
        from odkd.spec import spec_for_model
        from odkd.models import build_model

        model = build_model(args.model).eval()
        spec = spec_for_model(model, input_size=args.input_size)
    else:
        raise OdkdError("give --checkpoint CKPT or --model NAME (random weights)")
    if args.batch < 1 or args.iters < 1 or args.batch_iters < 1 or args.warmup < 0:
        raise OdkdError("--batch, --iters and --batch-iters must be >= 1, --warmup >= 0")
    report = bench_infer(model, spec, threads=args.threads, backends=args.backends,
                         batch_sizes=(1, args.batch), warmup=args.warmup, iters=args.iters,
                         batch_iters=args.batch_iters,
                         log=lambda s: print(f"[odkd] {s}", file=sys.stderr, flush=True))
    if args.markdown:
        print(markdown_row(report), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return 0


def run_latency(args: argparse.Namespace) -> int:
    from odkd.deploy.latency import bench_latency, parse_student
    from odkd.deploy.latency_report import markdown_table, plot
    from odkd.errors import OdkdError
    from odkd.utils import atomic_write_text

    students = [parse_student(s) for s in args.student]
    if args.teachers is None:
        from odkd.teachers import TEACHERS
        from odkd.teachers.store import is_present

        teachers = [t for t in TEACHERS if is_present(t, args.cache)]
        missing = [t for t in TEACHERS if t not in teachers]
        if missing:
            print(f"[odkd] not fetched, not timed: {', '.join(missing)} (`odkd teachers "
                  "fetch`)", file=sys.stderr)
    else:
        from odkd.teachers import TEACHERS

        unknown = [t for t in args.teachers if t not in TEACHERS]
        if unknown:
            raise OdkdError(f"--teachers: unknown {unknown[0]!r}; built-in: "
                            f"{', '.join(TEACHERS)}")
        teachers = list(args.teachers)
    if not students and not teachers:
        raise OdkdError("nothing to time: give --student NAME@WxH and/or fetched --teachers")
    report = bench_latency(students, teachers, runtimes=args.runtimes, threads=args.threads,
                           iters=args.iters, warmup=args.warmup, seed=args.seed,
                           burst=args.burst, switch=args.switch,
                           accuracy=args.accuracy, cache=args.cache,
                           log=lambda s: print(f"[odkd] {s}", file=sys.stderr, flush=True))
    table = markdown_table(report)
    if args.json:
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, table + "\n")
    if args.plot:
        plot(report, args.plot)
    print(table)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from odkd.errors import OdkdError

    try:
        mod = importlib.import_module(TRAIN_MODULE)
    except ModuleNotFoundError as e:
        if e.name != TRAIN_MODULE:
            raise
        raise OdkdError(f"`odkd bench train` is not available in this build ({TRAIN_MODULE} "
                        "is missing); `odkd bench infer` works") from None
    parser = argparse.ArgumentParser(prog="odkd bench train",
                                     description=(mod.__doc__ or "").strip().split("\n")[0])
    mod.add_arguments(parser)
    return int(mod.run(parser.parse_args(args.rest)) or 0)
