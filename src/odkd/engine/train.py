"""The training loop, shared by supervised training and distillation.

One loop, one "objective": ``SupervisedObjective`` (ground truth only) or
``odkd.distill.losses.DistillLoss`` (ground truth + teachers). Both expose
``needed_teachers(step)`` and ``__call__(student_out, gt, teacher_out, step)`` with ``step``
the global training iteration (the distillation schedule counts iterations, not epochs).
Checkpoints are written atomically after every epoch; ``resume=True`` continues from
``last.pt`` exactly: data order and augmentation are functions of (seed, epoch, index).
``last.pt`` is written every ``train.save_every`` epochs and at the end, weights-only
``best.pt`` at each new best val AP; neither is written from a non-finite model.

Speed knobs (see README, performance): ``data.device_aug`` (crop, flip, colour jitter and
targets batched on the device, :mod:`odkd.data.device_aug`), ``train.amp=bf16``,
``train.channels_last`` (CUDA and CPU), ``train.compile`` (student and teachers;
``compile_mode: reduce-overhead`` adds CUDA graphs), fused Adam/AdamW (CUDA; CPU from torch 2.4),
teachers with BatchNorm folded into their convs (:mod:`odkd.distill.teachers`). Under ``torchrun`` the model is
wrapped in DDP; ``train.batch_size`` is the *global* batch and rank ``r`` trains on the ``r``-th
slice of every global batch, so N processes see the same batches as one process
(:class:`GlobalBatchSampler`); BatchNorm is synchronised (``train.sync_bn``).
"""
from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm

from odkd.config import Config, ConfigError, TrainConfig, save_config, upgrade_saved_config
from odkd.data.dataset import build_datasets
from odkd.distill.teachers import run_teachers
from odkd.engine import dist as odist
from odkd.engine.evaluate import format_metrics, run_evaluation
from odkd.losses import joints_mse, mask_bce
from odkd.models import build_model
from odkd.errors import NonFiniteError
from odkd.models.checkpoint import load_weights, read_checkpoint, save_checkpoint
from odkd.utils import atomic_torch_save, atomic_write_text, seed_everything


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


def _fused_supported(device: torch.device) -> bool:
    # torch fuses Adam/AdamW on CPU since 2.4 (1.03x per Lite-HRNet step there, README "CPU
    # speed"); pyproject allows older torch, which only fuses on CUDA
    if device.type == "cuda":
        return True
    major, minor = (int(v) for v in torch.__version__.split(".")[:2])
    return device.type == "cpu" and (major, minor) >= (2, 4)


def build_optimizer(cfg: Config, params, device: torch.device, fused: bool | None = None):
    """``train.optimizer`` over ``params``; ``fused`` None: fused where torch supports it."""
    t = cfg.train
    fused = {"fused": True} if (_fused_supported(device) if fused is None else fused) else {}
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


class EpochSampler(torch.utils.data.Sampler):
    """Shuffled order that is a pure function of (seed, epoch): makes resume exact."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1000003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Rank ``rank``'s share of the (seed, epoch) permutation of :class:`EpochSampler`.

    The permutation is cut into global batches of ``per_rank * world`` samples (an incomplete
    last one is dropped) and rank ``r`` gets slice ``[r * per_rank, (r + 1) * per_rank)`` of
    each, so the union of the ranks' step-``i`` batches is exactly the single-process batch
    ``i`` (torch's DistributedSampler interleaves ranks instead, which changes the batches).
    """

    def __init__(self, n: int, seed: int, per_rank: int, rank: int, world: int):
        self.base = EpochSampler(n, seed)
        self.per_rank, self.rank, self.world = per_rank, rank, world
        self.num_batches = n // (per_rank * world)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self):
        order = list(self.base)
        g = self.per_rank * self.world
        for b in range(self.num_batches):
            start = b * g + self.rank * self.per_rank
            yield from order[start:start + self.per_rank]

    def __len__(self) -> int:
        return self.num_batches * self.per_rank


def use_channels_last(cfg: Config, device: torch.device) -> bool:
    # CUDA tensor cores want NHWC; so do oneDNN's CPU kernels on AVX-512 machines (1.14x per
    # Lite-HRNet step on the EPYC, README "CPU speed"; about even on older AVX2 ones)
    return bool(cfg.train.channels_last) and device.type in ("cuda", "cpu")


def maybe_compile(module, cfg: Config):
    """``torch.compile`` when ``train.compile`` (the module's parameters are shared)."""
    if not cfg.train.compile:
        return module
    return torch.compile(module, mode=None if cfg.train.compile_mode in ("", "default")
                         else cfg.train.compile_mode)


