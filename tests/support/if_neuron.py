"""A test-only neuron, added the way a user adds one: a plain integrate-and-fire (IF) neuron.

Everything a new neuron needs on the torch backend is in this one module (in ``sjframe/neurons/``
it would be one folder with these parts as ``reference.py``, ``module.py``, ``config.py``); no
file of ``sjframe/`` names it. Importing the module registers it as ``"if"``.

IF (no leak, hard reset to 0, reset detached by default)::

    h_t = v_{t-1} + x_t
    s_t = H(h_t - theta)
    v_t = h_t (1 - s_t)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from sjframe.neurons import NeuronConfig, NeuronOutput, SJNeuron, register_neuron
from sjframe.neurons.base import check_input, check_state

__all__ = ["IF", "IFConfig", "IFState", "if_multi_step"]


# ------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class IFConfig(NeuronConfig):
    """IF group config: the common keys (``theta``, surrogate, gradient) and a gain on the input.

    Attributes:
        gain: input scale (> 0; 1 = the plain IF neuron).
    """

    gain: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.gain > 0:
            raise ValueError(f"gain must be > 0, got {self.gain!r}")


# ------------------------------------------------------------------------------ reference
class IFState(NamedTuple):
    """IF state: the post-reset potential ``v``."""

    v: torch.Tensor


def if_multi_step(x_seq: torch.Tensor, state: IFState | None, gain: float, theta: float,
                  spike_fn: Callable[[torch.Tensor], torch.Tensor], detach_reset: bool = True) -> NeuronOutput:
    """The IF recurrence over ``x_seq [T, B, *F]`` (autograd through ``spike_fn``)."""
    check_input(x_seq)
    (v,) = (torch.zeros_like(x_seq[0]),) if state is None else state
    check_state((v,), x_seq[0], ("v",))
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = v + gain * x_seq[t]
        s = spike_fn(h - theta)
        v = h * (1.0 - (s.detach() if detach_reset else s))
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), IFState(v), torch.stack(hs))


# ------------------------------------------------------------------------------ module
@register_neuron("if", IFConfig)
class IF(SJNeuron):
    """Integrate-and-fire layer (torch backend only: it has no kernel)."""

    state_names = ("v",)

    def __init__(self, gain: float = 1.0, theta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(theta=theta, **kwargs)
        self.gain = float(gain)

    @classmethod
    def from_config(cls, config: IFConfig, shape: int | tuple[int, ...], **common: Any) -> IF:
        return cls(gain=config.gain, theta=config.theta, **common)

    def supported_backends(self) -> tuple[str, ...]:
        return ("torch",)

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        if self.backend != "torch":
            raise ValueError(f"IF has no {self.backend!r} backend (no kernel); use backend='torch'")
        return if_multi_step(x_seq, IFState(*states), self.gain, self.theta, self.spike_fn(), self.detach_reset)
