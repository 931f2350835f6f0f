"""Where a process stands among torchrun's processes, built once per command and passed down.

``train.py`` / ``test.py`` open the context with :func:`launch` (a process group under torchrun,
nothing otherwise) and hand the :class:`DistContext` to the method; its collectives are no-ops in a
single process, so every method runs the same code with and without torchrun. Also: the device of
each process (:func:`rank_device`, through :func:`sjframe.core.runtime.select_device` in one
process) and the run directory every rank shares (:func:`create_run_dir`).
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist

from sjframe.core.cli_errors import UserError
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import select_device

__all__ = [
    "BACKENDS",
    "DistBackend",
    "DistContext",
    "check_launch",
    "create_run_dir",
    "current_context",
    "env_world",
    "interleave",
    "launch",
    "rank_device",
    "rank_seed",
    "resolve_backend",
]

#: process-group backends (``train.dist_backend``): ``auto`` picks nccl on CUDA, gloo on CPU
DistBackend = Literal["auto", "nccl", "gloo"]
BACKENDS: tuple[str, ...] = typing.get_args(DistBackend)


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
        return select_device(spec)
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
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item())

    def comm_device(self) -> torch.device:
        """Where collectives run: the GPU under nccl, else the CPU."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # ------------------------------------------------------------------ metrics
    def reduce_accumulator(self, acc: Any) -> None:
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
        flat = torch.cat([v.detach().reshape(-1).to(self.comm_device(), torch.float64) for v in state.values()])
        dist.all_reduce(flat)
        reduced, offset = {}, 0
        for k, v in state.items():
            reduced[k] = flat[offset : offset + v.numel()].reshape(v.shape).to(v.device)
            offset += v.numel()
        acc.load_state_tensors(reduced)

    def gather_collected(self, collected: Mapping[str, Any], collect: int) -> dict[str, Any]:
        """The outputs collected by an evaluation on each rank's eval shard, on rank 0.

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
                           "run inside sjframe.core.distributed.launch(...) (train.py / test.py do)")
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
