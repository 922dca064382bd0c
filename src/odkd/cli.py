"""``odkd`` command line: one sub-command per module in :mod:`odkd.commands`."""
from __future__ import annotations

import argparse
import importlib
import sys

from odkd.errors import OdkdError, one_line

# Each module defines ``register(subparsers)`` which adds its parser and sets ``func``.
COMMANDS = ["train", "eval", "convert", "synth", "distill", "experiment", "results", "demo",
            "infer", "export", "bench", "configs", "data", "teachers"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odkd",
        description="Orderly Dual-Teacher Knowledge Distillation for lightweight pose estimation.")
    parser.add_argument("--version", action="version",
                        version=f"odkd {importlib.import_module('odkd').__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"odkd.commands.{name}").register(sub)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option, so in
    # `odkd train CFG --resume a=1` the override a=1 would be "unrecognized": take such
    # key=value words as overrides wherever they stand; anything else is still an error.
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides or []) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rc = args.func(args)
    except OdkdError as e:
        print(f"odkd {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"odkd {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
