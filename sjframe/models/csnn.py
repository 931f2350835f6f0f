"""The convolutional SNN of seed 002: 12C5-MP2-64C5-MP2-FC for static images and event frames.

Input ``x [T, B, C, H, W]``: a static image fed as a constant current at every step (``C = 1``;
e.g. MNIST ``encoding: static``, ``[T, B, 1, 28, 28]``) or 2-channel event frames (N-MNIST
``polarity: split, flatten: false``, ``[T, B, 2, 34, 34]``)::

    Conv5x5(C -> 12) -> MaxPool2 -> LIF  ->  Conv5x5(12 -> 64) -> MaxPool2 -> LIF  ->  FC(-> classes) -> LIF

(28x28: FC 1024 -> 10; 34x34: FC 1600 -> 10). The seed used snnTorch ``Leaky`` neurons (beta 0.5,
threshold 1, reset by subtraction, fast-sigmoid surrogate of slope 25). Here the neurons are
sjframe's ``LIF`` (:class:`sjframe.neurons.lif.LIF`): ``h_t = beta h_{t-1} + x_{t-1} - theta s_{t-1}``,
``s_t = H(h_t - theta)`` with ``beta = exp(-1/tau_m)``; the default ``tau_m_steps = 1/ln 2``
gives beta = 0.5, reset by subtraction, surrogate ``fast_sigmoid`` with ``rho = 25``
(``1/(25|u| + 1)^2``, snnTorch's). Unlike snnTorch's Leaky it lags its input by one step.
Any sjframe neuron can be chosen instead (``neuron_type``, ``output_neuron_type``, ``neuron1``,
``neuron2``: the shared :class:`sjframe.layers.common.SpikingOptions`).

Convolutions and the FC have biases by default (as the seed's ``nn.Conv2d`` / ``nn.Linear``), with
PyTorch's default initialisation. ``ModelOutput``: ``spikes`` / ``h`` of the output layer,
``layer_spikes`` ``conv1``, ``conv2``, ``output``. Train with ``loss.mode: rate_ce`` (cross-entropy
of the output spikes at every step, averaged over time) and ``train.scheduler: multistep``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sjframe.core.config import dataclass_from_dict
from sjframe.layers.common import SpikingOptions, make_layer_neuron, seq_apply
from sjframe.models.base import ModelOutput
from sjframe.models.fcnet import check_input

__all__ = ["CSNN", "CSNNOptions", "build_csnn"]

_BETA_HALF_TAU = 1.0 / math.log(2.0)   # tau_m in steps with exp(-1/tau_m) = 0.5


def _leaky_half() -> dict[str, Any]:
    return {"tau_m_steps": _BETA_HALF_TAU, "theta": 1.0}


@dataclass(frozen=True)
class CSNNOptions(SpikingOptions):
    """Options of the CSNN (plus the shared :class:`SpikingOptions`; seed 002's defaults).

    Attributes:
        channels: output channels of the two convolutions (12, 64).
        kernel_size: convolution kernel size (5).
        bias: biases in the convolutions and the FC layer (the seed had them).
    """

    neuron_type: str = "lif"
    output_neuron_type: str = "lif"
    neuron1: Any = field(default_factory=_leaky_half)
    neuron2: Any = field(default_factory=_leaky_half)
    surrogate: str | dict[str, Any] | None = field(default_factory=lambda: {"name": "fast_sigmoid", "rho": 25.0})
    channels: list[int] = field(default_factory=lambda: [12, 64])
    kernel_size: int = 5
    bias: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channels) != 2 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be 2 positive integers, got {self.channels!r}")
        if self.kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size!r}")


class CSNN(nn.Module):
    """Conv-MP2-neuron, Conv-MP2-neuron, FC-neuron (see the module docstring)."""

    def __init__(self, opts: CSNNOptions, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"CSNN: input_shape must be (C, H, W), got {input_shape!r}")
        self.opts = opts
        self.input_shape = tuple(input_shape)
        c_in, h, w = self.input_shape
        k = opts.kernel_size
        c1, c2 = opts.channels
        h1, w1 = (h - k + 1) // 2, (w - k + 1) // 2
        h2, w2 = (h1 - k + 1) // 2, (w1 - k + 1) // 2
        if min(h2, w2) < 1:
            raise ValueError(f"CSNN: input_shape {input_shape!r} is too small for two {k}x{k} conv + pool stages")
        self.conv1 = nn.Conv2d(c_in, c1, k, bias=opts.bias)
        self.conv2 = nn.Conv2d(c1, c2, k, bias=opts.bias)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(c2 * h2 * w2, num_classes, bias=opts.bias)
        self.lif1 = make_layer_neuron(opts, "conv1", (c1, h1, w1), decision=False)
        self.lif2 = make_layer_neuron(opts, "conv2", (c2, h2, w2), decision=False)
        self.lif_out = make_layer_neuron(opts, "output", num_classes, decision=True, store_h_seq=True)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_input(x, self.input_shape, type(self).__name__)
        s1 = self.lif1(seq_apply(lambda z: self.pool(self.conv1(z)), x))
        s2 = self.lif2(seq_apply(lambda z: self.pool(self.conv2(z)), s1))
        s_out = self.lif_out(seq_apply(self.fc, s2.flatten(2)))
        return ModelOutput(spikes=s_out, h=self.lif_out.h_seq,
                           layer_spikes={"conv1": s1, "conv2": s2, "output": s_out})


def build_csnn(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> CSNN:
    """Registry builder (``options``: the keys of :class:`CSNNOptions`)."""
    return CSNN(dataclass_from_dict(CSNNOptions, options, "model"), input_shape, num_classes)


build_csnn.options_class = CSNNOptions  # type: ignore[attr-defined]
