"""``odkd experiment``: teachers once (cached by config hash), then every student variant over
several seeds, each evaluated on every split -> results.csv, results.md, ablation.png.

Resumable: each finished run leaves ``done.json``; an interrupted one resumes from its
``last.pt``. Methods are named after the paper's baselines (see METHODS).
"""
from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
import time
from dataclasses import dataclass, field

import yaml

from odkd.config import Config, ConfigError, _build, load_config, load_yaml, resolve_config_path
from odkd.utils import atomic_write_text

# method -> overrides on top of the student config. ``odkd`` is the full method with the
# distill defaults (orderly PT->ST, binarized teacher targets, ST segmentation imitation).
METHODS: dict[str, list[str]] = {
    "scratch": ["distill.schedule=none", "model.with_mask=false"],
    "fpd_pt": ["distill.method=fpd", "distill.schedule=pt_only", "distill.binarize_mode=none",
               "model.with_mask=false"],
    "fpd_st": ["distill.method=fpd", "distill.schedule=st_only", "distill.binarize_mode=none",
               "model.with_mask=false"],
    "pt_only": ["distill.schedule=pt_only", "model.with_mask=false"],
    "st_only": ["distill.schedule=st_only"],
    "simultaneous": ["distill.schedule=simultaneous"],
    "reverse": ["distill.schedule=reverse"],
    "odkd": ["distill.schedule=orderly"],
    "odkd_no_bin": ["distill.schedule=orderly", "distill.binarize_mode=none"],
    "odkd_no_seg": ["distill.schedule=orderly", "distill.seg_weight=0", "model.with_mask=false"],
}
TEACHER_METHODS = ("teacher_pt", "teacher_st")
# COCO keypoint metrics, plus PCK@0.1 (bbox-normalised) which still ranks models whose AP
# is near zero (short CPU runs)
METRIC_KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "PCK"]
CSV_COLUMNS = ["method", "student", "split", "seed", "params", "gflops", *METRIC_KEYS,
               "train_s"]


@dataclass
class SynthSpec:
    root: str = "data/synthpose"
    size: list = field(default_factory=lambda: [256, 256])
    seed: int = 0
    train: int = 2000
    val: int = 300
    occluded: int = 300
    difficulty: str = "medium"  # SynthPose --difficulty: easy | medium | hard (see scene.py)
    # Held-out sets that report (settings are chosen on val only): `heldout` val-like and
    # occluded images each, drawn with `heldout_seed` into ROOT_heldout, evaluated as the
    # splits heldout_val / heldout_occluded. 0: none.
    heldout: int = 0
    heldout_seed: int = 1


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    out: str = "runs/experiment"
    synth: SynthSpec | None = None           # generate SynthPose splits first (None: bring data)
    splits: dict = field(default_factory=dict)  # name -> {ann, images}; default: synth val/occluded
    base: dict = field(default_factory=dict)     # Config shared by every run
    pt: list = field(default_factory=lambda: ["model.name=hrnet_w32", "model.with_mask=false"])
    st: list = field(default_factory=lambda: ["model.name=hrnet_w48", "model.with_mask=true"])
    teacher_seed: int = 0
    student: list = field(default_factory=list)  # overrides for every student run
    students: list = field(default_factory=lambda: ["hrnet_w16"])
    methods: list = field(default_factory=lambda: ["scratch", "fpd_pt", "odkd"])
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    # extra named methods: name -> overrides on top of the student's (e.g. a binarization
    # threshold sweep: {odkd_tau03: [distill.schedule=orderly, distill.binarize_tau=0.3]})
    variants: dict = field(default_factory=dict)
    # Runs trained at once, each in its own process with `threads_per_job` torch threads. On
    # a 2-core CPU two 1-thread runs do more work per second than one 2-thread run (README,
    # "Converged distillation table"); a run starts once the teachers it needs are done.
    jobs: int = 1
    threads_per_job: int = 1

    def method_overrides(self, name: str) -> list:
        return list(self.variants[name]) if name in self.variants else list(METHODS[name])


