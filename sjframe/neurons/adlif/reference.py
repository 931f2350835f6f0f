"""Autograd reference of AdLIF (the torch backend's reference loop, checked by ``gradcheck``).

Shape convention: see :mod:`sjframe.neurons.base` (``x_seq [T, B, *F]``, states ``[B, *F]``).
Returns ``NeuronOutput(spike_seq, state_last, h_seq)``.

AdLIF (``alpha, beta`` in (0, 1), ``a, b`` in [0, 1], all per neuron)::

    h_t = alpha * v_{t-1} + (1 - alpha) * (x_t - w_{t-1})
    s_t = H(h_t - theta);  v_t = h_t * (1 - s_t)
    w_t = beta * w_{t-1} + a * h_{t-1} + b * s_{t-1}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from sjframe.neurons.base import NeuronOutput, check_input, check_state, zero_states

__all__ = ["AdLIFState", "adlif_multi_step"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
Scalar = float | torch.Tensor


class AdLIFState(NamedTuple):
    """AdLIF state: ``v`` (post reset), adaptation ``w``, and the last pre-reset ``h`` and spike ``s``."""

    v: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    s: torch.Tensor


def adlif_multi_step(
    x_seq: torch.Tensor,
    state: AdLIFState | None,
    alpha: Scalar,
    beta: Scalar,
    a: Scalar,
    b: Scalar,
    theta: float,
    spike_fn: SpikeFn,
    detach_reset: bool = True,
) -> NeuronOutput:
    """AdLIF with per-neuron ``alpha, beta`` (decays) and ``a, b`` (adaptation couplings)."""
    check_input(x_seq)
    v, w, h_prev, s_prev = zero_states(x_seq, 4) if state is None else state
    check_state((v, w, h_prev, s_prev), x_seq[0], ("v", "w", "h", "s"))
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = alpha * v + (1.0 - alpha) * (x_seq[t] - w)
        w = beta * w + a * h_prev + b * s_prev
        s = spike_fn(h - theta)
        v = h * (1.0 - (s.detach() if detach_reset else s))
        h_prev, s_prev = h, s
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), AdLIFState(v, w, h_prev, s_prev), torch.stack(hs))
