"""The ``surrogate`` method: BPTT with surrogate gradients, FS / FR coding (the default method).

Config: :class:`sjframe.methods.surrogate.config.SurrogateConfig` (sections ``data``, ``model``, ``train``, ``loss``,
``eval``); training and evaluation: :mod:`sjframe.methods.surrogate.engine`, across processes under torchrun
(:mod:`sjframe.methods.surrogate.distributed`; a single process otherwise).
"""

from __future__ import annotations

from typing import Any

from sjframe.core.rundir import RunDir
from sjframe.methods.surrogate import distributed
from sjframe.methods.surrogate.config import SurrogateConfig, resolve_config

__all__ = ["CONFIG", "evaluate", "train"]

CONFIG = SurrogateConfig


def train(cfg: dict[str, Any], run: RunDir, resume: bool = False) -> dict[str, Any]:
    """Train (or, with ``resume``, continue from ``last.pt``) into ``run``; returns the summary.

    Under torchrun every process calls this with the same ``run`` (DistributedDataParallel; rank 0 writes).
    """
    resolved = resolve_config(cfg)
    with distributed.launch(resolved.train.dist_backend, resolved.device):
        return distributed.make_trainer(resolved, run).fit(resume=resume)


def evaluate(cfg: dict[str, Any], run: RunDir, checkpoint: str = "best.pt") -> dict[str, Any]:
    """Evaluate ``checkpoint`` of ``run`` on the test split with the config's test window; returns the report."""
    resolved = resolve_config(cfg)
    with distributed.launch(resolved.train.dist_backend, resolved.device):
        return distributed.evaluate_run(resolved, run, checkpoint)
