"""Model registry: ``MODELS[name](options, input_shape, num_classes) -> nn.Module``.

Every registered model's ``forward(x [T, B, *input_shape])`` returns a
:class:`sjframe.models.base.ModelOutput`. To add a model, write a builder
``builder(options: dict, input_shape: tuple[int, ...], num_classes: int) -> nn.Module`` and add one
line to ``MODELS`` below (builders are imported lazily, so a model module's import errors only
affect that model). A builder may carry ``options_class`` (its options dataclass, validating the
config's keys) and ``non_spiking = True`` (the model returns logits only: it trains with
``loss.mode: logits_nll`` and may take static, one-frame inputs; :func:`is_non_spiking`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sjframe.core.registry import lookup
from sjframe.models.base import ModelOutput

__all__ = ["MODELS", "ModelOutput", "build_model", "get_builder", "is_non_spiking"]

Builder = Callable[[dict[str, Any], tuple[int, ...], int], nn.Module]

# name -> "module:function" of the builder (imported on first use).
MODELS: dict[str, str] = {
    "fcnet": "sjframe.models.fcnet:build_fcnet",
    "recurrent_fcnet": "sjframe.models.fcnet:build_recurrent_fcnet",
    "dvsgesture_net": "sjframe.models.conv:build_dvsgesture_net",
    "dvsplane_net": "sjframe.models.conv:build_dvsplane_net",
    "s3gd_net": "sjframe.models.s3gd_net:build_s3gd_net",
    "csnn": "sjframe.models.csnn:build_csnn",
    # non-spiking baselines (logits only; builders carry non_spiking = True): see sjframe/models/baselines.py
    "logreg": "sjframe.models.baselines:build_logreg",
    "mlp": "sjframe.models.baselines:build_mlp",
    "gru": "sjframe.models.baselines:build_gru",
}


def get_builder(name: str) -> Builder:
    """The builder function of model ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    return lookup(MODELS, name, "model")


def is_non_spiking(name: str) -> bool:
    """Whether model ``name`` is a non-spiking baseline (its builder's ``non_spiking`` flag)."""
    return bool(getattr(get_builder(name), "non_spiking", False))


def build_model(
    name: str, options: dict[str, Any] | None, input_shape: tuple[int, ...], num_classes: int
) -> nn.Module:
    """Build model ``name`` from its ``options`` for inputs ``[T, B, *input_shape]`` and ``num_classes`` classes."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape!r}")
    return get_builder(name)(dict(options or {}), shape, num_classes)
