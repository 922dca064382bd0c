"""What an experiment trains: its config (``ExperimentConfig``, ``SynthSpec``), the methods
(:data:`METHODS`, named after the paper's baselines), the data it generates, and the list of
runs (:class:`_Job`: two teachers, then methods x students x seeds) with each run's config.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

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
    # a 2-core CPU two 1-thread runs do more work per second than one 2-thread run (docs/performance.md); a run starts once the teachers it needs are done.
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
