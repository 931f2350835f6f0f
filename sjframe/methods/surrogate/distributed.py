"""Distributed data-parallel training of the ``surrogate`` method through ``torchrun``.

``torchrun --nproc_per_node N train.py <config.yaml>`` starts N processes; each reads its place
from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), and :func:`sjframe.core.distributed.launch` (in ``train.py``) opens the process
group (``nccl`` on CUDA, ``gloo`` on CPU; ``train.dist_backend`` forces one). Without torchrun (or with one
process) nothing changes: no
process group, one device.

What runs where (``W`` processes, rank ``r``):

* **model**: built identically on every rank (the same seed), optionally converted to
  ``SyncBatchNorm`` (``train.sync_bn``), wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
  (which broadcasts rank 0's weights and averages the gradients), optionally ``torch.compile``-d
  (``train.compile``); the optimiser, the clipping, ``post_step()`` and the evaluation use the bare
  model, so checkpoints hold the same keys as single-process ones;
* **training data**: ``train.batch_size`` is the **global** batch ``B``; rank ``r`` takes
  ``b = B / W`` samples per step from :class:`ShardSampler`, whose epoch permutation ``p`` is the
  single-process engine's (seeded by ``(seed, epoch)``, ``set_epoch`` every epoch), padded by
  repetition to a multiple of ``W`` and dealt round-robin: shard ``r = p[r::W]``. Step ``i`` of
  all ranks together then sees ``p[i B : (i + 1) B]``, exactly the single-process batch ``i``, and the
  averaged per-rank mean gradients ``(1/W) sum_r mean_r = mean`` are its gradient (no BatchNorm, or
  ``sync_bn``; the padding repeats at most ``W - 1`` samples per epoch, and only when ``W`` does not
  divide the training set);
* **evaluation**: every sample of the validation / test set exactly once (shards ``r::W`` of the
  unshuffled set, not padded); the :class:`~sjframe.methods.surrogate.metrics.EvalAccumulator` sums and counts are
  all-reduced before ``compute()``, so accuracies, ``N_s`` and td50 / td90 are those of the whole set;
* **files**: rank 0 alone writes the config, ``metrics.jsonl``, checkpoints and plots; the others
  wait at a barrier after each checkpoint. A checkpoint holds rank 0's RNG state under ``rng`` (so
  a single-process resume works) and every rank's under ``rng_per_rank``; resuming with the same
  ``W`` continues bit for bit;
* **stops**: a non-finite loss on any rank stops every rank at the same step.

Per-rank random streams: ranks ``r > 0`` reseed after the model is built (from ``(seed, r)``), so
dropout masks differ between processes; rank 0 keeps the single-process stream.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from sjframe.core.distributed import DistContext, current_context, rank_seed
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import epoch_generator, rng_state, set_rng_state, set_seed
from sjframe.methods.surrogate import engine
from sjframe.methods.surrogate.config import SurrogateConfig
from sjframe.methods.surrogate.sharding import ShardSampler, per_rank_batch

__all__ = ["DistributedTrainer", "apply_compile", "make_trainer"]


# --------------------------------------------------------------------------------------------- training
def apply_compile(module: nn.Module, cfg: SurrogateConfig) -> nn.Module:
    """``torch.compile(module, backend=train.compile_backend)`` when ``train.compile``, else ``module``.

    The sjframe neurons compile with graph breaks: the fused torch path's ``autograd.Function``
    reads scalar decays with ``.item()``, so the neuron time loop runs eagerly between compiled
    graphs (the linear / conv / BatchNorm layers and the losses' inputs); results equal eager ones.
    """
    if not cfg.train.compile:
        return module
    backends = torch._dynamo.list_backends(exclude_tags=())
    if cfg.train.compile_backend not in backends:
        raise ValueError(f"train.compile_backend {cfg.train.compile_backend!r} unknown; valid: {sorted(backends)}")
    return torch.compile(module, backend=cfg.train.compile_backend)


class DistributedTrainer(engine.Trainer):
    """:class:`~.engine.Trainer` across the processes of an open process group (see the module docstring).

    Args:
        cfg: the resolved config (``train.batch_size`` is the global batch).
        run: the run directory (the same path on every rank; only rank 0 writes), or None.
        ctx: this process's :class:`DistContext` (``ctx.is_distributed`` must be true).
        callbacks: as for :class:`~sjframe.methods.surrogate.engine.Trainer` (called on every rank).
    """

    def __init__(self, cfg: SurrogateConfig, run: RunDir | None, ctx: DistContext,
                 callbacks: list[engine.EpochCallback] | None = None) -> None:
        if not ctx.is_distributed:
            raise ValueError("DistributedTrainer needs an open process group with more than one process")
        self.local_batch = per_rank_batch(cfg.train.batch_size, ctx.world_size)
        if cfg.train.sync_bn and ctx.device.type != "cuda":
            raise ValueError("train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm runs on GPUs only); "
                             "set it false on CPUs (BatchNorm statistics are then per process)")
        if ctx.device.type == "cuda":
            torch.cuda.set_device(ctx.device)
        super().__init__(cfg, run, callbacks, ctx=ctx)
        if ctx.rank > 0:
            set_seed(rank_seed(cfg.seed, ctx.rank))
        if cfg.train.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ddp = nn.parallel.DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=cfg.train.find_unused_parameters,
        )
        self.forward_module = apply_compile(self.ddp, cfg)

    # ------------------------------------------------------------------ data
    def _loader(self, ds: Dataset, train: bool, epoch: int = 0) -> DataLoader:
        from sjframe.data import time_major_collate

        if not train:
            return super()._loader(ds, train, epoch)
        sampler = ShardSampler(ds, self.world_size, self.rank, shuffle=True, seed=self.cfg.seed, pad=True)
        sampler.set_epoch(epoch)
        return DataLoader(ds, batch_size=self.local_batch, sampler=sampler, collate_fn=time_major_collate,
                          generator=epoch_generator(self.cfg.seed, epoch),
                          num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda")

    @torch.no_grad()
    def evaluate(self, ds: Dataset, desc: str = "eval") -> dict[str, Any]:
        """Metrics on the whole ``ds`` (each rank its shard, sums all-reduced), with rank 0's buffers everywhere."""
        for buffer in self.model.buffers():  # BatchNorm running statistics drift apart without sync_bn
            self._broadcast_buffer(buffer)
        return super().evaluate(ds, desc)

    def _broadcast_buffer(self, buffer: torch.Tensor) -> None:
        comm = self.ctx.comm_device()
        if buffer.device == comm:
            dist.broadcast(buffer.data, src=0)
        else:
            tmp = buffer.detach().to(comm).clone()
            dist.broadcast(tmp, src=0)
            buffer.data.copy_(tmp.to(buffer.device))

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, name: str) -> Any:
        """Rank 0 writes (with every rank's RNG state under ``rng_per_rank``); the others wait."""
        if self.run is None:
            return None
        rngs = self.ctx.all_gather_object(rng_state())
        path = None
        if self.ctx.is_main:
            state = self.state()
            state["rng_per_rank"] = rngs
            state["world_size"] = self.world_size
            path = self.run.save_checkpoint(state, name)
        self.ctx.barrier()
        return path

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint on every rank; each rank takes its own RNG state when the process count matches."""
        super().load_state(state)
        per_rank = state.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == self.world_size:
            set_rng_state(per_rank[self.rank])
            return
        if self.rank > 0:
            set_seed(rank_seed(self.cfg.seed, self.rank, self.epoch))
        if self.ctx.is_main:
            written = len(per_rank) if per_rank is not None else 1
            print(f"[sjframe] note: the checkpoint was written by {written} process(es), resumed with "
                  f"{self.world_size}; ranks > 0 start new random streams (the same data order and weights, "
                  "but dropout masks differ from an uninterrupted run)", file=sys.stderr)


def make_trainer(cfg: SurrogateConfig, run: RunDir | None, callbacks: list[engine.EpochCallback] | None = None,
                 ctx: DistContext | None = None) -> engine.Trainer:
    """The trainer for this process (``ctx``; None: :func:`~sjframe.core.distributed.current_context`):
    :class:`DistributedTrainer` in a multi-process group, else the single-process
    :class:`~sjframe.methods.surrogate.engine.Trainer` (with ``train.compile`` applied)."""
    ctx = ctx if ctx is not None else current_context(cfg.device)
    if ctx.is_distributed:
        return DistributedTrainer(cfg, run, ctx, callbacks)
    trainer = engine.Trainer(cfg, run, callbacks, ctx=ctx)
    trainer.forward_module = apply_compile(trainer.model, cfg)
    return trainer