def load_experiment(path: str, overrides: list[str] = ()) -> ExperimentConfig:
    path = resolve_config_path(path)
    data = load_yaml(path)
    from odkd.config import _deep_set, parse_override
    for ov in overrides:
        keys, value = parse_override(ov)
        _deep_set(data, keys, value)
    try:
        exp = _build(ExperimentConfig, data, "")
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    clash = sorted(set(exp.variants) & (set(METHODS) | set(TEACHER_METHODS)))
    if clash:
        raise ConfigError(f"{path}: variants {clash} reuse built-in method names")
    for name, ovs in exp.variants.items():
        if not isinstance(ovs, list) or not all(isinstance(o, str) and "=" in o for o in ovs):
            raise ConfigError(f"{path}: variants.{name} must be a list of key=value strings")
    known = set(METHODS) | set(exp.variants)
    unknown = [m for m in exp.methods if m not in known and m not in TEACHER_METHODS]
    if unknown:
        raise ConfigError(f"{path}: methods {unknown} unknown; choose from {sorted(known)} "
                          f"or define them under `variants`")
    load_config(None, base=exp.base)  # validate the shared config early
    return exp


def _splits(exp: ExperimentConfig) -> dict:
    if exp.splits:
        return exp.splits
    if exp.synth is None:
        raise ConfigError("experiment: give `splits` or a `synth` section")
    r = exp.synth.root
    out = {s: {"ann": os.path.join(r, "annotations", f"person_keypoints_{s}.json"),
               "images": os.path.join(r, s)} for s in ("val", "occluded")}
    if exp.synth.heldout:
        h = heldout_root(exp.synth)
        out.update({f"heldout_{s}": {"ann": os.path.join(h, "annotations",
                                                         f"person_keypoints_{s}.json"),
                                     "images": os.path.join(h, s)} for s in ("val", "occluded")})
    return out


def heldout_root(s: SynthSpec) -> str:
    return s.root.rstrip("/") + "_heldout"


def prepare_data(exp: ExperimentConfig, log=print) -> None:
    """Generate the SynthPose splits unless an identical set already exists."""
    if exp.synth is None:
        return
    from odkd.synth import generate_split

    s = exp.synth
    todo = [(s.root, split, n, s.seed)
            for split, n in (("train", s.train), ("val", s.val), ("occluded", s.occluded))]
    if s.heldout:
        todo += [(heldout_root(s), split, s.heldout, s.heldout_seed)
                 for split in ("val", "occluded")]
    for root, split, n, seed in todo:
        ann = os.path.join(root, "annotations", f"person_keypoints_{split}.json")
        stamp = os.path.join(root, f".{split}.spec.json")
        spec = {"n": n, "seed": seed, "size": list(s.size), "difficulty": s.difficulty}
        if os.path.exists(ann) and os.path.exists(stamp) and json.load(open(stamp)) == spec:
            log(f"[odkd] SynthPose {split}: cached ({n} images in {root})")
            continue
        t0 = time.time()
        generate_split(root, split, n, seed, size=tuple(s.size), difficulty=s.difficulty)
        atomic_write_text(stamp, json.dumps(spec))
        log(f"[odkd] SynthPose {split}: {n} images (seed {seed}) in {time.time() - t0:.1f}s")


def _data_key(exp: ExperimentConfig) -> str:
    """Short hash of the generated dataset's spec ('' when the experiment brings its data)."""
    if exp.synth is None:
        return ""
    import dataclasses
    import hashlib

    # every field that shapes the training data, bar the folder (already part of each run's
    # data paths); the held-out sets only report, so adding them keeps finished runs valid
    spec = {k: v for k, v in dataclasses.asdict(exp.synth).items()
            if k not in ("root", "heldout", "heldout_seed")}
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]


