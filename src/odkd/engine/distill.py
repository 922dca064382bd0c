"""Distillation run: frozen teachers + DistillLoss, on the shared training loop."""
from __future__ import annotations

from odkd.config import Config
from odkd.engine import dist as odist
from odkd.engine.train import train


def distill(cfg: Config, resume: bool = False, progress: bool = True,
            final_eval: bool = True) -> dict:
    from odkd.distill.losses import DistillLoss
    from odkd.distill.teachers import load_teachers

    _, _, device = odist.init_distributed(cfg.train.device)
    # the schedule counts iterations: train() gives the total once the data is loaded, and
    # prints the schedule line then
    objective = DistillLoss(cfg.distill, mask_loss_weight=cfg.train.mask_loss_weight)
    teachers = load_teachers(cfg.distill, device)
    if odist.is_main():
        d = cfg.distill
        for name, t in teachers.items():
            if t is not None:
                ck = getattr(d, name).checkpoint
                print(f"[odkd]   {name.upper()}: {getattr(t.model, 'odkd_name', '?')} from {ck}")
    return train(cfg, resume=resume, objective=objective, teachers=teachers, progress=progress,
                 final_eval=final_eval)
