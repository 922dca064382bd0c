"""``run_experiment``: the data, then the teachers and every student run (sequentially, or
``jobs`` at once), each evaluated on every split, the tables rewritten as runs finish.
"""
from __future__ import annotations

import os
import time

from odkd.experiment.jobs import _check_reusable, _evaluate, _train_once
from odkd.experiment.parallel import _run_parallel
from odkd.experiment.plan import (ExperimentConfig, _data_key, _run_config, _splits,
                                  _student_jobs, _teacher_jobs, prepare_data)
from odkd.experiment.report import _finished_rows, _job_rows, write_results


def run_experiment(exp: ExperimentConfig, log=print) -> dict:
    t_start = time.time()
    os.makedirs(exp.out, exist_ok=True)
    prepare_data(exp, log)
    data_key = _data_key(exp)
    splits = _splits(exp)
    rows: list[dict] = []
    tjobs = _teacher_jobs(exp, data_key)
    runs = _student_jobs(exp, tjobs)
    # a finished run trained from another config is refused now, not after hours of training
    # the others (the parallel phase skips finished runs without reading their configs)
    for job in [tjobs["pt"], tjobs["st"], *runs]:
        _check_reusable(_run_config(exp, job.overrides, job.workdir), job.distill, data_key)
    if exp.jobs > 1:
        # longest first: the ST, then the PT, then runs in table order as teachers finish;
        # the partial table is rewritten after each finished run
        everything = [tjobs["st"], tjobs["pt"], *runs]

        def partial():
            write_results(exp, _finished_rows(exp, [tjobs["pt"], tjobs["st"], *runs], splits),
                          time.time() - t_start)
        _run_parallel(exp, everything, data_key, splits, log, on_done=partial)

    for i, job in enumerate([tjobs["pt"], tjobs["st"], *runs]):
        cfg = _run_config(exp, job.overrides, job.workdir)
        if job.method.startswith("teacher_"):
            log(f"[odkd] teacher {job.method[8:].upper()} ({cfg.model.name}"
                f"{' + mask' if cfg.model.with_mask else ''}) -> {job.workdir}")
        else:
            log(f"[odkd] run {i - 1}/{len(runs)}: {job.method} {job.student} seed {job.seed} "
                f"-> {job.workdir}")
        done = _train_once(cfg, distill=job.distill, log=log, data_key=data_key)
        rows += _job_rows(cfg, job, done, _evaluate(cfg, done["best"], splits, job.workdir))
        if not job.method.startswith("teacher_"):
            write_results(exp, rows, time.time() - t_start)  # partial tables as we go
    table, files = write_results(exp, rows, time.time() - t_start)
    log(table)
    log(f"[odkd] results: {files[0]}, {', '.join(os.path.basename(f) for f in files[1:])} "
        f"({(time.time() - t_start) / 60:.1f} min)")
    return {"rows": rows, "table": table, "files": files}