def _run_config(exp: ExperimentConfig, overrides: list[str], workdir: str) -> Config:
    r = exp.synth.root if exp.synth else ""
    base = dict(exp.base)
    if exp.synth is not None:
        data = dict(base.get("data", {}))
        data.setdefault("train_ann", os.path.join(r, "annotations", "person_keypoints_train.json"))
        data.setdefault("train_images", os.path.join(r, "train"))
        data.setdefault("val_ann", os.path.join(r, "annotations", "person_keypoints_val.json"))
        data.setdefault("val_images", os.path.join(r, "val"))
        base["data"] = data
    return load_config(None, list(overrides) + [f"workdir={workdir}"], base=base)


def _done(workdir: str) -> dict | None:
    p = os.path.join(workdir, "done.json")
    return json.load(open(p)) if os.path.exists(p) else None


def _key_sections(distill: bool) -> tuple:
    return ("data", "model", "train", "distill") if distill else ("data", "model", "train")


def _unused_teachers(cfg: Config, distill: bool) -> tuple:
    """Teachers a distilled run never loads (FPD from one teacher): their settings, e.g. the
    other teacher's checkpoint path, do not shape what it learns."""
    if not distill:
        return ()
    from odkd.distill.losses import teachers_in_use

    used = teachers_in_use(cfg.distill)
    return tuple(t for t in ("pt", "st") if t not in used)


def _run_key(cfg: Config, data_key: str, distill: bool = True) -> str:
    """What a finished run was trained from: its config (bar the workdir) and the data spec.

    A teacher (``distill=False``) is trained on the ground truth alone, so ``distill.*`` is
    not part of its key: the experiment's shared ``base.distill`` may change without
    invalidating the cached teachers (their folder is named from the same three sections).
    Nor is a teacher the run does not use: an FPD-from-PT run stays valid when the ST changes.
    """
    unused = tuple(f"distill.{t}" for t in _unused_teachers(cfg, distill))
    return f"{cfg.hash(*_key_sections(distill), leave_out=unused)}-{data_key}"


def _same_training(cfg: Config, done: dict, data_key: str, distill: bool) -> bool:
    """Whether the finished run in ``cfg.workdir`` (its config.yaml, read in today's keys)
    trained what ``cfg`` asks for on the same data, although its key differs: a key hashes
    every field, so a field added to odkd since (at its default) or a renamed one changes it."""
    import yaml

    from odkd.config import upgrade_saved_config
    from odkd.engine.checkpointing import config_changes

    path = os.path.join(cfg.workdir, "config.yaml")
    if not str(done.get("key", "")).endswith(f"-{data_key}") or not os.path.exists(path):
        return False
    saved = upgrade_saved_config(yaml.safe_load(open(path)) or {}, distilled=distill)
    unused = tuple(f"distill.{t}." for t in _unused_teachers(cfg, distill))
    changes = config_changes(saved, cfg, _key_sections(distill))
    return all(k.startswith(unused) for k in changes)  # startswith(()) is False


def _check_reusable(cfg: Config, distill: bool, data_key: str) -> dict | None:
    """The done.json of the finished run in ``cfg.workdir`` (None when unfinished), or a
    ConfigError when it was trained from another config or dataset."""
    done = _done(cfg.workdir)
    if done is None:
        return None
    # keys written before a key left distill.* out (teachers) or the unused teacher out (FPD)
    key = _run_key(cfg, data_key, distill)
    accepted = {key, f"{cfg.hash('data', 'model', 'train', 'distill')}-{data_key}"}
    if done.get("key", key) not in accepted and not _same_training(
            cfg, done, data_key, distill):
        # reusing it would put a stale number in the table without a word
        raise ConfigError(f"{cfg.workdir}: finished with a different config or dataset "
                          f"than this experiment asks for; use another `out` or delete it")
    return done


