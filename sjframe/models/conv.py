"""Convolutional spiking nets of the first-spike-coding paper for DVSGesture and DVSPlane.

Input ``x [T, B, 2, H, W]`` (event counts of the two polarities). Every conv is bias-free and
followed by a feature neuron (``neuron_type``, ``neuron1``); every 2x2 max-pool is followed by one
more feature neuron; the FC layers use the decision neurons (``output_neuron_type``, ``neuron2``);
the hidden FC layer is recurrent, ``y_t = neuron(W x_t + R y_{t-1})``.

* **DVSGesture** ``[2, 32, 32]``: Conv3x3 2->64 -> Conv3x3 64->128 -> MaxPool2 -> Conv3x3 128->128
  -> MaxPool2 -> FC 8192->128 (recurrent) -> FC 128->10.
* **DVSPlane** ``[2, 60, 76]``: Conv5x5/s2/p2 2->32 -> Conv3x3 32->64 -> MaxPool2 -> Conv3x3 64->128
  -> MaxPool2 -> FC 8064->256 (recurrent) -> FC 256->4.

The flattened size is computed from ``input_shape``; ``channels`` and ``hidden_sizes`` are
options (the defaults are the paper's). Layer names in ``ModelOutput.layer_spikes``: ``conv1``,
``conv2``, ``pool1``, ``conv3``, ``pool2``, ``fc1`` ..., ``output``. Weights are Xavier-uniform.
"""

from __future__ import annotations

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
from sjframe.models.fcnet import check_input

__all__ = [
    "ConvNetOptions",
    "ConvSNN",
    "DVSGestureOptions",
    "DVSPlaneOptions",
    "build_dvsgesture_net",
    "build_dvsplane_net",
]


@dataclass(frozen=True)
class ConvNetOptions(SpikingOptions):
    """Options of the conv nets (plus the shared :class:`SpikingOptions`).

    Attributes:
        channels: output channels of conv1, conv2, conv3.
        hidden_sizes: sizes of the hidden FC layers (the paper: one recurrent layer).
        recurrent: whether the hidden FC layers are recurrent.
        dropout: dropout after each hidden FC layer (mask fixed across time; 0 = none).
    """

    channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    hidden_sizes: list[int] = field(default_factory=lambda: [128])
    recurrent: bool = True
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channels) != 3 or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be 3 positive integers, got {self.channels!r}")
        if any(n < 1 for n in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive, got {self.hidden_sizes!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class DVSGestureOptions(ConvNetOptions):
    """DVSGesture net options (paper defaults)."""


@dataclass(frozen=True)
class DVSPlaneOptions(ConvNetOptions):
    """DVSPlane net options (paper defaults: channels 32/64/128, one recurrent FC of 256)."""

    channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    hidden_sizes: list[int] = field(default_factory=lambda: [256])


def _conv_out(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


class ConvSNN(nn.Module):
    """Conv1(k1, s1) -> Conv2 -> Pool -> Conv3 -> Pool -> hidden FC(s) -> output FC (see the module docstring).

    Args:
        opts: :class:`ConvNetOptions`.
        input_shape: ``(2, H, W)``.
        num_classes: output size.
        first_kernel: ``(kernel, stride, padding)`` of conv1 (``(3, 1, 1)`` DVSGesture, ``(5, 2, 2)`` DVSPlane).
    """

    def __init__(
        self, opts: ConvNetOptions, input_shape: tuple[int, ...], num_classes: int, first_kernel: tuple[int, int, int]
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W) for a conv net, got {input_shape!r}")
        self.opts = opts
        self.input_shape = tuple(input_shape)
        c_in, h, w = self.input_shape
        k, s, p = first_kernel
        c1, c2, c3 = opts.channels
        # (name, stateless op, output feature shape)
        h1, w1 = _conv_out(h, k, s, p), _conv_out(w, k, s, p)
        h2, w2 = h1 // 2, w1 // 2
        h3, w3 = h2 // 2, w2 // 2
        if min(h3, w3) < 1:
            raise ValueError(f"input_shape {input_shape!r} is too small for this conv net (pooled to {h3}x{w3})")
        stages: list[tuple[str, nn.Module, tuple[int, int, int]]] = [
            ("conv1", nn.Conv2d(c_in, c1, k, stride=s, padding=p, bias=False), (c1, h1, w1)),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1, bias=False), (c2, h1, w1)),
            ("pool1", nn.MaxPool2d(2), (c2, h2, w2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1, bias=False), (c3, h2, w2)),
            ("pool2", nn.MaxPool2d(2), (c3, h3, w3)),
        ]
        self.stage_names = [name for name, _, _ in stages]
        self.ops = nn.ModuleList([op for _, op, _ in stages])
        self.stage_neurons = nn.ModuleList(
            [make_layer_neuron(opts, name, shape, decision=False) for name, _, shape in stages]
        )
        n_in = c3 * h3 * w3
        self.fc_layers = nn.ModuleList()
        self.drops = nn.ModuleList()
        for i, n in enumerate(opts.hidden_sizes):
            name = f"fc{i + 1}"
            if opts.recurrent:
                neuron = make_layer_neuron(opts, name, n, decision=True, step_mode="s")
                self.fc_layers.append(RecurrentSpikingLinear(n_in, n, neuron))
            else:
                self.fc_layers.append(_FeedForwardSpikingLinear(n_in, n, make_layer_neuron(opts, name, n, decision=True)))
            self.drops.append(TimeFixedDropout(opts.dropout))
            n_in = n
        self.out_fc = nn.Linear(n_in, num_classes, bias=False)
        self.out_neuron = make_layer_neuron(opts, "output", num_classes, decision=True, store_h_seq=True)
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        check_input(x, self.input_shape, type(self).__name__)
        layer_spikes: dict[str, torch.Tensor] = {}
        for name, op, neuron in zip(self.stage_names, self.ops, self.stage_neurons):
            x = neuron(seq_apply(op, x))
            layer_spikes[name] = x
        x = x.flatten(2)
        for i, (layer, drop) in enumerate(zip(self.fc_layers, self.drops)):
            s = layer(x)
            layer_spikes[f"fc{i + 1}"] = s
            x = drop(s)
        s_out = self.out_neuron(seq_apply(self.out_fc, x))
        layer_spikes["output"] = s_out
        return ModelOutput(spikes=s_out, h=self.out_neuron.h_seq, layer_spikes=layer_spikes)


class _FeedForwardSpikingLinear(nn.Module):
    """``y = neuron(W x)`` over all steps (the non-recurrent FC option)."""

    def __init__(self, in_features: int, out_features: int, neuron: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features, bias=False)
        self.neuron = neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(seq_apply(self.fc, x))


def build_dvsgesture_net(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> ConvSNN:
    """Registry builder of the DVSGesture net (``options``: the keys of :class:`DVSGestureOptions`)."""
    return ConvSNN(dataclass_from_dict(DVSGestureOptions, options, "model"), input_shape, num_classes, (3, 1, 1))


def build_dvsplane_net(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> ConvSNN:
    """Registry builder of the DVSPlane net (``options``: the keys of :class:`DVSPlaneOptions`)."""
    return ConvSNN(dataclass_from_dict(DVSPlaneOptions, options, "model"), input_shape, num_classes, (5, 2, 2))


build_dvsgesture_net.options_class = DVSGestureOptions  # type: ignore[attr-defined]
build_dvsplane_net.options_class = DVSPlaneOptions  # type: ignore[attr-defined]
