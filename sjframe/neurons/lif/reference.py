"""Autograd reference of LIF (S3GD / LocalZO) (the torch backend's reference loop, checked by ``gradcheck``).

Shape convention: see :mod:`sjframe.neurons.base` (``x_seq [T, B, *F]``, states ``[B, *F]``).
Returns ``NeuronOutput(spike_seq, state_last, h_seq)``.

LIF of S3GD / LocalZO (``beta = exp(-1/tau_m)``; subtractive reset; one-step lag)::

    h_t = beta * h_{t-1} + x_{t-1} - theta * s_{t-1}
    s_t = H(h_t - theta)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from sjframe.neurons.base import NeuronOutput, check_input, check_state, zero_states

__all__ = ["LIFState", "lif_multi_step"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
Scalar = float | torch.Tensor


class LIFState(NamedTuple):
    """LIF state: last pre-reset potential ``h`` (spike recomputed from it) and last input ``x``."""

    h: torch.Tensor
    x: torch.Tensor


def lif_multi_step(
    x_seq: torch.Tensor,
    state: LIFState | None,
    beta: Scalar,
    theta: float,
    spike_fn: SpikeFn,
    detach_reset: bool = True,
) -> NeuronOutput:
    """LIF of S3GD / LocalZO: subtractive reset by ``theta``, output lags input by one step."""
    check_input(x_seq)
    h, x_prev = zero_states(x_seq, 2) if state is None else state
    check_state((h, x_prev), x_seq[0], ("h", "x"))
    s = (h >= theta).to(h.dtype)  # spike of the carried state (constant: not differentiated)
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = beta * h + x_prev - theta * (s.detach() if detach_reset else s)
        s = spike_fn(h - theta)
        x_prev = x_seq[t]
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), LIFState(h, x_prev), torch.stack(hs))
