"""``odkd experiment``: teachers once (cached by config hash), then every student variant over
several seeds, each evaluated on every split -> results.csv, results.md, ablation.png.

Resumable: each finished run leaves ``done.json``; an interrupted one resumes from its
``last.pt``. Methods are named after the paper's baselines (see METHODS).

``plan``      the experiment config, methods, generated data and the list of runs
``jobs``      one run: reuse check, training (or resume), evaluation on every split
``parallel``  several runs at once in spawned processes, stopped however the experiment ends
``report``    results.csv, results.md (mean ± std, seed-by-seed differences, plateau check),
              ablation.png, curves.png
``run``       run_experiment: all of the above in order
``tables``    ``odkd results table``: the held-out table of one or more results.csv
``archive``   ``odkd results save`` / ``restore``: finished runs kept in git and put back
"""
from odkd.experiment.plan import (METHODS, TEACHER_METHODS, ExperimentConfig, SynthSpec,
                                  load_experiment)
from odkd.experiment.report import (aggregate, differences_markdown, results_markdown,
                                    write_results)
from odkd.experiment.run import run_experiment

__all__ = ["METHODS", "TEACHER_METHODS", "ExperimentConfig", "SynthSpec", "aggregate",
           "differences_markdown", "load_experiment", "results_markdown", "run_experiment",
           "write_results"]
