"""Fully connected spiking nets of the first-spike-coding paper: FCNet and its recurrent variant.

**FCNet** (SHD 700-256-256-20, N-TIDIGITS 64-256-256-11), input ``x [T, B, *input_shape]``
(features flattened)::

    per hidden layer l:  a = Linear_l(x)  (no bias)
                         a = BatchNorm1d over the T*B rows (optional)
                         s = neuron_l(a)           (neuron_type, neuron1)
                         x = Dropout(s)            (mask fixed across the T steps)
    output:              s_out = neuron_out(Linear_out(x))   (output_neuron_type, neuron2; h kept)

**Recurrent FCNet** (the paper's SuperSpike nets, SHD 700-256(R)-20, N-TIDIGITS 64-256(R)-256(R)-11):
hidden layers ``y_t = neuron(W x_t + R y_{t-1})``; the trainable decays of the hidden neurons
(PCuLIF per neuron by default, also AdLIF's ``alpha``) are clamped to ``decay_clamp``
(default ``[2/e, 0.995]``) after every optimiser step (:meth:`RecurrentFCNet.post_step`).

Both return :class:`ModelOutput` with ``spikes, h`` of the output layer ``[T, B, C]`` and
``layer_spikes`` ``{"hidden1": ..., ..., "output": ...}``. Weights are Xavier-uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sjframe.core.config import dataclass_from_dict
from sjframe.layers.common import (
    RecurrentSpikingLinear,
    SpikingOptions,
    TimeFixedDropout,
    make_layer_neuron,
    seq_apply,
    xavier_init,
)
from sjframe.models.base import ModelOutput

__all__ = [
    "FCNet",
    "FCNetOptions",
    "RecurrentFCNet",
    "RecurrentFCNetOptions",
    "build_fcnet",
    "build_recurrent_fcnet",
    "check_input",
    "clamp_decays",
]


@dataclass(frozen=True)
class FCNetOptions(SpikingOptions):
    """FCNet options (plus the shared :class:`SpikingOptions`).

    Attributes:
        hidden_sizes: sizes of the hidden layers (``--hidden_size 256 256``).
        dropout: dropout probability after each hidden layer (mask fixed across time).
        batchnorm: BatchNorm1d over the ``T * B`` rows after each hidden Linear.
    """

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.25
    batchnorm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(n < 1 for n in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive, got {self.hidden_sizes!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class RecurrentFCNetOptions(SpikingOptions):
    """Recurrent FCNet options.

    Attributes:
        hidden_sizes: sizes of the recurrent hidden layers.
        dropout: dropout after each hidden layer (mask fixed across time; the paper's nets use none).
        decay_clamp: ``[low, high]`` range of the trainable per-neuron decays after each step.
    """

    neuron_type: str = "pculif_neuron"
    hidden_sizes: list[int] = field(default_factory=lambda: [256])
    dropout: float = 0.0
    decay_clamp: list[float] = field(default_factory=lambda: [2.0 / math.e, 0.995])

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(n < 1 for n in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive, got {self.hidden_sizes!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if len(self.decay_clamp) != 2 or not (0.0 < self.decay_clamp[0] < self.decay_clamp[1] < 1.0):
            raise ValueError(f"decay_clamp must be [low, high] with 0 < low < high < 1, got {self.decay_clamp!r}")


def check_input(x: torch.Tensor, input_shape: tuple[int, ...], who: str) -> None:
    """Raise ``ValueError`` unless ``x`` is a float tensor ``[T, B, *input_shape]``."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{who}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 + len(input_shape) or tuple(x.shape[2:]) != tuple(input_shape):
        raise ValueError(f"{who}: x must have shape [T, B, {', '.join(map(str, input_shape))}], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{who}: x must be floating point, got dtype {x.dtype}")


def clamp_decays(modules: list[nn.Module], low: float, high: float) -> None:
    """Clamp the trainable decays of the neuron layers ``modules`` to [low, high] (each neuron's ``clamp_decays``:
    PCuLIF's ``sigmoid(w_m), sigmoid(w_s)``, AdLIF's ``sigmoid(w_m)``, a no-op for fixed decays)."""
    for m in modules:
        m.clamp_decays(low, high)


class FCNet(nn.Module):
    """Feed-forward FCNet (see the module docstring)."""

    def __init__(self, opts: FCNetOptions, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.opts = opts
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        self.fcs = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.neurons = nn.ModuleList()
        self.drops = nn.ModuleList()
        for i, n in enumerate(opts.hidden_sizes):
            self.fcs.append(nn.Linear(n_in, n, bias=False))
            self.bns.append(nn.BatchNorm1d(n) if opts.batchnorm else nn.Identity())
            self.neurons.append(make_layer_neuron(opts, f"hidden{i + 1}", n, decision=False))
            self.drops.append(TimeFixedDropout(opts.dropout))
            n_in = n
        self.out_fc = nn.Linear(n_in, num_classes, bias=False)
        self.out_neuron = make_layer_neuron(opts, "output", num_classes, decision=True, store_h_seq=True)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_input(x, self.input_shape, type(self).__name__)
        x = x.flatten(2)
        layer_spikes: dict[str, torch.Tensor] = {}
        for i, (fc, bn, neuron, drop) in enumerate(zip(self.fcs, self.bns, self.neurons, self.drops)):
            s = neuron(seq_apply(bn, seq_apply(fc, x)))
            layer_spikes[f"hidden{i + 1}"] = s
            x = drop(s)
        s_out = self.out_neuron(seq_apply(self.out_fc, x))
        layer_spikes["output"] = s_out
        return ModelOutput(spikes=s_out, h=self.out_neuron.h_seq, layer_spikes=layer_spikes)


class RecurrentFCNet(nn.Module):
    """Recurrent FCNet (see the module docstring)."""

    def __init__(self, opts: RecurrentFCNetOptions, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.opts = opts
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        self.hidden = nn.ModuleList()
        self.drops = nn.ModuleList()
        for i, n in enumerate(opts.hidden_sizes):
            neuron = make_layer_neuron(opts, f"hidden{i + 1}", n, decision=False, step_mode="s")
            self.hidden.append(RecurrentSpikingLinear(n_in, n, neuron))
            self.drops.append(TimeFixedDropout(opts.dropout))
            n_in = n
        self.out_fc = nn.Linear(n_in, num_classes, bias=False)
        self.out_neuron = make_layer_neuron(opts, "output", num_classes, decision=True, store_h_seq=True)
        xavier_init(self)
        self.post_step()

    def post_step(self) -> None:
        """Clamp the hidden layers' trainable decays to ``decay_clamp`` (the engine calls this after each step)."""
        clamp_decays([layer.neuron for layer in self.hidden], *self.opts.decay_clamp)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_input(x, self.input_shape, type(self).__name__)
        x = x.flatten(2)
        layer_spikes: dict[str, torch.Tensor] = {}
        for i, (layer, drop) in enumerate(zip(self.hidden, self.drops)):
            s = layer(x)
            layer_spikes[f"hidden{i + 1}"] = s
            x = drop(s)
        s_out = self.out_neuron(seq_apply(self.out_fc, x))
        layer_spikes["output"] = s_out
        return ModelOutput(spikes=s_out, h=self.out_neuron.h_seq, layer_spikes=layer_spikes)


def build_fcnet(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> FCNet:
    """Registry builder of :class:`FCNet` (``options``: the keys of :class:`FCNetOptions`)."""
    return FCNet(dataclass_from_dict(FCNetOptions, options, "model"), input_shape, num_classes)


def build_recurrent_fcnet(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> RecurrentFCNet:
    """Registry builder of :class:`RecurrentFCNet` (``options``: the keys of :class:`RecurrentFCNetOptions`)."""
    return RecurrentFCNet(dataclass_from_dict(RecurrentFCNetOptions, options, "model"), input_shape, num_classes)


build_fcnet.options_class = FCNetOptions  # type: ignore[attr-defined]
build_recurrent_fcnet.options_class = RecurrentFCNetOptions  # type: ignore[attr-defined]