def build_train_loader(cfg: Config, train_set, rank: int, world: int, device: torch.device):
    """(loader, sampler, device_aug or None) for ``train_set`` (a training TopDownDataset)."""
    if cfg.train.batch_size % world:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is the global batch and "
                          f"must be divisible by the number of processes ({world})")
    per_rank_bs = cfg.train.batch_size // world
    if world > 1:
        if len(train_set) < cfg.train.batch_size:
            raise ConfigError(f"{cfg.data.train_ann}: {len(train_set)} training persons, fewer "
                              f"than one global batch (train.batch_size "
                              f"{cfg.train.batch_size}) for {world} processes")
        sampler = GlobalBatchSampler(len(train_set), cfg.train.seed, per_rank_bs, rank, world)
    else:
        sampler = EpochSampler(len(train_set), cfg.train.seed)
    dataset, collate, dev_aug = train_set, None, None
    if cfg.data.device_aug:
        from odkd.data.device_aug import DecodedDataset, DeviceAugment, collate_decoded

        dataset = DecodedDataset(train_set, cfg.data.device_max_side)
        collate = collate_decoded
        dev_aug = DeviceAugment.for_dataset(dataset, device)
    loader = DataLoader(dataset, batch_size=per_rank_bs, sampler=sampler,
                        num_workers=cfg.data.workers, drop_last=len(train_set) >= per_rank_bs,
                        pin_memory=device.type == "cuda", collate_fn=collate,
                        # not persistent: workers must see set_epoch() of each new epoch
                        persistent_workers=False)
    return loader, sampler, dev_aug


GT_KEYS = ("heatmap", "target_weight", "mask", "mask_weight")


def prepare_batch(batch: dict, device: torch.device, dev_aug=None, channels_last: bool = False
                  ) -> tuple[torch.Tensor, dict]:
    """(images, gt) on ``device`` from a loader batch (CPU samples or decoded canvases)."""
    if dev_aug is not None:
        batch = dev_aug(batch)
        images = batch["image"]
        gt = {k: batch[k] for k in GT_KEYS}
    else:
        images = batch["image"].to(device, non_blocking=True)
        gt = {k: batch[k].to(device, non_blocking=True) for k in GT_KEYS}
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, gt


def _check_data(cfg: Config) -> None:
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        path = getattr(cfg.data, key)
        if not path:
            raise ConfigError(f"data.{key} is empty: set it in the config or as data.{key}=PATH")
        if not os.path.exists(path):
            # the shipped demo configs point at data that `make demo` generates
            hint = ("generate it with `make demo` (or `odkd synth --out demo_out/data ...`), or "
                    if "demo_out" in path else "")
            raise ConfigError(f"data.{key}: {path} does not exist; {hint}set data.train_ann, "
                              "data.train_images, data.val_ann, data.val_images to your data")


def _check_train_config(cfg: Config) -> None:
    """Values that would otherwise train nothing, or silently something else."""
    t = cfg.train
    if t.epochs < 1:
        raise ConfigError(f"train.epochs: must be at least 1, got {t.epochs}")
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size: must be at least 1, got {t.batch_size}")
    if not (math.isfinite(t.lr) and t.lr > 0):
        raise ConfigError(f"train.lr: must be a positive finite number, got {t.lr}")
    for key in ("max_iters_per_epoch", "eval_every", "save_every", "log_every", "warmup_iters",
                "threads"):
        if getattr(t, key) < 0:
            raise ConfigError(f"train.{key}: must be 0 or more, got {getattr(t, key)}")


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


