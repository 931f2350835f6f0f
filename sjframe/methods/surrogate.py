"""The ``surrogate`` method: BPTT with surrogate gradients, FS / FR coding (the default method).

Config: :class:`sjframe.config.SurrogateConfig` (sections ``data``, ``model``, ``train``, ``loss``,
``eval``); training and evaluation: :mod:`sjframe.engine`.
"""

from __future__ import annotations

from typing import Any

from sjframe.config import SurrogateConfig, resolve_config
from sjframe.engine import Trainer, evaluate_run
from sjframe.rundir import RunDir

__all__ = ["CONFIG", "evaluate", "train"]

CONFIG = SurrogateConfig


def train(cfg: dict[str, Any], run: RunDir, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue from ``last.pt``) into ``run``; returns the summary."""
    return Trainer(resolve_config(cfg), run).fit(resume=resume)


def evaluate(cfg: dict[str, Any], run: RunDir, checkpoint: str = "best.pt") -> dict[str, Any]:
    """Evaluate ``checkpoint`` of ``run`` on the test split with the config's test window; returns the report."""
    return evaluate_run(resolve_config(cfg), run, checkpoint)
