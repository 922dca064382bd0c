"""One training step and its parts: the supervised objective, the learning rate at a given
iteration, the optimizer, autocast, channels_last and ``torch.compile`` choices, and moving a
batch to the device. ``odkd train`` and ``odkd bench train`` run the same :func:`train_step`.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch

from odkd.config import Config, ConfigError, TrainConfig
from odkd.distill.teachers import run_teachers
from odkd.distill.views import teacher_outputs_from_batch
from odkd.losses import joints_mse, mask_bce


class SupervisedObjective:
    """Ground truth only: target-weighted joints MSE (+ mask BCE when the model has a mask head)."""

    def __init__(self, mask_loss_weight: float = TrainConfig.mask_loss_weight):
        self.mask_loss_weight = mask_loss_weight

    def needed_teachers(self, step: int) -> set:
        return set()

    def __call__(self, out: dict, gt: dict, teacher_out: dict, step: int):
        loss = joints_mse(out["heatmaps"], gt["heatmap"], gt["target_weight"])
        # logged values stay on the device: the loop syncs once per log interval, not per step
        logs = {"loss_gt": loss.detach()}
        if "mask" in out and self.mask_loss_weight > 0:
            lm = mask_bce(out["mask"], gt["mask"], gt["mask_weight"])
            loss = loss + self.mask_loss_weight * lm
            logs["loss_mask"] = lm.detach()
        return loss, logs


def lr_at(cfg: Config, epoch: int, it_global: int) -> float:
    """Multi-step decay by epoch, optional linear warmup by iteration (stateless: resumable)."""
    t = cfg.train
    lr = t.lr * (t.lr_factor ** sum(epoch >= s for s in t.lr_steps))
    if t.warmup_iters and it_global < t.warmup_iters:
        lr *= 0.001 + 0.999 * it_global / t.warmup_iters
    return lr


def fused_supported(device: torch.device) -> bool:
    # torch fuses Adam/AdamW on CPU since 2.4 (1.03x per Lite-HRNet step there, docs/performance.md); pyproject allows older torch, which only fuses on CUDA
    if device.type == "cuda":
        return True
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)


def build_optimizer(cfg: Config, params, device: torch.device, fused: bool | None = None):
    """``train.optimizer`` over ``params``; ``fused`` None: fused where torch supports it."""
    t = cfg.train
    fused = {"fused": True} if (fused_supported(device) if fused is None else fused) else {}
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay, **fused)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay,
                               nesterov=True)
    raise ConfigError(f"train.optimizer: unknown {t.optimizer!r}; choose adam, adamw or sgd")


def autocast_ctx(cfg: Config, device: torch.device):
    if cfg.train.amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if cfg.train.amp not in ("none", ""):
        raise ConfigError(f"train.amp: unknown {cfg.train.amp!r}; choose none or bf16")
    return nullcontext()


def use_channels_last(cfg: Config, device: torch.device) -> bool:
    # CUDA tensor cores want NHWC; so do oneDNN's CPU kernels on AVX-512 machines (1.14x per
    # Lite-HRNet step on the EPYC, docs/performance.md; about even on older AVX2 ones)
    return bool(cfg.train.channels_last) and device.type in ("cuda", "cpu")


def maybe_compile(module, cfg: Config):
    """``torch.compile`` when ``train.compile`` (the module's parameters are shared)."""
    if not cfg.train.compile:
        return module
    return torch.compile(module, mode=None if cfg.train.compile_mode in ("", "default")
                         else cfg.train.compile_mode)


GT_KEYS = ("heatmap", "target_weight", "mask", "mask_weight")
# cached real-teacher targets (odkd.distill.views), present only in such batches
TEACHER_KEYS = tuple(f"{t}_{k}" for t in ("pt", "st")
                     for k in ("heatmap", "weight", "mask", "mask_weight"))


def prepare_batch(batch: dict, device: torch.device, dev_aug=None, channels_last: bool = False
                  ) -> tuple[torch.Tensor, dict]:
    """(images, gt) on ``device`` from a loader batch (CPU samples or decoded canvases)."""
    if dev_aug is not None:
        batch = dev_aug(batch)
        images = batch["image"]
        gt = {k: batch[k] for k in GT_KEYS}
    else:
        images = batch["image"].to(device, non_blocking=True)
        gt = {k: batch[k].to(device, non_blocking=True) for k in GT_KEYS + TEACHER_KEYS
              if k in batch}
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, gt


def train_step(cfg: Config, device: torch.device, fwd, objective, teachers: dict, optimizer,
               images: torch.Tensor, gt: dict, step: int) -> tuple[torch.Tensor, dict]:
    """One optimisation step, the one ``odkd train`` runs and ``odkd bench train`` times.

    Student forward (``fwd``: the model, or its DDP / compiled wrapper), the teachers the
    objective needs at global iteration ``step`` (:func:`odkd.distill.teachers.run_teachers`;
    none for supervised training), the loss, backward and the optimizer step. Returns the
    detached loss and the objective's logs (device tensors: read them once per log interval).
    """
    with autocast_ctx(cfg, device):
        out = fwd(images)
    cached = teacher_outputs_from_batch(gt) if "pt_heatmap" in gt or "st_heatmap" in gt \
        else None
    t_out = run_teachers(teachers, images, objective.needed_teachers(step), cached)
    loss, logs = objective(out, gt, t_out, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(fwd.parameters(), cfg.train.grad_clip)
    optimizer.step()
    return loss.detach(), logs
