"""The training loop, shared by supervised training and distillation.

One loop, one "objective": ``SupervisedObjective`` (ground truth only) or
``odkd.distill.losses.DistillLoss`` (ground truth + teachers). Both expose
``needed_teachers(step)`` and ``__call__(student_out, gt, teacher_out, step)`` with ``step``
the global training iteration (the distillation schedule counts iterations, not epochs).
Checkpoints are written atomically after every epoch; ``resume=True`` continues from
``last.pt`` exactly: data order and augmentation are functions of (seed, epoch, index).
``last.pt`` is written every ``train.save_every`` epochs and at the end, weights-only
``best.pt`` at each new best val AP; neither is written from a non-finite model.

The parts: :mod:`odkd.engine.setup` (checks, data, model, optimizer, teachers, resumed state),
this module (epochs, evaluation, checkpoints), :mod:`odkd.engine.step` (one optimisation step
and its objective, LR, optimizer), :mod:`odkd.engine.loader` (samplers, loader) and
:mod:`odkd.engine.checkpointing` (what may change on resume, the finite-model check, log.csv).

Speed knobs (docs/performance.md): ``data.device_aug`` (crop, flip, colour jitter and
targets batched on the device, :mod:`odkd.data.device_aug`), ``train.amp=bf16``,
``train.channels_last`` (CUDA and CPU), ``train.compile`` (student and teachers;
``compile_mode: reduce-overhead`` adds CUDA graphs), fused Adam/AdamW (CUDA; CPU from torch 2.4),
teachers with BatchNorm folded into their convs (:mod:`odkd.distill.teachers`). Under
``torchrun`` the model is wrapped in DDP; ``train.batch_size`` is the *global* batch and rank
``r`` trains on the ``r``-th slice of every global batch, so N processes see the same batches as
one process (:class:`odkd.engine.loader.GlobalBatchSampler`); BatchNorm is synchronised
(``train.sync_bn``).
"""
from __future__ import annotations

import math
import os
import time

import torch
from tqdm import tqdm

from odkd.config import Config
from odkd.engine import dist as odist
from odkd.engine import step as _step  # module attribute: tests can watch train_step
from odkd.engine.checkpointing import check_finite_model, csv_append, weights_only
from odkd.engine.evaluate import format_metrics, run_evaluation
from odkd.engine.setup import TrainRun, setup_run
from odkd.errors import NonFiniteError
from odkd.models.checkpoint import read_checkpoint, save_checkpoint
from odkd.utils import atomic_torch_save


def _train_epoch(run: TrainRun, epoch: int) -> tuple[dict, torch.Tensor]:
    """One epoch of :func:`odkd.engine.step.train_step`; returns its log.csv row and the last
    batch's images."""
    cfg, device, epochs = run.cfg, run.device, run.cfg.train.epochs
    run.sampler.set_epoch(epoch)
    run.train_set.set_epoch(epoch)
    run.net.train()
    if cfg.train.freeze_bn:
        for m in run.net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
    t0, n_img, sums = time.time(), 0, {}
    steps = run.steps_per_epoch
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not run.bar_on,
               leave=False, dynamic_ncols=True)
    for i, batch in enumerate(run.loader):
        if i >= steps:
            break
        lr = _step.lr_at(cfg, epoch, run.it_global)
        for g in run.optimizer.param_groups:
            g["lr"] = lr
        images, gt = _step.prepare_batch(batch, device, run.dev_aug, run.channels_last)
        loss, logs = _step.train_step(cfg, device, run.fwd, run.objective, run.teachers,
                                run.optimizer, images, gt, run.it_global)
        run.it_global += 1
        n_img += images.shape[0]
        logs["loss"] = loss
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + (v.float() if torch.is_tensor(v) else v)
        # Reading a CUDA value back stalls the queue, so losses are summed on the device and
        # read (and checked) once per log interval; a NaN is caught at most log_every late.
        if (i + 1) % max(1, cfg.train.log_every) == 0 or i + 1 == steps:
            mean_loss = float(sums["loss"]) / (i + 1)
            if not math.isfinite(mean_loss):
                raise NonFiniteError(
                    f"non-finite loss in epoch {epoch + 1} by iter {i + 1} ("
                    + ", ".join(f"{k}={float(v):.4g}" for k, v in logs.items())
                    + f"): training diverged; lower train.lr (now {cfg.train.lr:g}) or set "
                    "train.grad_clip")
            bar.set_postfix(loss=f"{mean_loss:.3e}", lr=f"{lr:.1e}")
            if run.plain_progress and i + 1 < steps:  # the epoch line follows the last one
                print(f"[odkd] epoch {epoch + 1}/{epochs} iter {i + 1}/{steps} "
                      f"loss {mean_loss:.3e} lr {lr:.1e}", flush=True)
        bar.update(1)
        if run.writer is not None and run.it_global % max(1, cfg.train.log_every) == 0:
            for k, v in logs.items():
                run.writer.add_scalar(f"train/{k}", float(v), run.it_global)
            run.writer.add_scalar("train/lr", lr, run.it_global)
    bar.close()
    n_steps = max(1, min(steps, len(run.loader)))
    row = {"epoch": epoch + 1, "step": run.it_global, "lr": _step.lr_at(cfg, epoch, run.it_global),
           **{k: float(v) / n_steps for k, v in sums.items()},
           "img_s": n_img * run.world / max(1e-9, time.time() - t0)}
    return row, images


