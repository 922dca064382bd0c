"""Runs of an experiment at once (``jobs``), each in a spawned process with
``threads_per_job`` torch threads; a run starts once the teachers it needs are done. However
the experiment ends (a failed run, Ctrl-C, SIGTERM, SIGKILL), the runs it started stop.
"""
from __future__ import annotations

import os
import time

from odkd.experiment.jobs import _evaluate, _finished, _train_once
from odkd.experiment.plan import ExperimentConfig, _Job, _run_config


def _job_main(exp: ExperimentConfig, job: _Job, data_key: str, splits: dict) -> None:
    """Body of one parallel run (a fresh process): train, then evaluate every split."""
    import sys

    import torch

    log_path = os.path.join(job.workdir, "train.log")
    os.makedirs(job.workdir, exist_ok=True)
    sys.stdout = sys.stderr = open(log_path, "a", buffering=1)
    torch.set_num_threads(exp.threads_per_job)
    cfg = _run_config(exp, job.overrides, job.workdir)
    done = _train_once(cfg, distill=job.distill, log=print, data_key=data_key)
    _evaluate(cfg, done["best"], splits, job.workdir)


def _exit_with_parent(parent_pid: int, poll_s: float) -> None:
    """Thread body of a run process: exit when the experiment that started it is gone.

    A SIGKILL (or a crash) of the experiment runs no clean-up, and a spawned child is then
    re-parented and would train on, on the cores a rerun needs. Polling the parent pid is the
    portable check (prctl is Linux-only).
    """
    while True:
        time.sleep(poll_s)
        if os.getppid() != parent_pid:
            os._exit(1)


def _child(parent_pid: int, poll_s: float, target, args: tuple) -> None:
    """Entry point of every run process: the parent watch first, then the run."""
    import threading

    threading.Thread(target=_exit_with_parent, args=(parent_pid, poll_s), daemon=True).start()
    target(*args)


class _Terminated(BaseException):
    """SIGTERM in the experiment process, raised so its clean-up runs."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _run_parallel(exp: ExperimentConfig, jobs: list, data_key: str, splits: dict,
                  log=print, on_done=None, target=None, poll_s: float = 2.0) -> None:
    """Train (and evaluate) ``jobs`` with up to ``exp.jobs`` processes at once.

    Each process leaves exactly what the sequential path leaves (done.json, eval summaries),
    so the table is then built by the sequential loop, which finds every run finished.
    However this function is left (a failed run, Ctrl-C, SIGTERM), the runs it started are
    stopped; they also stop by themselves if this process is killed outright. ``target``
    replaces ``_job_main`` (tests).
    """
    import signal
    import threading

    on_main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGTERM, _on_sigterm) if on_main else None
    running: dict = {}
    try:
        _schedule(exp, jobs, data_key, splits, log, on_done, target or _job_main, poll_s,
                  running)
    except _Terminated:
        log(f"[odkd] terminated: stopping {len(running)} running run(s); rerun the same "
            f"command to resume (finished runs are skipped)")
        raise SystemExit(143)
    finally:
        for proc, _ in running.values():
            if proc.exitcode is None:
                proc.terminate()
        for proc, _ in running.values():
            proc.join(timeout=30)
            if proc.exitcode is None:
                proc.kill()
        if on_main:
            signal.signal(signal.SIGTERM, old)


def _schedule(exp, jobs, data_key, splits, log, on_done, target, poll_s, running) -> None:
    """The scheduling loop of ``_run_parallel``; ``running`` is shared so its caller can stop
    whatever is still running when the loop is left."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # no fork: a forked torch process can deadlock
    pending = [j for j in jobs if not _finished(j, splits)]
    finished = {j.name for j in jobs if j not in pending}
    t0 = time.time()
    while pending or running:
        for name, (proc, job) in list(running.items()):
            if proc.exitcode is None:
                continue
            del running[name]
            if proc.exitcode != 0:  # the caller stops the other runs
                from odkd.errors import OdkdError
                raise OdkdError(f"experiment run {name} failed (exit {proc.exitcode}); "
                                f"see {os.path.join(job.workdir, 'train.log')}")
            finished.add(name)
            if on_done is not None:
                on_done()
            log(f"[odkd] done {name} ({(time.time() - t0) / 60:.1f} min into the parallel "
                f"phase; {len(pending)} waiting, {len(running)} running)")
        while len(running) < exp.jobs:
            ready = [j for j in pending if all(f"teacher_{t}" in finished for t in j.needs)]
            if not ready:
                break
            job = ready[0]
            pending.remove(job)
            proc = ctx.Process(target=_child, name=job.name,
                               args=(os.getpid(), poll_s, target,
                                     (exp, job, data_key, splits)))
            proc.start()
            running[job.name] = (proc, job)
            log(f"[odkd] start {job.name} -> {job.workdir} (log: train.log there)")
        if not running and pending:
            from odkd.errors import OdkdError
            raise OdkdError(f"experiment: runs {[j.name for j in pending]} wait for teachers "
                            f"that are not scheduled")
        time.sleep(2.0)
