"""Building blocks shared by the sjframe models: spiking options, neuron factory, time-fixed dropout.

Shapes are time-major: ``[T, B, ...]``. Stateless layers (Linear, Conv2d, BatchNorm, pooling) are
applied to all steps at once by folding time into the batch (``[T * B, ...]``, see
:func:`seq_apply`).

Neuron time constants are given in **steps** of the data's ``dt`` (a decay ``exp(-1/tau)``); the
keys say so (``tau_m_steps``). A paper value in ms converts as ``tau_ms / dt_ms``
(:func:`sjframe.neurons.tau_steps`), e.g. 50 ms at dt = 10 ms is 5 steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sjframe.neurons import SJNeuron, build_neuron, neuron_names
from sjframe.neurons.base import BACKENDS
from sjframe.neurons.registry import neuron_config

__all__ = [
    "RecurrentSpikingLinear",
    "SpikingOptions",
    "TimeFixedDropout",
    "make_layer_neuron",
    "seq_apply",
    "xavier_init",
]

@dataclass(frozen=True)
class SpikingOptions:
    """Options every spiking model of this package shares.

    Attributes:
        neuron_type: neuron of the feature layers, a registered name (:func:`sjframe.neurons.neuron_names`:
            ``culif | pculif | pculif_neuron | adlif | lif`` built in).
        output_neuron_type: neuron of the decision (FC / output) layers; the paper uses CuLIF.
        neuron1, neuron2: the group configs of the feature and decision layers, each checked by its
            neuron's registered config class (a mapping in YAML: ``tau_m_steps, tau_s_steps, theta``,
            and the neuron's own keys, e.g. AdLIF's ``tau_w_steps``); stored as that config object.
        backend: ``torch`` (reference) or ``cupy`` (CUDA kernels).
        surrogate: model-wide surrogate (``None``: fast_sigmoid rho = 5, the paper's).
        gradient: model-wide gradient mode (``None``: dense).
        layer_overrides: per-layer ``{layer name: {surrogate: ..., gradient: ...}}`` (layer names as
            in ``ModelOutput.layer_spikes``); the most specific setting wins.
    """

    neuron_type: str = "culif"
    output_neuron_type: str = "culif"
    neuron1: Any = field(default_factory=dict)
    neuron2: Any = field(default_factory=dict)
    backend: str = "torch"
    surrogate: str | dict[str, Any] | None = None
    gradient: str | dict[str, Any] | None = None
    layer_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = neuron_names()
        for name in ("neuron_type", "output_neuron_type"):
            if getattr(self, name) not in names:
                raise ValueError(f"{name} {getattr(self, name)!r} unknown; valid: {list(names)}")
        for group, kind in (("neuron1", self.neuron_type), ("neuron2", self.output_neuron_type)):
            object.__setattr__(self, group, neuron_config(kind, getattr(self, group), group))
        if self.backend not in BACKENDS:
            raise ValueError(f"backend {self.backend!r} unknown; valid: {list(BACKENDS)}")
        for layer, spec in self.layer_overrides.items():
            if not isinstance(spec, dict) or set(spec) - {"surrogate", "gradient"}:
                raise ValueError(
                    f"layer_overrides.{layer} must be a mapping with keys among ['gradient', 'surrogate'], got {spec!r}"
                )


def make_layer_neuron(
    opts: SpikingOptions,
    layer: str,
    shape: int | tuple[int, ...],
    decision: bool,
    store_h_seq: bool = False,
    step_mode: str = "m",
) -> SJNeuron:
    """The neuron layer named ``layer`` of feature shape ``shape`` (built through the neuron registry).

    ``decision=False`` uses ``opts.neuron_type`` with ``opts.neuron1``; ``decision=True`` uses
    ``opts.output_neuron_type`` with ``opts.neuron2``. Surrogate and gradient: the layer's override,
    else the group's (``neuron1/2.surrogate``), else the model's.
    """
    kind = opts.output_neuron_type if decision else opts.neuron_type
    cfg = opts.neuron2 if decision else opts.neuron1
    override = opts.layer_overrides.get(layer, {})
    surrogate = override.get("surrogate", cfg.surrogate if cfg.surrogate is not None else opts.surrogate)
    gradient = override.get("gradient", cfg.gradient if cfg.gradient is not None else opts.gradient)
    return build_neuron(kind, shape, cfg, surrogate=surrogate, gradient=gradient, backend=opts.backend,
                        store_h_seq=store_h_seq, step_mode=step_mode)


def seq_apply(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a stateless layer to every step: ``[T, B, *F] -> [T * B, *F] -> module -> [T, B, *F']``."""
    t, b = x.shape[:2]
    y = module(x.reshape(t * b, *x.shape[2:]))
    return y.reshape(t, b, *y.shape[1:])


class TimeFixedDropout(nn.Module):
    """Dropout whose mask is drawn once per sample and kept for every time step.

    Input ``[T, B, *F]``; in training the mask ``m [1, B, *F] ~ Bernoulli(1 - p) / (1 - p)`` multiplies
    all steps; identity in evaluation.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not (0.0 <= p < 1.0):
            raise ValueError(f"dropout p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.empty((1, *x.shape[1:]), device=x.device, dtype=x.dtype).bernoulli_(1.0 - self.p)
        return x * mask / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p} (mask fixed across time)"


def xavier_init(model: nn.Module) -> None:
    """Xavier-uniform weights for every Linear and Conv2d of ``model`` (biases, if any, to zero)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class RecurrentSpikingLinear(nn.Module):
    """A recurrent spiking FC layer ``y_t = neuron(W x_t + R y_{t-1})``, ``y_0 = 0``.

    ``W x_t`` is computed for all steps at once; the recurrence runs step by step with the neuron in
    single-step mode. Input ``[T, B, in]``, output spikes ``[T, B, out]``. W and R have no bias.
    """

    def __init__(self, in_features: int, out_features: int, neuron: SJNeuron) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.rec = nn.Linear(out_features, out_features, bias=False)
        neuron.step_mode = "s"
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wx = seq_apply(self.fc, x)
        y = torch.zeros_like(wx[0])
        out = []
        for t in range(wx.shape[0]):
            y = self.neuron(wx[t] + self.rec(y))
            out.append(y)
        return torch.stack(out)
