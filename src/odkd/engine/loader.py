"""The training loader: a shuffled order that is a pure function of (seed, epoch), so that
resume is exact, and each rank's share of it under DDP; batches of CPU samples or, with
``data.device_aug``, of decoded canvases that :mod:`odkd.data.device_aug` augments on the device.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from odkd.config import Config, ConfigError


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