def _evaluate_and_checkpoint(run: TrainRun, epoch: int, row: dict, images: torch.Tensor,
                             final_eval: bool) -> None:
    """After an epoch: refuse a non-finite model, evaluate when due, write checkpoints/logs."""
    cfg, epochs = run.cfg, run.cfg.train.epochs
    check_finite_model(run.model, images[:4], cfg, run.device, epoch)
    # final_eval=False: the caller evaluates the result itself (odkd experiment)
    do_eval = (cfg.train.eval_every and (epoch + 1) % cfg.train.eval_every == 0) \
        or (final_eval and epoch + 1 == epochs)
    if do_eval:
        # the val set's codec: validation decodes with the object that encodes its targets
        run.metrics = run_evaluation(cfg, run.model, run.val_coco, run.val_set.records,
                                     run.device, progress=run.bar_on, desc=f"eval {epoch + 1}",
                                     codec=run.val_set.codec)
        row.update({f"val_{k}": v for k, v in run.metrics.items()})
        if run.writer is not None:
            for k, v in run.metrics.items():
                run.writer.add_scalar(f"val/{k}", v, epoch + 1)
    if run.main:
        improved = do_eval and run.metrics["AP"] > run.best_ap
        if improved:
            run.best_ap = run.metrics["AP"]
        extra = {"epoch": epoch + 1, "it_global": run.it_global, "best_ap": run.best_ap,
                 "optimizer": run.optimizer.state_dict(), "config": cfg.to_dict(),
                 "metrics": dict(run.metrics)}
        every = cfg.train.save_every  # 0: only at the end
        if (every and (epoch + 1) % every == 0) or epoch + 1 == epochs:
            save_checkpoint(run.last_path, run.model, extra)
        if improved:
            save_checkpoint(run.best_path, run.model, weights_only(extra))
        csv_append(os.path.join(cfg.workdir, "log.csv"), row)
        msg = f"[odkd] epoch {epoch + 1}/{epochs} loss {row['loss']:.3e} " \
              f"({row['img_s']:.0f} img/s)"
        if do_eval:
            msg += f" val AP {run.metrics['AP']:.4f} (best {run.best_ap:.4f})"
        print(msg, flush=True)


def train(cfg: Config, resume: bool = False, objective=None, teachers: dict | None = None,
          progress: bool = True, final_eval: bool = True) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns {"best_ap", "last", "best", "metrics"}.

    ``objective`` defaults to :class:`~odkd.engine.step.SupervisedObjective`; distillation
    passes a DistillLoss and the frozen ``teachers`` ({"pt": ..., "st": ...}). Set-up
    (:func:`~odkd.engine.setup.setup_run`), then per epoch :func:`_train_epoch` (a loop of
    :func:`~odkd.engine.step.train_step`) and :func:`_evaluate_and_checkpoint`.
    """
    run = setup_run(cfg, resume, objective, teachers, progress)
    for epoch in range(run.start_epoch, cfg.train.epochs):
        row, images = _train_epoch(run, epoch)
        _evaluate_and_checkpoint(run, epoch, row, images, final_eval)
        odist.barrier()
    if run.writer is not None:
        run.writer.close()
    if run.main and not os.path.exists(run.best_path) and os.path.exists(run.last_path):
        # Every run leaves a best.pt, even one whose evaluation never ran.
        atomic_torch_save(weights_only(read_checkpoint(run.last_path)), run.best_path)
    if run.main and run.metrics:
        print(format_metrics(run.metrics))
    best_ap = odist.broadcast_object(run.best_ap)  # only rank 0 tracks it; every rank returns it
    return {"best_ap": best_ap, "last": run.last_path, "best": run.best_path,
            "metrics": run.metrics}
