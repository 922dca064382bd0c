"""What a training run keeps in its workdir and checks when it reads it back: the config keys a
``--resume`` may change (:data:`RESUME_SAFE_KEYS`), the finite-model check before every save,
the weights-only content of ``best.pt``, and ``log.csv`` (one row per epoch, cut back on resume).
"""
from __future__ import annotations

import csv
import io
import os

import torch

from odkd.config import Config, ConfigError
from odkd.engine.step import autocast_ctx
from odkd.errors import NonFiniteError
from odkd.utils import atomic_write_text


# Keys that may change on --resume: they change how the run is executed, logged or evaluated,
# not the training it computes. train.epochs may change too, but not below the finished epoch.
RESUME_SAFE_KEYS = ("workdir", "train.eval_every", "train.log_every", "train.save_every",
                    "train.threads", "train.device", "train.compile", "train.compile_mode",
                    "train.channels_last", "data.workers", "data.cache_images",
                    "eval.batch_size")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_changes(saved: dict, cfg: Config, sections: tuple = ()) -> dict:
    """``{dotted key: (saved value, cfg value)}`` for each key of ``cfg`` (only those of
    ``sections`` when given) whose value differs from the saved config dict ``saved``."""
    old = _flatten(saved)
    # a key added to odkd after the config was saved had its default then
    default = _flatten(Config().to_dict())
    out = {}
    for k, v in _flatten(cfg.to_dict()).items():
        if sections and k.split(".", 1)[0] not in sections:
            continue
        was = old.get(k, default.get(k))
        if was != v:
            out[k] = (was, v)
    return out


def check_resume_config(saved: dict, cfg: Config, finished_epoch: int, where: str) -> None:
    """Refuse to resume the run in checkpoint ``where`` (config ``saved``, ``finished_epoch``
    epochs done) with ``cfg`` when they differ in any key outside :data:`RESUME_SAFE_KEYS`."""
    changed = [f"{k} {was!r} -> {v!r}" for k, (was, v) in config_changes(saved, cfg).items()
               if k not in RESUME_SAFE_KEYS and k != "train.epochs"]
    allowed = (f"only train.epochs (at least {finished_epoch}, the finished epochs) and "
               f"{', '.join(RESUME_SAFE_KEYS)} may change on --resume")
    if changed:
        raise ConfigError(f"--resume: {where} was trained with a different config: "
                          f"{'; '.join(changed)}; {allowed}. Restore them or use a new workdir")
    if cfg.train.epochs < finished_epoch:
        raise ConfigError(f"--resume: {where} has finished {finished_epoch} epochs, more than "
                          f"train.epochs={cfg.train.epochs}; {allowed}")


def check_finite_model(model, images: torch.Tensor, cfg: Config, device: torch.device,
                        epoch: int) -> None:
    """Raise NonFiniteError unless ``model`` (about to be saved) is usable: finite weights,
    and finite outputs on ``images`` in eval mode. Weights can stay finite yet be so large
    (train.lr far too high) that the next forward overflows, so the weights alone are not
    enough; one forward per epoch is cheap next to the epoch."""
    bad = [k for k, v in model.state_dict().items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if not bad:
        was_training = model.training
        model.eval()
        with torch.no_grad(), autocast_ctx(cfg, device):
            out = model(images)
        model.train(was_training)
        bad = [f"output {k}" for k, v in out.items() if not bool(torch.isfinite(v).all())]
    if bad:
        raise NonFiniteError(
            f"training diverged in epoch {epoch + 1}: the model is not finite "
            f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}), so it was not saved; "
            f"lower train.lr (now {cfg.train.lr:g}) or set train.grad_clip")


def weights_only(extra: dict) -> dict:
    # best.pt is for evaluation and deployment; the optimizer state (twice the weights with
    # Adam) lives only in last.pt, the one that --resume reads
    return {k: v for k, v in extra.items() if k != "optimizer"}


def csv_truncate(path: str, epoch: int) -> None:
    """Drop log.csv rows after ``epoch``: a resumed run repeats the epochs it had not saved."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(float(r.get("epoch") or 0)) <= epoch]
    if len(keep) == len(rows):
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    w.writeheader()
    w.writerows(keep)
    atomic_write_text(path, buf.getvalue())


def csv_append(path: str, row: dict) -> None:
    """Append an epoch row to log.csv; columns are the union over rows (eval epochs add
    metrics), so the file is rewritten atomically rather than appended to."""
    rows = list(csv.DictReader(open(path, newline=""))) if os.path.exists(path) else []
    rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
