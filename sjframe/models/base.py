"""The common output of every sjframe model.

Every model's ``forward(x)`` takes a time-major input ``x [T, B, ...]`` and returns a
:class:`ModelOutput`. Spiking readouts fill ``spikes`` and ``h``; non-spiking readouts (e.g. the
S3GD/LocalZO reference net) fill ``logits``. ``layer_spikes`` maps a layer name to that layer's
spikes ``[T, B, ...]`` for every hidden and output spiking layer (used for spike counts N_s).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["ModelOutput"]


@dataclass
class ModelOutput:
    """Outputs of one forward pass.

    Attributes:
        spikes: output spikes ``[T, B, C]`` (0/1), or ``None`` for a non-spiking readout.
        h: output pre-reset membrane potential ``[T, B, C]``, or ``None``.
        logits: ``[B, C]`` class scores of a non-spiking readout, or ``None``.
        layer_spikes: layer name -> spikes ``[T, B, ...]`` of every hidden and output spiking layer,
            in forward order.
    """

    spikes: Tensor | None = None
    h: Tensor | None = None
    logits: Tensor | None = None
    layer_spikes: dict[str, Tensor] = field(default_factory=dict)
