"""``odkd experiment CONFIG [key=value ...]``: teachers, every student variant, every seed."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run a distillation experiment (table + chart)",
                       description="Train the teachers once (cached), then every method x "
                                   "student x seed, evaluate each on every split and write "
                                   "results.csv, results.md and ablation.png. Re-running "
                                   "resumes where it stopped.")
    p.add_argument("config", help="experiment YAML, or the name of a shipped one "
                                   "('odkd configs' lists them)")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides (e.g. out=DIR)")
    p.set_defaults(func=run)


def run(args) -> int:
    from odkd.experiment import load_experiment, run_experiment

    exp = load_experiment(args.config, args.overrides)
    run_experiment(exp)
    return 0
