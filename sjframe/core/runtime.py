"""Runtime helpers every method uses, each defined once: device, CPU threads, seeds and RNG states,
per-epoch generators, model weights from checkpoints, report tables.

(Checkpoint lookup and report files are methods of :class:`~sjframe.core.rundir.RunDir`.)
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sjframe.core.cli_errors import CheckpointError, UserError
from sjframe.core.config import ConfigError
from sjframe.core.rundir import read_checkpoint

__all__ = [
    "DeviceError",
    "epoch_generator",
    "load_weights",
    "markdown_table",
    "read_model_state",
    "require_at_least_one",
    "rng_state",
    "select_device",
    "set_rng_state",
    "set_seed",
    "torch_threads",
]


class DeviceError(UserError, ConfigError):
    """A device that cannot be used here (CUDA asked for without a GPU, a malformed name); exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=2)


def select_device(spec: str, where: str = "device") -> torch.device:
    """``auto`` -> CUDA if available else the CPU; ``cpu`` | ``cuda`` | ``cuda:N`` as given.

    Asking for CUDA where there is none, or a malformed name, is a :class:`DeviceError` naming the
    config key ``where``.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise DeviceError(f"{where} {spec!r} is not a valid torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{where} {spec!r} requested but CUDA is not available here (no GPU or no driver); "
                          f"use --{where} cpu or auto")
    return device


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), restoring the previous count after."""
    if n is not None and n < 1:
        raise ConfigError(f"threads must be >= 1 or null, got {n!r}")
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch (and, when this process uses CUDA, CUDA) RNG states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    # only when this process uses CUDA: reading the states initialises CUDA (a context on the GPU), which a
    # CPU run on a GPU machine should not do; a CUDA RNG never initialised was never drawn from either
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore an :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # a checkpoint may hold the states of more (or fewer) visible GPUs than this process sees:
        # restore those of the devices both have
        saved = state["cuda"]
        for index in range(min(len(saved), torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved[index], index)


def epoch_generator(seed: int, index: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, index)`` alone: ``seed * 1_000_003 + index`` (mod 2**63).

    ``index`` is the epoch (the surrogate engine's data order), or ``7 * epoch + stream`` for
    methods drawing several independent streams per epoch (exact_time: order 0, input noise 1),
    so an epoch draws the same numbers whatever ran before it (exact resume).
    """
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (2**63))


def read_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from a checkpoint file, or from a run directory's ``best.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = read_checkpoint(path)
    if isinstance(state, dict) and "model" in state:
        return state["model"]
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise CheckpointError(f"checkpoint {path} holds no model state (expected a dict with a 'model' key)")


def load_weights(model: torch.nn.Module, state: Any, source: str) -> None:
    """``model.load_state_dict(state)``; weights of another architecture are a :class:`CheckpointError`
    naming ``source`` and the first tensor that does not fit, with both shapes (or the missing / extra keys)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds no model state (got {type(state).__name__})")
    own = model.state_dict()
    for key, value in state.items():
        if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{source} does not fit the model: tensor {key!r} has shape {list(value.shape)} "
                                  f"in the checkpoint but {list(own[key].shape)} in the model")
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"{source} does not fit the model: tensors missing from the checkpoint {missing[:4]}"
                              f"{' ...' if len(missing) > 4 else ''}, not in the model {extra[:4]}"
                              f"{' ...' if len(extra) > 4 else ''}")
    model.load_state_dict(state)


def require_at_least_one(conf: Any, *names: str) -> None:
    """``ValueError`` naming the first field of ``names`` whose value on ``conf`` is below 1."""
    for name in names:
        if getattr(conf, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(conf, name)!r}")


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table (floats with 4 decimals)."""

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
