"""One run of an experiment: whether a finished run can be reused (its key, or its saved
config read in today's keys), training it (or resuming, or skipping it when done), and
evaluating its best checkpoint on every split. Each finished run leaves ``done.json``.
"""
from __future__ import annotations

import json
import os
import time

from odkd.config import Config, ConfigError
from odkd.utils import atomic_write_text


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


def _finished(job: _Job, splits: dict) -> bool:
    return _done(job.workdir) is not None and all(
        os.path.exists(os.path.join(job.workdir, f"eval_{s}", "summary.json")) for s in splits)
