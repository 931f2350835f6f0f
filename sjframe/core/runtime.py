"""Helpers shared by the stdp / conversion / spikeprop methods: config sections, devices, reports.

:class:`MethodConfig` holds the config fields every one of these sections has (data split, seeds,
CPU threads, device); :func:`method_entry` makes a method's public ``train`` / ``evaluate`` run
with the section's ``threads``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import torch

from sjframe.core.config import ConfigError, dataclass_from_dict, dataclass_to_dict
from sjframe.core.rundir import RunDir, atomic_write_bytes

__all__ = [
    "MethodConfig",
    "load_model_state",
    "load_run_checkpoint",
    "markdown_table",
    "method_entry",
    "open_checkpoint",
    "parse_section",
    "report_best",
    "require_at_least_one",
    "resolve_device",
    "resolved_config",
    "start_run",
    "torch_threads",
    "write_report",
]

T = TypeVar("T")
C = TypeVar("C", bound="MethodConfig")
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class MethodConfig:
    """The fields shared by the ``stdp`` / ``conversion`` / ``spikeprop`` config sections.

    ``dataset``: the toy data set (each method narrows it to a ``Literal`` of its own); stratified
    ``test_fraction`` / ``val_fraction`` splits drawn with ``split_seed``; ``seed`` for weights and
    sampling; ``threads``: torch CPU threads while the method runs (``None``: unchanged);
    ``device``: ``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``. A method redeclares a field to change
    its default; the field keeps its place, so the keys of a resolved config keep this order.
    """

    dataset: str = "digits"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"


def require_at_least_one(conf: Any, *names: str) -> None:
    """``ValueError`` naming the first field of ``names`` whose value on ``conf`` is below 1."""
    for name in names:
        if getattr(conf, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(conf, name)!r}")


def method_entry(
    section: str, cls: type[MethodConfig]
) -> Callable[[Callable[Concatenate[dict[str, Any], P], R]], Callable[Concatenate[dict[str, Any], P], R]]:
    """Decorator for a method's ``train(cfg, run, ...)`` / ``evaluate(cfg, run, ...)``.

    The decorated function runs with ``cfg[section].threads`` torch CPU threads (parsed as ``cls``,
    so a bad section is a ``ConfigError`` before anything runs); the previous count is restored after.
    """

    def wrap(fn: Callable[Concatenate[dict[str, Any], P], R]) -> Callable[Concatenate[dict[str, Any], P], R]:
        @functools.wraps(fn)
        def entry(cfg: dict[str, Any], *args: P.args, **kwargs: P.kwargs) -> R:
            with torch_threads(parse_section(cfg, section, cls).threads):
                return fn(cfg, *args, **kwargs)

        return entry

    return wrap


def parse_section(cfg: dict[str, Any], section: str, cls: type[T]) -> T:
    """The typed ``cls`` of ``cfg[section]`` (missing section: all defaults); unknown keys raise ``ConfigError``."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    method = cfg.get("method", section)
    if method != section:
        raise ConfigError(f"config method is {method!r}, but the {section!r} method was called")
    return dataclass_from_dict(cls, cfg.get(section), section)


def resolved_config(cfg: dict[str, Any], section: str, conf: Any) -> dict[str, Any]:
    """``cfg`` with ``method`` set and ``section`` replaced by the fully resolved dataclass values."""
    out = dict(cfg)
    out["method"] = section
    out[section] = dataclass_to_dict(conf)
    return out


def resolve_device(name: str) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` (CUDA when available); asking for absent CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device {name!r} is not a valid torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use 'cpu' or 'auto'")
    return device


def start_run(cfg: dict[str, Any], section: str, cls: type[C], run: RunDir) -> tuple[C, torch.device]:
    """The start of a method's training: ``(conf, device)`` of ``cfg[section]``; writes the resolved config to ``run``."""
    conf = parse_section(cfg, section, cls)
    device = resolve_device(conf.device)
    run.write_config(resolved_config(cfg, section, conf))
    return conf, device


def open_checkpoint(
    cfg: dict[str, Any], section: str, cls: type[C], run: RunDir, checkpoint: str
) -> tuple[C, torch.device, dict[str, Any], str]:
    """The start of a method's evaluation: ``(conf, device, state, checkpoint name)`` (see :func:`load_run_checkpoint`)."""
    conf = parse_section(cfg, section, cls)
    device = resolve_device(conf.device)
    state, name = load_run_checkpoint(run, checkpoint)
    return conf, device, state, name


def load_model_state(model: torch.nn.Module, state: dict[str, Any], checkpoint: str, what: str) -> None:
    """Load ``state["model"]`` into ``model``; a mismatch is a ``ValueError`` naming ``checkpoint`` and ``what``."""
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {checkpoint} does not match {what} ({exc})") from exc


def report_best(evaluate: Callable[[dict[str, Any], RunDir, str], dict[str, Any]], cfg: dict[str, Any],
                run: RunDir) -> dict[str, Any]:
    """The end of a method's training: ``evaluate`` the run's ``best.pt``, print the report's table, return the report."""
    report = evaluate(cfg, run, "best.pt")
    print(report["table"])
    return report


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table (floats with 4 decimals)."""

    def fmt(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def load_run_checkpoint(run: RunDir, checkpoint: str) -> tuple[dict[str, Any], str]:
    """``(state, name)`` of ``checkpoint``: ``best`` | ``last`` | ``<name>.pt`` in the run, or a checkpoint file path."""
    path = Path(checkpoint)
    if path.suffix == ".pt" and path.is_file() and path.parent != run.checkpoints:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # corrupt / truncated file
            raise RuntimeError(f"checkpoint {path} could not be read ({exc})") from exc
        name = path.name
    else:
        name = path.name if path.suffix == ".pt" else f"{checkpoint}.pt"
        if not (run.checkpoints / name).is_file():
            have = sorted(p.name for p in run.checkpoints.glob("*.pt")) if run.checkpoints.is_dir() else []
            raise FileNotFoundError(f"checkpoint {run.checkpoints / name} does not exist (the run has {have or 'none'})")
        state = run.load_checkpoint(name)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"checkpoint {name} holds no model state")
    return state, name


def write_report(run: RunDir, report: dict[str, Any], name: str, table: str) -> dict[str, Any]:
    """Write ``reports/<name>.json`` and the readable ``reports/<name>.md`` into the run, log the report.

    Returns the report with ``table`` added (``test.py`` prints it).
    """
    folder = run.path / "reports"
    atomic_write_bytes(folder / f"{name}.json", (json.dumps(report, indent=2, default=float) + "\n").encode())
    atomic_write_bytes(folder / f"{name}.md", table.encode())
    run.log({"event": "test", **report})
    return {**report, "table": table}


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), restoring the previous count after."""
    if n is None:
        yield
        return
    if n < 1:
        raise ConfigError(f"threads must be >= 1 or null, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
