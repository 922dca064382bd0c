"""Set-up of a training run, collected in a :class:`TrainRun`: config and data checks, the
process group, datasets and loader, model, optimizer, teachers and, with ``resume``, the state
saved in ``last.pt``.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from odkd.config import Config, ConfigError, save_config, upgrade_saved_config
from odkd.data.dataset import build_datasets
from odkd.distill.real import real_teachers_in_use, teacher_view_set
from odkd.engine import dist as odist
from odkd.engine.checkpointing import check_resume_config, csv_truncate
from odkd.engine.loader import build_train_loader
from odkd.engine.step import SupervisedObjective, build_optimizer, maybe_compile, use_channels_last
from odkd.models import build_model
from odkd.models.checkpoint import FOLDED_BN_FORMATS, load_weights, read_checkpoint
from odkd.models.fake_quant import ActivationFakeQuant
from odkd.utils import seed_everything


def _check_data(cfg: Config) -> None:
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        path = getattr(cfg.data, key)
        if not path and key.endswith("_images"):
            continue   # the json's info.image_root (odkd.data.coco.load_coco)
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


@dataclass
class TrainRun:
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


CALIB_BATCHES = 8


def _recalibrate_folded_bn(model, loader, device, dev_aug, main: bool) -> None:
    """A TF.js graph (MoveNet) folded its BatchNorms into the convs, so the loaded BNs are
    identities plus a bias, which train mode would replace by batch statistics (on LSP crops
    only 3% of MoveNet's joints keep their place then: results/movenet_student). Re-expressed
    in the statistics of a few training batches, train mode starts from the loaded function
    (97%). Each rank calibrates on its own batches; DDP then broadcasts rank 0's state."""
    from itertools import islice

    from odkd.engine.step import prepare_batch
    from odkd.models.movenet import recalibrate_bn

    model.to(device)
    n = recalibrate_bn(model, (prepare_batch(b, device, dev_aug)[0]
                               for b in islice(iter(loader), CALIB_BATCHES)))
    if main:
        print(f"[odkd] {n} folded BatchNorms recalibrated on {CALIB_BATCHES} training batches")


def resolve_init(init: str) -> str:
    """``model.init``: a file, or the name of stored weights (``movenet-lightning-tfjs``, or
    ``ssd-mobilenet-v2`` for its MobileNetV2 trunk; set up by ``odkd teachers fetch``) looked
    up in the teacher cache."""
    from odkd.teachers import store

    if init in store.MODELS and (store.MODELS[init].kind == "weights"
                                 or init in store.INIT_MODELS):
        return store.model_path(init)
    return os.path.expanduser(init)


def setup_run(cfg: Config, resume: bool, objective, teachers: dict | None,
              progress: bool) -> TrainRun:
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

    real = real_teachers_in_use(cfg.distill) and hasattr(objective, "set_total_steps")
    train_set, val_set, sets = build_datasets(cfg, train=not real)
    if real:
        # rank 0 labels the views; the others then read the finished cache
        if main:
            train_set = teacher_view_set(cfg, progress=bar_on)
        odist.barrier()
        if not main:
            train_set = teacher_view_set(cfg, progress=False)
        if main:
            print(f"[odkd] train: {train_set.summary}")
    elif main:
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
        fmt = load_weights(model, resolve_init(cfg.model.init),
                           init_missing=("mask_layer.",) if cfg.model.with_mask else ())
        if fmt in FOLDED_BN_FORMATS:   # BatchNorms folded into the convs
            _recalibrate_folded_bn(model, loader, device, dev_aug, main)
        if main:
            print(f"[odkd] initialised from {cfg.model.init} ({fmt})")
    if cfg.train.qat:
        fq = ActivationFakeQuant(model)   # the architecture's declared fp32 layers stay fp32
        if main:
            print(f"[odkd] quantization-aware training: {len(fq.names)} activations rounded "
                  f"to uint8 per tensor")
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
            csv_truncate(os.path.join(cfg.workdir, "log.csv"), start_epoch)
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
    return TrainRun(cfg=cfg, rank=rank, world=world, device=device, bar_on=bar_on,
                plain_progress=progress and main and not bar_on, last_path=last_path,
                best_path=best_path, train_set=train_set, val_set=val_set,
                val_coco=sets["val"], loader=loader, sampler=sampler, dev_aug=dev_aug,
                channels_last=channels_last, model=model, net=net, fwd=fwd,
                optimizer=optimizer, objective=objective, teachers=teachers,
                steps_per_epoch=steps_per_epoch, writer=writer, start_epoch=start_epoch,
                best_ap=best_ap, it_global=it_global)