def _finite_model_check(model, images: torch.Tensor, cfg: Config, device: torch.device,
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


def _weights_only(extra: dict) -> dict:
    # best.pt is for evaluation and deployment; the optimizer state (twice the weights with
    # Adam) lives only in last.pt, the one that --resume reads
    return {k: v for k, v in extra.items() if k != "optimizer"}


def _csv_truncate(path: str, epoch: int) -> None:
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


def _csv_append(path: str, row: dict) -> None:
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
    t_out = run_teachers(teachers, images, objective.needed_teachers(step))
    loss, logs = objective(out, gt, t_out, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(fwd.parameters(), cfg.train.grad_clip)
    optimizer.step()
    return loss.detach(), logs


@dataclass
class _Run:
    """Everything one training run holds between set-up, epochs and checkpoints."""
    cfg: Config
    rank: int
    world: int
    device: torch.device
    bar_on: bool
    plain_progress: bool
    last_path: str
    best_path: str
    train_set: object
    val_set: object
    val_coco: object
    loader: object
    sampler: object
    dev_aug: object
    channels_last: bool
    model: torch.nn.Module
    net: torch.nn.Module
    fwd: object
    optimizer: torch.optim.Optimizer
    objective: object
    teachers: dict
    steps_per_epoch: int
    writer: object = None
    start_epoch: int = 0
    best_ap: float = -1.0
    it_global: int = 0
    metrics: dict = field(default_factory=dict)

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup(cfg: Config, resume: bool, objective, teachers: dict | None, progress: bool) -> _Run:
    """Checks, data, model, optimizer, teachers and (with ``resume``) the saved state."""
    _check_train_config(cfg)
    _check_data(cfg)
    rank, world, device = odist.init_distributed(cfg.train.device)
    main = rank == 0
    # bars only on a terminal: a redirected log would fill with bar redraws, so it gets a
    # plain line per log interval instead
    bar_on = progress and main and sys.stderr.isatty()
    if cfg.train.threads and device.type == "cpu":
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed + rank)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    os.makedirs(cfg.workdir, exist_ok=True)
    last_path = os.path.join(cfg.workdir, "last.pt")
    best_path = os.path.join(cfg.workdir, "best.pt")
    ck = None
    if resume:
        # checked before anything in the workdir (config.yaml) is overwritten
        if not os.path.exists(last_path):
            raise ConfigError(f"--resume: no checkpoint at {last_path}")
        ck = read_checkpoint(last_path)
        # a checkpoint from before distill.method is compared in today's keys
        saved = upgrade_saved_config(ck.get("config") or {},
                                     distilled=hasattr(objective, "set_total_steps"))
        check_resume_config(saved, cfg, ck["epoch"], last_path)
    if main:
        save_config(cfg, os.path.join(cfg.workdir, "config.yaml"))

    train_set, val_set, sets = build_datasets(cfg)
    if main:
        print(f"[odkd] train: {sets['train'].summary()}")
        print(f"[odkd] val:   {val_set.summary}")
    if len(train_set) == 0:
        raise ConfigError(f"{cfg.data.train_ann}: no usable training persons")
    loader, sampler, dev_aug = build_train_loader(cfg, train_set, rank, world, device)
    channels_last = use_channels_last(cfg, device)

    model = build_model(cfg.model.name, cfg.model.num_joints, cfg.model.with_mask)
    if main:
        n_params = sum(p.numel() for p in model.parameters())
        threads = torch.get_num_threads() if device.type == "cpu" else 0
        print(f"[odkd] model: {cfg.model.name}{' + mask head' if cfg.model.with_mask else ''}, "
              f"{n_params / 1e6:.2f} M parameters, input {cfg.data.input_size[0]}x"
              f"{cfg.data.input_size[1]}; device {device}"
              + (f" ({threads} threads)" if threads else "")
              + (f" x {world} processes" if world > 1 else "")
              + f"; batch {cfg.train.batch_size}, {cfg.train.epochs} epochs")
    if cfg.model.init and not resume:
        # a fresh mask head may sit on top of a keypoint-only checkpoint (e.g. official W48)
        fmt = load_weights(model, cfg.model.init,
                           init_missing=("mask_layer.",) if cfg.model.with_mask else ())
        if main:
            print(f"[odkd] initialised from {cfg.model.init} ({fmt})")
    model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if world > 1 and cfg.train.sync_bn:
        # Same parameter and buffer tensors, so the optimizer and checkpoints are unaffected.
        model = odist.convert_sync_batchnorm(model, device)
    optimizer = build_optimizer(cfg, model.parameters(), device)
    objective = objective or SupervisedObjective(cfg.train.mask_loss_weight)
    teachers = dict(teachers or {})
    for name, t in teachers.items():
        if t is not None:
            if channels_last:
                t.to(memory_format=torch.channels_last)
            teachers[name] = maybe_compile(t, cfg)

    start_epoch, best_ap, it_global = 0, -1.0, 0
    if ck is not None:
        load_weights(model, ck, verbose=False)
        optimizer.load_state_dict(ck["optimizer"])
        start_epoch, best_ap, it_global = ck["epoch"], ck["best_ap"], ck["it_global"]
        if main:
            _csv_truncate(os.path.join(cfg.workdir, "log.csv"), start_epoch)
            print(f"[odkd] resumed from {last_path} at epoch {start_epoch}"
                  + (" (all epochs done)" if start_epoch == cfg.train.epochs else ""))
        del ck  # the optimizer state can be as large as the model
    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    fwd = maybe_compile(net, cfg)  # training forward; evaluation runs the plain ``model``

    writer = None
    if main:
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(os.path.join(cfg.workdir, "tb"))
        except ImportError:  # tensorboard is optional at run time
            writer = None
    steps_per_epoch = len(loader)
    if cfg.train.max_iters_per_epoch:
        steps_per_epoch = min(steps_per_epoch, cfg.train.max_iters_per_epoch)
    if hasattr(objective, "set_total_steps"):
        # the distillation schedule is placed on iterations, known only now
        objective.set_total_steps(max(1, cfg.train.epochs * steps_per_epoch))
        if main:
            print(f"[odkd] distill: {objective.describe(steps_per_epoch)}")
    return _Run(cfg=cfg, rank=rank, world=world, device=device, bar_on=bar_on,
                plain_progress=progress and main and not bar_on, last_path=last_path,
                best_path=best_path, train_set=train_set, val_set=val_set,
                val_coco=sets["val"], loader=loader, sampler=sampler, dev_aug=dev_aug,
                channels_last=channels_last, model=model, net=net, fwd=fwd,
                optimizer=optimizer, objective=objective, teachers=teachers,
                steps_per_epoch=steps_per_epoch, writer=writer, start_epoch=start_epoch,
                best_ap=best_ap, it_global=it_global)


def _train_epoch(run: _Run, epoch: int) -> tuple[dict, torch.Tensor]:
    """One epoch of :func:`train_step`; returns its log.csv row and the last batch's images."""
    cfg, device, epochs = run.cfg, run.device, run.cfg.train.epochs
    run.sampler.set_epoch(epoch)
    run.train_set.set_epoch(epoch)
    run.net.train()
    t0, n_img, sums = time.time(), 0, {}
    steps = run.steps_per_epoch
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{epochs}", disable=not run.bar_on,
               leave=False, dynamic_ncols=True)
    for i, batch in enumerate(run.loader):
        if i >= steps:
            break
        lr = lr_at(cfg, epoch, run.it_global)
        for g in run.optimizer.param_groups:
            g["lr"] = lr
        images, gt = prepare_batch(batch, device, run.dev_aug, run.channels_last)
        loss, logs = train_step(cfg, device, run.fwd, run.objective, run.teachers,
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
    row = {"epoch": epoch + 1, "step": run.it_global, "lr": lr_at(cfg, epoch, run.it_global),
           **{k: float(v) / n_steps for k, v in sums.items()},
           "img_s": n_img * run.world / max(1e-9, time.time() - t0)}
    return row, images


def _evaluate_and_checkpoint(run: _Run, epoch: int, row: dict, images: torch.Tensor,
                             final_eval: bool) -> None:
    """After an epoch: refuse a non-finite model, evaluate when due, write checkpoints/logs."""
    cfg, epochs = run.cfg, run.cfg.train.epochs
    _finite_model_check(run.model, images[:4], cfg, run.device, epoch)
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
            save_checkpoint(run.best_path, run.model, _weights_only(extra))
        _csv_append(os.path.join(cfg.workdir, "log.csv"), row)
        msg = f"[odkd] epoch {epoch + 1}/{epochs} loss {row['loss']:.3e} " \
              f"({row['img_s']:.0f} img/s)"
        if do_eval:
            msg += f" val AP {run.metrics['AP']:.4f} (best {run.best_ap:.4f})"
        print(msg, flush=True)


def train(cfg: Config, resume: bool = False, objective=None, teachers: dict | None = None,
          progress: bool = True, final_eval: bool = True) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns {"best_ap", "last", "best", "metrics"}.

    ``objective`` defaults to :class:`SupervisedObjective`; distillation passes a DistillLoss and
    the frozen ``teachers`` ({"pt": ..., "st": ...}). Set-up (:func:`_setup`), then per epoch
    :func:`_train_epoch` (a loop of :func:`train_step`) and :func:`_evaluate_and_checkpoint`.
    """
    run = _setup(cfg, resume, objective, teachers, progress)
    for epoch in range(run.start_epoch, cfg.train.epochs):
        row, images = _train_epoch(run, epoch)
        _evaluate_and_checkpoint(run, epoch, row, images, final_eval)
        odist.barrier()
    if run.writer is not None:
        run.writer.close()
    if run.main and not os.path.exists(run.best_path) and os.path.exists(run.last_path):
        # Every run leaves a best.pt, even one whose evaluation never ran.
        atomic_torch_save(_weights_only(read_checkpoint(run.last_path)), run.best_path)
    if run.main and run.metrics:
        print(format_metrics(run.metrics))
    best_ap = odist.broadcast_object(run.best_ap)  # only rank 0 tracks it; every rank returns it
    return {"best_ap": best_ap, "last": run.last_path, "best": run.best_path,
            "metrics": run.metrics}
