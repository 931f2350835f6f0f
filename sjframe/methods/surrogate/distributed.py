"""Distributed data-parallel training of the ``surrogate`` method through ``torchrun``.

``torchrun --nproc_per_node N train.py <config.yaml>`` starts N processes; each reads its place
from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), and :func:`launch` opens the process group (``nccl`` on CUDA, ``gloo`` on CPU;
``train.dist_backend`` forces one). Without torchrun (or with one process) nothing changes: no
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

import math
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from sjframe.core.cli_errors import UserError
from sjframe.core.rundir import RunDir
from sjframe.methods.surrogate import engine
from sjframe.methods.surrogate.config import SurrogateConfig
from sjframe.methods.surrogate.metrics import EvalAccumulator

__all__ = [
    "BACKENDS",
    "DistContext",
    "DistributedTrainer",
    "ShardSampler",
    "apply_compile",
    "check_launch",
    "create_run_dir",
    "current_context",
    "engine_permutation",
    "env_world",
    "evaluate_run",
    "interleave",
    "launch",
    "make_trainer",
    "per_rank_batch",
    "rank_device",
    "rank_seed",
    "resolve_backend",
]

BACKENDS = ("auto", "nccl", "gloo")


# --------------------------------------------------------------------------------------------- environment
def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def env_world() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment; ``(0, 1, 0)`` without torchrun."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}")
    return rank, world, local


def resolve_backend(backend: str, device: torch.device) -> str:
    """The process-group backend: ``auto`` -> ``nccl`` on CUDA, ``gloo`` on CPU; ``nccl`` needs CUDA."""
    if backend not in BACKENDS:
        raise ValueError(f"train.dist_backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("train.dist_backend nccl needs CUDA devices; use gloo (or auto) to train on CPUs")
    if not dist.is_backend_available(backend):
        raise ValueError(f"the {backend} backend is not available in this PyTorch build")
    return backend


def rank_device(spec: str, local_rank: int, world_size: int) -> torch.device:
    """The device of one process: ``cuda:LOCAL_RANK`` for ``auto`` / ``cuda`` with CUDA, else the CPU.

    ``cuda:N`` would put every process on one GPU, so it is refused under torchrun (``world_size > 1``).
    """
    if world_size == 1:
        return engine.select_device(spec)
    if spec.startswith("cuda:"):
        raise ValueError(f"device {spec!r} pins every process to one GPU; under torchrun use device: cuda or auto "
                         "(process k takes cuda:LOCAL_RANK)")
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but CUDA is not available; use device: cpu or auto")
    if local_rank >= torch.cuda.device_count():
        raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) visible; "
                           "give --nproc_per_node at most the number of GPUs per node")
    return torch.device("cuda", local_rank)


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """A seed of its own for process ``rank`` (and epoch), derived from the run's ``seed``."""
    return int(np.random.SeedSequence([seed % 2**63, rank, epoch]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """Per-process training batch of a global ``batch_size``; it must divide evenly (ValueError otherwise)."""
    if batch_size % world_size:
        raise ValueError(
            f"train.batch_size {batch_size} is the global batch and must be divisible by the number of processes "
            f"{world_size} (each takes batch_size / {world_size}); e.g. {world_size * max(1, batch_size // world_size)}"
        )
    return batch_size // world_size


def interleave(parts: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    """Undo round-robin sharding: ``parts[r]`` holds items ``r, r + W, r + 2W, ...`` along ``dim``.

    Returns the items in their original order ``[sum of lengths, ...]``; the lengths must be those of
    a round-robin split (the first ranks at most one item longer).
    """
    if not parts:
        raise ValueError("interleave needs at least one part")
    W = len(parts)
    total = sum(p.shape[dim] for p in parts)
    for r, p in enumerate(parts):
        if p.shape[dim] != len(range(r, total, W)):
            raise ValueError(f"part {r} has {p.shape[dim]} items along dim {dim}; a round-robin split of {total} "
                             f"over {W} gives it {len(range(r, total, W))}")
    shape = list(parts[0].shape)
    shape[dim] = total
    out = parts[0].new_empty(shape)
    for r, p in enumerate(parts):
        out.index_copy_(dim, torch.arange(r, total, W, device=out.device), p)
    return out


# --------------------------------------------------------------------------------------------- sampler
def engine_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The order in which the single-process engine visits ``n`` training samples in ``epoch``.

    The engine shuffles with ``DataLoader(shuffle=True, generator=<seeded by (seed, epoch)>)``; the
    DataLoader draws its workers' base seed from that generator before the sampler's ``randperm``,
    so the order is reproduced here by running the same kind of loader over the indices themselves.
    """
    if n < 1:
        raise ValueError(f"the training set is empty (n = {n})")
    loader = DataLoader(range(n), batch_size=n, shuffle=True, generator=engine._epoch_generator(seed, epoch))
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


# --------------------------------------------------------------------------------------------- context
@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its node, its ``device``.

    ``backend`` is None when there is no process group (a single process); every collective below is
    then a no-op, so the same code runs with and without torchrun.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1

    # ------------------------------------------------------------------ collectives
    def barrier(self) -> None:
        if self.is_distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.is_distributed:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None on the others."""
        if not self.is_distributed:
            return [obj]
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def all_true(self, flag: bool) -> bool:
        """Logical AND of ``flag`` over the ranks."""
        if not self.is_distributed:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ data and metrics
    def eval_loader(self, ds: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
        """Loader of this rank's unpadded shard (every sample once over all ranks), ``ceil(batch_size / W)`` per batch."""
        from sjframe.data import time_major_collate

        n = len(ds)  # type: ignore[arg-type]
        if n < self.world_size:
            raise ValueError(f"the evaluation set has {n} samples, fewer than the {self.world_size} processes; "
                             "evaluate with fewer processes")
        sampler = ShardSampler(ds, self.world_size, self.rank, shuffle=False, pad=False) if self.is_distributed else None
        return DataLoader(ds, batch_size=max(1, math.ceil(batch_size / self.world_size)), shuffle=False, sampler=sampler,
                          collate_fn=time_major_collate, num_workers=num_workers,
                          pin_memory=self.device.type == "cuda")

    def reduce_accumulator(self, acc: EvalAccumulator) -> None:
        """Sum the accumulator's tensors over the ranks in place (one all-reduce of their concatenation).

        Every rank must hold the same keys and shapes (the same model and window); a mismatch is a
        clear ``ValueError`` on every rank rather than a hang.
        """
        if not self.is_distributed:
            return
        state = acc.state_tensors()
        signature = [(k, tuple(v.shape)) for k, v in state.items()]
        signatures = self.all_gather_object(signature)
        if any(s != signatures[0] for s in signatures):
            raise ValueError(f"the ranks' metric accumulators differ (keys and shapes per rank: {signatures}); "
                             "every process must evaluate the same model on the same window")
        if not state:
            return
        flat = torch.cat([v.detach().reshape(-1).to(self._comm_device(), torch.float64) for v in state.values()])
        dist.all_reduce(flat)
        reduced, offset = {}, 0
        for k, v in state.items():
            reduced[k] = flat[offset : offset + v.numel()].reshape(v.shape).to(v.device)
            offset += v.numel()
        acc.load_state_tensors(reduced)

    def gather_collected(self, collected: Mapping[str, Any], collect: int) -> dict[str, Any]:
        """The outputs collected by :func:`~.engine.evaluate_model` on each rank's eval shard, on rank 0.

        ``t_F [S, C]`` and ``labels [S]`` of every sample and the rasters ``{layer: [T, collect, ...]}``
        of the first ``collect`` samples, in the data set's order (as a single process gives them);
        the other ranks get back an empty collection.
        """
        if not self.is_distributed:
            return dict(collected)
        local = {"t_F": collected.get("t_F"), "labels": collected.get("labels"),
                 "rasters": dict(collected.get("rasters") or {})}
        parts = self.gather_object(local)
        if not self.is_main:
            return {"t_F": None, "labels": None, "rasters": {}}
        assert parts is not None
        out: dict[str, Any] = {"labels": interleave([p["labels"] for p in parts])}
        out["t_F"] = None if any(p["t_F"] is None for p in parts) else interleave([p["t_F"] for p in parts])
        out["rasters"] = {name: interleave([p["rasters"][name] for p in parts], dim=1)[:, :collect]
                          for name in parts[0]["rasters"]}
        return out


def current_context(device_spec: str = "auto") -> DistContext:
    """The :class:`DistContext` of this process from torch.distributed's state (no process group: single).

    Raises ``RuntimeError`` when torchrun started several processes but no process group is open
    (use :func:`launch`).
    """
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = _env_int("LOCAL_RANK", rank)
        backend = str(dist.get_backend())
        device = rank_device(device_spec, local, world)
        if backend == "nccl" and device.type != "cuda":
            raise ValueError("the process group uses nccl but the config's device is the CPU; use device: auto or cuda")
        return DistContext(rank, world, local, device, backend if world > 1 else None)
    _, world, local = env_world()
    if world > 1:
        raise RuntimeError(f"started by torchrun with WORLD_SIZE={world} but no process group is open; "
                           "run inside sjframe.methods.surrogate.distributed.launch(...) (train.py / test.py do)")
    return DistContext(0, 1, local, rank_device(device_spec, local, 1), None)


def check_launch(backend: str = "auto", device: str = "auto") -> None:
    """Validate what :func:`launch` would open under torchrun (``ValueError``), without opening anything."""
    _, world, local = env_world()
    if world == 1:
        return
    try:
        dev = rank_device(device, local, world)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    resolve_backend(backend, dev)


@contextmanager
def launch(backend: str = "auto", device: str = "auto") -> Iterator[DistContext]:
    """Open the process group from torchrun's environment for the duration of the block.

    Without torchrun (``WORLD_SIZE`` unset or 1) it opens nothing and yields a single-process
    context. If a process group is already open it is used (and left open). A group opened here is
    destroyed at the end of the block.
    """
    rank, world, local = env_world()
    if world == 1 or (dist.is_available() and dist.is_initialized()):
        yield current_context(device)
        return
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build; train without torchrun")
    dev = rank_device(device, local, world)
    chosen = resolve_backend(backend, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend=chosen, rank=rank, world_size=world,
                            device_id=dev if chosen == "nccl" else None)
    try:
        yield current_context(device)
    finally:
        dist.destroy_process_group()


def create_run_dir(name: str, root: str, ctx: DistContext) -> RunDir:
    """A new run directory, created by rank 0; every rank gets the same path (or rank 0's error)."""
    result: tuple[str, str] | None = None
    if ctx.is_main:
        try:
            run = RunDir.create(name, root=root)
            run.lock()
            result = ("ok", str(run.path))
        except OSError as exc:
            result = ("error", f"cannot create a run directory under {root} (runs_root / --runs_root): "
                               f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    status, value = ctx.broadcast_object(result)
    if status != "ok":
        raise UserError(value, status=2)
    return run if ctx.is_main else RunDir(value)


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
        super().__init__(cfg, run, callbacks, rank=ctx.rank, world_size=ctx.world_size)
        self.ctx = ctx
        self.device = ctx.device
        self.model.to(self.device)
        if ctx.rank > 0:
            engine.set_seed(rank_seed(cfg.seed, ctx.rank))
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
            return self.ctx.eval_loader(ds, self.cfg.train.test_batch_size, self.cfg.data.num_workers)
        sampler = ShardSampler(ds, self.world_size, self.rank, shuffle=True, seed=self.cfg.seed, pad=True)
        sampler.set_epoch(epoch)
        return DataLoader(ds, batch_size=self.local_batch, sampler=sampler, collate_fn=time_major_collate,
                          generator=engine._epoch_generator(self.cfg.seed, epoch),
                          num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda")

    # ------------------------------------------------------------------ collectives
    def _reduce(self, acc: EvalAccumulator) -> None:
        self.ctx.reduce_accumulator(acc)

    def _all_ok(self, flag: bool) -> bool:
        return self.ctx.all_true(flag)

    @torch.no_grad()
    def evaluate(self, ds: Dataset, desc: str = "eval") -> dict[str, Any]:
        """Metrics on the whole ``ds`` (each rank its shard, sums all-reduced), with rank 0's buffers everywhere."""
        for buffer in self.model.buffers():  # BatchNorm running statistics drift apart without sync_bn
            self._broadcast_buffer(buffer)
        return super().evaluate(ds, desc)

    def _broadcast_buffer(self, buffer: torch.Tensor) -> None:
        comm = self.ctx._comm_device()
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
        rngs = self.ctx.all_gather_object(engine._rng_state())
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
            engine._set_rng_state(per_rank[self.rank])
            return
        if self.rank > 0:
            engine.set_seed(rank_seed(self.cfg.seed, self.rank, self.epoch))
        if self.ctx.is_main:
            written = len(per_rank) if per_rank is not None else 1
            print(f"[sjframe] note: the checkpoint was written by {written} process(es), resumed with "
                  f"{self.world_size}; ranks > 0 start new random streams (the same data order and weights, "
                  "but dropout masks differ from an uninterrupted run)", file=sys.stderr)


def make_trainer(cfg: SurrogateConfig, run: RunDir | None,
                 callbacks: list[engine.EpochCallback] | None = None) -> engine.Trainer:
    """The trainer for this process: :class:`DistributedTrainer` under an open multi-process group, else the
    single-process :class:`~sjframe.methods.surrogate.engine.Trainer` (with ``train.compile`` applied)."""
    ctx = current_context(cfg.device)
    if ctx.is_distributed:
        return DistributedTrainer(cfg, run, ctx, callbacks)
    trainer = engine.Trainer(cfg, run, callbacks)
    trainer.forward_module = apply_compile(trainer.model, cfg)
    return trainer


def evaluate_run(cfg: SurrogateConfig, run: RunDir, checkpoint: str = "best.pt") -> dict[str, Any]:
    """:func:`sjframe.methods.surrogate.engine.evaluate_run`, sharded over the processes when a process group is open.

    Every rank returns the metrics of the whole test set; rank 0 writes the report and plots.
    """
    ctx = current_context(cfg.device)
    if not ctx.is_distributed:
        return engine.evaluate_run(cfg, run, checkpoint)
    if ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    report = engine.evaluate_run(cfg, run, checkpoint, dist=ctx)
    ctx.barrier()
    return report