def _train_once(cfg: Config, distill: bool, log, data_key: str = "") -> dict:
    """Train (or resume, or skip when done) one run; returns its done.json content."""
    done = _check_reusable(cfg, distill, data_key)
    if done:
        return done
    from odkd.engine.distill import distill as run_distill
    from odkd.engine.train import train

    resume = os.path.exists(os.path.join(cfg.workdir, "last.pt"))
    t0 = time.time()
    fn = run_distill if distill else train
    # every split is evaluated by _evaluate afterwards: no second pass over val here
    out = fn(cfg, resume=resume, progress=True, final_eval=False)
    done = {"best": out["best"], "train_s": round(time.time() - t0, 1),
            "resumed": resume, "key": _run_key(cfg, data_key, distill)}
    atomic_write_text(os.path.join(cfg.workdir, "done.json"), json.dumps(done))
    return done


def _evaluate(cfg: Config, ckpt: str, splits: dict, workdir: str) -> dict:
    """Evaluate a checkpoint on every split (cached in WORKDIR/eval_<split>/metrics.json)."""
    import torch

    from odkd.engine.evaluate import build_eval_records, run_evaluation
    from odkd.models.checkpoint import build_from_checkpoint
    from odkd.utils import pick_device

    out = {}
    model = None
    for split, spec in splits.items():
        d = os.path.join(workdir, f"eval_{split}")
        mpath = os.path.join(d, "summary.json")  # metrics.json + PCK, written last
        if os.path.exists(mpath):
            out[split] = json.load(open(mpath))
            continue
        if model is None:
            device = pick_device(cfg.train.device)
            model = build_from_checkpoint(ckpt).to(device).eval()
        coco, records = build_eval_records(cfg, spec["ann"], spec["images"], "gt")
        with torch.inference_mode():
            out[split] = run_evaluation(cfg, model, coco, records, device, out_dir=d,
                                        desc=f"eval {split}")
        atomic_write_text(mpath, json.dumps(out[split]))
    return out


def _complexity(cfg: Config) -> tuple[int, float]:
    return _model_complexity(cfg.model.name, cfg.model.num_joints, tuple(cfg.data.input_size))


@functools.lru_cache(maxsize=None)
def _model_complexity(name: str, num_joints: int, input_size: tuple) -> tuple[int, float]:
    # cached: the partial table is rebuilt after every run, for every finished run
    from odkd.models import build_model
    from odkd.models.complexity import complexity

    c = complexity(build_model(name, num_joints, False), input_size)
    return int(c["params"]), float(c["gflops"])


@dataclass
class _Job:
    """One training run of the experiment and what it waits for."""
    name: str              # teacher_pt / teacher_st / METHOD-STUDENT-sSEED
    overrides: list
    workdir: str
    distill: bool
    needs: tuple = ()      # teacher names ("pt", "st") whose training must finish first
    method: str = ""       # table row: method, student, seed
    student: str = ""
    seed: int = 0


def _teacher_jobs(exp: ExperimentConfig, data_key: str) -> dict:
    """Teachers: trained once, cached under a hash of everything that defines them."""
    jobs = {}
    for name, ovs in (("pt", exp.pt), ("st", exp.st)):
        ovs = list(ovs) + [f"train.seed={exp.teacher_seed}", "distill.schedule=none"]
        probe = _run_config(exp, ovs, "x")
        wd = os.path.join(exp.out, "teachers",
                          f"{name}-{probe.hash('data', 'model', 'train')}{data_key[:6]}")
        jobs[name] = _Job(f"teacher_{name}", ovs, wd, distill=False,
                          method=f"teacher_{name}", student=probe.model.name,
                          seed=exp.teacher_seed)
    return jobs


