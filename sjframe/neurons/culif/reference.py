"""Autograd reference of CuLIF / PCuLIF (the torch backend's reference loop, checked by ``gradcheck``).

Shape convention: see :mod:`sjframe.neurons.base` (``x_seq [T, B, *F]``, states ``[B, *F]``).
Returns ``NeuronOutput(spike_seq, state_last, h_seq)``.

CuLIF / PCuLIF (``lam = exp(-1/tau_m)``, ``gam = exp(-1/tau_s)`` or trainable)::

    h_t = lam * v_{t-1} + (1 - lam) * I_{t-1}
    I_t = gam * I_{t-1} + x_t
    s_t = H(h_t - theta)
    v_t = h_t * (1 - s_t)                 # hard reset to 0 (s detached if detach_reset)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from sjframe.neurons.base import NeuronOutput, check_input, check_state, zero_states

__all__ = ["CuLIFState", "culif_multi_step"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
Scalar = float | torch.Tensor


class CuLIFState(NamedTuple):
    """CuLIF / PCuLIF state after a step: post-reset potential ``v`` and synaptic current ``I``."""

    v: torch.Tensor
    i: torch.Tensor


def culif_multi_step(
    x_seq: torch.Tensor,
    state: CuLIFState | None,
    lam: Scalar,
    gam: Scalar,
    theta: float,
    spike_fn: SpikeFn,
    detach_reset: bool = True,
) -> NeuronOutput:
    """CuLIF (fixed ``lam, gam``) or PCuLIF (``lam, gam`` tensors, scalar or per neuron)."""
    check_input(x_seq)
    v, cur = zero_states(x_seq, 2) if state is None else state
    check_state((v, cur), x_seq[0], ("v", "I"))
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = lam * v + (1.0 - lam) * cur
        cur = gam * cur + x_seq[t]
        s = spike_fn(h - theta)
        v = h * (1.0 - (s.detach() if detach_reset else s))
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), CuLIFState(v, cur), torch.stack(hs))
