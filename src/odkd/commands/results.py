"""``odkd results table|save|restore``: what is done with a finished experiment's results.

A command of its own rather than words under ``odkd experiment CONFIG``, where a config (or a
folder) named ``table`` would be ambiguous and each action could not have its own --help.
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("results", help="held-out tables from results.csv; save/restore runs",
                       description="Work with finished `odkd experiment` results: print the "
                                   "held-out table of one or more results.csv, keep a run "
                                   "folder's logs (and teacher weights) in a results folder, "
                                   "or put them back so a new experiment skips those runs.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    t = actions.add_parser(
        "table", help="held-out AP table and seed-by-seed differences from results.csv",
        description="Print, in markdown, AP mean ± std per method on heldout_val and "
                    "heldout_occluded, and every method's seed-by-seed AP differences against "
                    "the baselines (and ODKD's against each ablation row): their mean ± std, "
                    "the seed spread (the larger std over seeds of the two methods) and on how "
                    "many seeds the first is ahead. Several CSVs are pooled: means run over "
                    "every (CSV, seed), differences pair runs of one CSV and seed, and a run "
                    "a later CSV lists again is counted once.")
    t.add_argument("csv", nargs="+", metavar="CSV", help="an experiment's results.csv")
    t.set_defaults(func=run_table)

    for name, src, dst, short, what in (
            ("save", "OUT_DIR", "RESULTS_DIR",
             "copy an experiment's finished runs (logs, teacher weights) into a folder",
             "Copy every finished run under OUT_DIR/{teachers,runs} (config, logs, evaluation "
             "summaries, teachers' best.pt; no student weights, no per-detection results) "
             "into RESULTS_DIR, e.g. `odkd results save runs/converged "
             "results/converged/logs`."),
            ("restore", "RESULTS_DIR", "OUT_DIR",
             "put saved runs back so `odkd experiment` skips them",
             "Put the runs kept in RESULTS_DIR back under OUT_DIR, so that `odkd experiment "
             "... out=OUT_DIR` skips them and new runs distil from the same teacher files, "
             "e.g. `odkd results restore results/converged/logs runs/converged`.")):
        a = actions.add_parser(name, help=short,
                               description=what)
        a.add_argument("src", metavar=src)
        a.add_argument("dst", metavar=dst)
        a.add_argument("--no-weights", action="store_true",
                       help="leave the teachers' best.pt out as well (logs and evaluations "
                            "only)")
        a.set_defaults(func=run_archive)


def run_table(args) -> int:
    from odkd.experiment.tables import heldout_table

    text, notes = heldout_table(args.csv)
    for note in notes:
        print(note, file=sys.stderr)
    sys.stdout.write(text)
    return 0


def run_archive(args) -> int:
    from odkd.experiment.archive import copy_tree

    n = copy_tree(args.src, args.dst, weights=not args.no_weights)
    print(f"{args.action}d {n} finished runs from {args.src} to {args.dst}")
    return 0