def _student_jobs(exp: ExperimentConfig, teachers: dict) -> list:
    out = []
    # seed-major: every method's seed 0 finishes before any seed 1, so a table cut short by
    # the clock still compares all methods on the same seeds
    for student in exp.students:
        for seed in exp.seeds:
            for method in exp.methods:
                if method not in METHODS and method not in exp.variants:
                    continue
                wd = os.path.join(exp.out, "runs", f"{method}-{student}-s{seed}")
                ovs = [f"model.name={student}", *exp.student, *exp.method_overrides(method),
                       f"train.seed={seed}",
                       f"distill.pt.checkpoint={os.path.join(teachers['pt'].workdir, 'best.pt')}",
                       f"distill.st.checkpoint={os.path.join(teachers['st'].workdir, 'best.pt')}"]
                cfg = _run_config(exp, ovs, wd)
                needs = ()
                if cfg.distill.schedule != "none":
                    from odkd.distill.losses import teachers_in_use
                    needs = tuple(sorted(teachers_in_use(cfg.distill)))
                out.append(_Job(f"{method}-{student}-s{seed}", ovs, wd,
                                distill=cfg.distill.schedule != "none", needs=needs,
                                method=method, student=student, seed=seed))
    return out


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
    re-parented and trains on, on cores a rerun needs (found when a killed table left both
    runs training). Polling the parent pid is the portable check (prctl is Linux-only).
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


def _job_rows(cfg: Config, job: _Job, done: dict, metrics: dict) -> list:
    """One table row per evaluated split of a finished job."""
    params, gflops = _complexity(cfg)
    return [{"method": job.method, "student": job.student, "split": split, "seed": job.seed,
             "params": params, "gflops": round(gflops, 3), **{k: m[k] for k in METRIC_KEYS},
             "train_s": done["train_s"]} for split, m in metrics.items()]


def _finished_rows(exp: ExperimentConfig, jobs: list, splits: dict) -> list:
    """Table rows of the jobs that are finished and evaluated (read from their files)."""
    rows = []
    for job in jobs:
        if _finished(job, splits):
            metrics = {split: json.load(open(os.path.join(job.workdir, f"eval_{split}",
                                                          "summary.json"))) for split in splits}
            rows += _job_rows(_run_config(exp, job.overrides, job.workdir), job,
                              _done(job.workdir), metrics)
    return rows


def _finished(job: _Job, splits: dict) -> bool:
    return _done(job.workdir) is not None and all(
        os.path.exists(os.path.join(job.workdir, f"eval_{s}", "summary.json")) for s in splits)


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


def _mean_std(vals: list[float]) -> tuple[float, float]:
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd


def aggregate(rows: list[dict]) -> list[dict]:
    """One entry per (method, student, split): mean and std over seeds of every metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["student"], r["split"]), []).append(r)
    out = []
    for (method, student, split), rs in groups.items():
        e = {"method": method, "student": student, "split": split, "n": len(rs),
             "params": rs[0]["params"], "gflops": rs[0]["gflops"]}
        for k in METRIC_KEYS:
            e[k], e[k + "_std"] = _mean_std([float(r[k]) for r in rs])
        out.append(e)
    return out


def _cell(e: dict, k: str) -> str:
    if e[k] < 0:  # pycocotools' -1: no ground truth in that size range
        return "n/a"
    if e["n"] > 1:
        return f"{100 * e[k]:.1f} ± {100 * e[k + '_std']:.1f}"
    return f"{100 * e[k]:.1f}"


def results_markdown(rows: list[dict], title: str, wall_s: float | None = None) -> str:
    agg = aggregate(rows)
    buf = io.StringIO()
    buf.write(f"### {title}\n\n")
    for split in dict.fromkeys(e["split"] for e in agg):
        buf.write(f"**{split}** (mean ± std over seeds)\n\n")
        buf.write("| method | model | params (M) | GFLOPs | seeds | " + " | ".join(METRIC_KEYS)
                  + " |\n")
        buf.write("|---|---|---|---|---|" + "---|" * len(METRIC_KEYS) + "\n")
        for e in agg:
            if e["split"] != split:
                continue
            cells = [_cell(e, k) for k in METRIC_KEYS]
            buf.write(f"| {e['method']} | {e['student']} | {e['params'] / 1e6:.2f} | "
                      f"{e['gflops']:.2f} | {e['n']} | " + " | ".join(cells) + " |\n")
        buf.write("\n")
    if wall_s is not None:
        buf.write(f"Wall time: {wall_s / 60:.1f} min.\n")
    return buf.getvalue()


def plot_ablation(rows: list[dict], path: str, metrics=("AP", "PCK")) -> None:
    """Grouped bars (mean ± std over seeds) per method, one group colour per split."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(rows)
    splits = list(dict.fromkeys(e["split"] for e in agg))
    labels = list(dict.fromkeys(f"{e['method']}\n{e['student']}" for e in agg))
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(6, 1.2 * len(labels)) * len(metrics)
                                                       / 1.5, 4), squeeze=False)
    width = 0.8 / max(1, len(splits))
    for ax, metric in zip(axes[0], metrics):
        for j, split in enumerate(splits):
            xs, ys, es = [], [], []
            for i, lab in enumerate(labels):
                for e in agg:
                    if e["split"] == split and f"{e['method']}\n{e['student']}" == lab:
                        xs.append(i + j * width)
                        ys.append(100 * e[metric])
                        es.append(100 * e[metric + "_std"])
            ax.bar(xs, ys, width, yerr=es, capsize=3, label=split)
        ax.set_xticks([i + width * (len(splits) - 1) / 2 for i in range(len(labels))])
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel(f"{metric} (%)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from odkd.utils import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


BASELINES = ("scratch", "fpd_pt", "fpd_st")


def ahead(diffs_points: list) -> int:
    """How many differences (AP points) are positive as printed, to 0.1 point: a +0.04 that
    the table shows as +0.0 is a tie, not a win (nor is float noise on an exact tie)."""
    return sum(round(d, 1) > 0 for d in diffs_points)


def _comparisons(methods: list) -> list:
    """(method, baseline) pairs: every method against each baseline, each pair once (a
    baseline only against the baselines before it: fpd - scratch), then the full method
    against each ablation row (odkd - odkd_no_seg: positive when the removed part helps)."""
    pairs = [(m, base) for base in BASELINES for m in methods
             if m != base and not (m in BASELINES and BASELINES.index(m) < BASELINES.index(base))
             and base in methods]
    if "odkd" in methods:
        pairs += [("odkd", m) for m in methods if m not in BASELINES and m != "odkd"]
    return pairs


def differences_markdown(rows: list[dict]) -> str:
    """Seed-by-seed AP differences of every method against each baseline of the same student
    (and of ODKD against each ablation row), beside the seed spread (std over seeds) of the
    two methods compared."""
    ap = {(r["method"], r["student"], r["split"], int(r["seed"])): float(r["AP"]) for r in rows}
    methods = list(dict.fromkeys(r["method"] for r in rows if not r["method"].startswith("teacher")))
    out = []
    for split in dict.fromkeys(r["split"] for r in rows):
        lines = []
        for student in dict.fromkeys(r["student"] for r in rows
                                     if not r["method"].startswith("teacher")):
            for m, base in _comparisons(methods):
                seeds = sorted(sd for (mm, st, sp, sd) in ap
                               if (mm, st, sp) == (m, student, split)
                               and (base, student, split, sd) in ap)
                if not seeds:
                    continue
                d = [ap[(m, student, split, sd)] - ap[(base, student, split, sd)] for sd in seeds]
                mean, sd_d = _mean_std(d)
                spread = max(_mean_std([ap[(x, student, split, sd)] for sd in seeds])[1]
                             for x in (m, base))
                wins = ahead([100 * v for v in d])
                lines.append(f"| {m} − {base} | {student} | "
                             + " / ".join(f"{100 * v:+.1f}" for v in d)
                             + f" | {100 * mean:+.1f} ± {100 * sd_d:.1f} | {100 * spread:.1f} "
                             f"| {wins}/{len(d)} |")
        if lines:
            out.append(f"**{split}**: AP difference (points), seed by seed\n\n"
                       "| comparison | student | per seed | mean ± std | seed spread | ahead |\n"
                       "|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    if not out:
        return ""
    return ("#### Differences against the baselines\n\n'seed spread' is the larger std over "
            "seeds of the two methods compared; `odkd − X` rows compare the full method with "
            "an ablation row X (positive: what X removes helps).\n\n" + "\n".join(out))


def _curves(exp: ExperimentConfig) -> dict:
    """name -> [(step, val AP)] from every finished or running run's log.csv."""
    out = {}
    for group in ("teachers", "runs"):
        root = os.path.join(exp.out, group)
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name, "log.csv")
            if not os.path.exists(path):
                continue
            pts = []
            cap = int(exp.base.get("train", {}).get("max_iters_per_epoch", 0) or 1)
            for r in csv.DictReader(open(path, newline="")):
                # logs written before `step` was logged: epochs x the iteration cap
                step = int(r["step"]) if r.get("step") else int(r["epoch"]) * cap
                if r.get("val_AP"):
                    pts.append((step, float(r["val_AP"])))
            if pts:
                out[name.split("-")[0] if group == "teachers" else name] = pts
    return out


def plateau_markdown(curves: dict, method: str = "scratch") -> str:
    """The plateau check: val AP rise over the last 20 % of each ``method`` run's schedule."""
    lines = []
    for name, pts in curves.items():
        if not name.startswith(f"{method}-") or len(pts) < 2:
            continue
        last_step, last_ap = pts[-1]
        ref = [p for p in pts if p[0] <= 0.8 * last_step]
        if not ref:
            continue
        s0, a0 = ref[-1]
        rise = (last_ap - a0) / a0 if a0 > 0 else float("inf")
        lines.append(f"| {name} | {s0} | {100 * a0:.1f} | {last_step} | {100 * last_ap:.1f} | "
                     f"{100 * rise:+.1f} % |")
    if not lines:
        return ""
    return ("#### Plateau check (val AP %, last 20 % of the schedule)\n\n"
            "| run | step | AP | last step | AP | rise |\n|---|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")


def plot_curves(curves: dict, path: str) -> None:
    """Val AP against training step for every run (one line each, colour by method)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours: dict = {}
    for name, pts in curves.items():
        method = name.rsplit("-", 2)[0] if "-" in name else f"teacher {name.upper()}"
        new = method not in colours
        c = colours.setdefault(method, f"C{len(colours) % 10}")
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], color=c, marker=".",
                alpha=0.8, lw=2.5 if method.startswith("teacher") else 1.2,
                label=method if new else None)
    ax.set_xlabel("training step")
    ax.set_ylabel("val AP (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    from odkd.utils import atomic_write_bytes
    atomic_write_bytes(path, buf.getvalue())


def write_results(exp: ExperimentConfig, rows: list[dict], wall_s: float) -> tuple[str, list]:
    """Write results.csv and results.md, and the plots there is data for; returns the markdown
    table and the paths written, in that order (callers list them, never guess them)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in CSV_COLUMNS})
    files = [os.path.join(exp.out, f) for f in ("results.csv", "results.md")]
    atomic_write_text(files[0], buf.getvalue())
    table = results_markdown(rows, f"odkd experiment `{exp.name}`", wall_s)
    curves = _curves(exp)
    extra = "\n".join(x for x in (differences_markdown(rows), plateau_markdown(curves)) if x)
    atomic_write_text(files[1], table + ("\n" + extra if extra else ""))
    if rows:
        files.append(os.path.join(exp.out, "ablation.png"))
        plot_ablation(rows, files[-1])
    if curves:
        files.append(os.path.join(exp.out, "curves.png"))
        plot_curves(curves, files[-1])
    return table, files
