"""The ``surrogate`` method: BPTT with surrogate gradients, FS / FR coding (the default method).

Settings: :class:`~sjframe.methods.surrogate.config.SurrogateConfig`, the whole config (sections
``data``, ``model``, ``train``, ``loss``, ``eval``); training: :mod:`.engine`, across processes under
torchrun (:mod:`.distributed`); evaluation and the test report: :mod:`.evaluation`.
"""

from __future__ import annotations

from typing import Any

from sjframe.core.cli_errors import UserError
from sjframe.core.config import CliOptions
from sjframe.core.distributed import DistContext
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import read_model_state
from sjframe.methods.base import Capabilities, Method
from sjframe.methods.surrogate import config as surrogate_config
from sjframe.methods.surrogate.config import SurrogateConfig, config_to_dict, resolve_config

__all__ = ["METHOD", "SurrogateMethod"]


class SurrogateMethod(Method):
    """BPTT with surrogate gradients; resumable, distributed under torchrun; seed 003's command-line flags."""

    name = "surrogate"
    settings = SurrogateConfig
    section = None
    capabilities = Capabilities(supports_resume=True, keeps_savepoints=False, supports_distributed=True)

    def cli_options(self, command: str) -> CliOptions:
        return surrogate_config.cli_options(command)

    def key_type(self, raw: dict[str, Any], path: list[str]) -> Any:
        return surrogate_config.key_type(raw, path)

    def parse(self, raw: dict[str, Any]) -> SurrogateConfig:
        return resolve_config(raw)

    def resolved(self, raw: dict[str, Any], settings: SurrogateConfig) -> dict[str, Any]:
        return config_to_dict(settings)

    def device_key(self) -> str:
        return "device"

    def dist_backend(self, settings: SurrogateConfig) -> str:
        return settings.train.dist_backend

    def default_checkpoint(self, settings: SurrogateConfig) -> str:
        """``eval.checkpoint`` (``best``), or ``last`` for a run of the paper's protocol (it has no ``best.pt``)."""
        if settings.train.protocol == "paper" and settings.eval.checkpoint in ("best", "best.pt"):
            return "last"
        return settings.eval.checkpoint

    def precheck(self, settings: SurrogateConfig) -> None:
        """Kernel backends that cannot run here and an unreadable ``train.init_checkpoint`` fail before a run starts."""
        for where, value in _walk(settings.model.options, "model"):
            if where.endswith(".backend") and value in ("cupy", "cpu"):
                from sjframe.neurons.base import cpu_unavailable_reason, cupy_unavailable_reason

                reason = (cupy_unavailable_reason if value == "cupy" else cpu_unavailable_reason)()
                if reason is not None:
                    raise UserError(f"--{where} {value} cannot run here: {reason}; use --{where} torch", status=2)
        if settings.train.init_checkpoint:
            read_model_state(settings.train.init_checkpoint)  # readable and holding weights (shapes: at model build)

    def fit(self, settings: SurrogateConfig, raw: dict[str, Any], run: RunDir, ctx: DistContext, resume: bool,
            resume_epoch: int | None) -> dict[str, Any]:
        """Train (or, with ``resume``, continue from ``last.pt``) into ``run``; every process calls this (rank 0 writes)."""
        from sjframe.methods.surrogate.distributed import make_trainer

        return make_trainer(settings, run, ctx=ctx).fit(resume=resume)

    def test(self, settings: SurrogateConfig, raw: dict[str, Any], run: RunDir, ctx: DistContext, checkpoint: str,
             **options: Any) -> dict[str, Any]:
        """Evaluate ``checkpoint`` of ``run`` on the test split with the config's test window; returns the report."""
        from sjframe.methods.surrogate.evaluation import evaluate_run

        return evaluate_run(settings, run, checkpoint, ctx=ctx)


def _walk(node: Any, prefix: str) -> list[tuple[str, Any]]:
    """``(dotted path, value)`` of every leaf of nested dicts."""
    if not isinstance(node, dict):
        return [(prefix, node)]
    return [item for key, value in node.items() for item in _walk(value, f"{prefix}.{key}")]


METHOD = SurrogateMethod()
