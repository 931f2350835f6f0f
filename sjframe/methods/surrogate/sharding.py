"""How the ``surrogate`` method shards its data over torchrun's processes (see :mod:`.distributed`).

Training: :class:`ShardSampler` deals the single-process engine's epoch permutation
(:func:`engine_permutation`) round-robin over the ranks, each taking :func:`per_rank_batch` of the
global batch; evaluation: :func:`eval_loader` gives every rank its unpadded shard.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from sjframe.core.distributed import DistContext
from sjframe.core.runtime import epoch_generator

__all__ = ["ShardSampler", "engine_permutation", "eval_loader", "per_rank_batch"]


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Per-process training batch of a global ``batch_size``; it must divide evenly (ValueError otherwise)."""
    if batch_size % world_size:
        raise ValueError(
            f"train.batch_size {batch_size} is the global batch and must be divisible by the number of processes "
            f"{world_size} (each takes batch_size / {world_size}); e.g. {world_size * max(1, batch_size // world_size)}"
        )
    return batch_size // world_size


def engine_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The order in which the single-process engine visits ``n`` training samples in ``epoch``.

    The engine shuffles with ``DataLoader(shuffle=True, generator=<seeded by (seed, epoch)>)``; the
    DataLoader draws its workers' base seed from that generator before the sampler's ``randperm``,
    so the order is reproduced here by running the same kind of loader over the indices themselves.
    """
    if n < 1:
        raise ValueError(f"the training set is empty (n = {n})")
    loader = DataLoader(range(n), batch_size=n, shuffle=True, generator=epoch_generator(seed, epoch))
    return next(iter(loader)).tolist()


class ShardSampler(DistributedSampler):
    """Round-robin shard of a data set for process ``rank`` of ``num_replicas``.

    ``shuffle=True`` (training): the permutation of epoch ``e`` (:meth:`set_epoch`) is the one the
    single-process engine draws (:func:`engine_permutation`), padded by repetition to a multiple of
    ``num_replicas`` so that every rank runs the same number of steps.
    ``shuffle=False, pad=False`` (evaluation): the set in order, every sample exactly once; shard
    lengths differ by at most one.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int = 0,
                 pad: bool = True) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        if shuffle and not pad:
            raise ValueError("ShardSampler: shuffle without padding would give ranks different step counts")
        self.pad = pad
        n = len(dataset)  # type: ignore[arg-type]
        if not pad:
            self.total_size = n
            self.num_samples = len(range(rank, n, num_replicas))

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            order = engine_permutation(n, self.seed, self.epoch)
        else:
            order = list(range(n))
        if self.pad and self.total_size > n:
            order += (order * math.ceil((self.total_size - n) / max(n, 1)))[: self.total_size - n]
        return iter(order[self.rank : self.total_size : self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def eval_loader(ctx: DistContext, ds: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Loader of this rank's unpadded shard of ``ds`` (every sample once over all ranks; in one process the
    whole set in order), ``ceil(batch_size / W)`` per batch."""
    from sjframe.data import time_major_collate

    n = len(ds)  # type: ignore[arg-type]
    if n < ctx.world_size:
        raise ValueError(f"the evaluation set has {n} samples, fewer than the {ctx.world_size} processes; "
                         "evaluate with fewer processes")
    sampler = ShardSampler(ds, ctx.world_size, ctx.rank, shuffle=False, pad=False) if ctx.is_distributed else None
    return DataLoader(ds, batch_size=max(1, math.ceil(batch_size / ctx.world_size)), shuffle=False, sampler=sampler,
                      collate_fn=time_major_collate, num_workers=num_workers, pin_memory=ctx.device.type == "cuda")
