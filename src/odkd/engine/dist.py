"""torch.distributed helpers for ``torchrun`` (NCCL on GPU, gloo on CPU). No-ops when single."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device_pref: str = "auto") -> tuple[int, int, torch.device]:
    """Initialise the process group when launched by torchrun; returns (rank, world, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() and device_pref != "cpu"
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    if device_pref == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        else:
            device = torch.device("cpu")
    else:
        device = torch.device(device_pref)
    return rank, world, device


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj) -> list:
    """Gather a picklable object from every rank (list in rank order)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------ synchronised BatchNorm
class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of a global sum is the sum of the gradients.

    Written here because ``torch.distributed.nn.functional.all_reduce`` is deprecated and its
    replacement (functional collectives) does not support autograd on gloo.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


class CpuSyncBatchNorm(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over the whole global batch.

    ``torch.nn.SyncBatchNorm`` refuses CPU tensors (torch 2.x: "expected input tensor to be on
    GPU"), so gloo runs on CPU use this instead. Same parameters and buffers as BatchNorm2d (the
    state dict is unchanged), same maths: biased variance for normalising, unbiased for the
    running estimate, both over the samples of every rank. Outside training, or without a
    process group, it is a plain BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        # Two passes (mean, then centred squares) avoid E[x^2] - E[x]^2 cancellation.
        total = _AllReduceSum.apply(torch.cat([x.sum(dim=(0, 2, 3)), count]))
        n = total[c].detach()
        mean = total[:c] / n
        centred = x - mean.view(1, c, 1, 1)
        var = _AllReduceSum.apply((centred * centred).sum(dim=(0, 2, 3))) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None \
                    else 1.0 / float(self.num_batches_tracked)
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        return y


def convert_sync_batchnorm(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """BatchNorm -> synchronised BatchNorm (torch's on GPU, :class:`CpuSyncBatchNorm` on CPU).

    Parameters and buffers are kept (the same tensors), so checkpoints do not change.
    """
    if device.type != "cpu":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _to_cpu_sync(module)


def _to_cpu_sync(module: torch.nn.Module) -> torch.nn.Module:
    if isinstance(module, torch.nn.BatchNorm2d) and not isinstance(module, CpuSyncBatchNorm):
        new = CpuSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        new.running_mean, new.running_var = module.running_mean, module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = _to_cpu_sync(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
