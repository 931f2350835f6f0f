"""CuLIF and PCuLIF: the SpikingJelly modules (registered as ``culif``, ``pculif``, ``pculif_neuron``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sjframe.neurons.base import NeuronOutput, SJNeuron, feature_shape
from sjframe.neurons.culif.config import CuLIFConfig
from sjframe.neurons.culif.fused import fused_culif
from sjframe.neurons.culif.kernel import run_culif
from sjframe.neurons.culif.reference import CuLIFState, culif_multi_step
from sjframe.neurons.params import check_tau, decay, inverse_sigmoid_decay
from sjframe.neurons.registry import register_neuron

__all__ = ["CuLIF", "PCuLIF"]


@register_neuron("culif", CuLIFConfig)
class CuLIF(SJNeuron):
    """Current-based LIF with fixed decays ``lam = exp(-1/tau_m)``, ``gam = exp(-1/tau_s)``.

    Args:
        tau_m: membrane time constant in steps (> 0).
        tau_s: synaptic time constant in steps (> 0).
        (others: see :class:`~sjframe.neurons.base.SJNeuron`)
    """

    state_names = ("v", "i")

    def __init__(self, tau_m: float = 5.0, tau_s: float = 5.0, theta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(theta=theta, **kwargs)
        self.tau_m = check_tau(tau_m, "tau_m")
        self.tau_s = check_tau(tau_s, "tau_s")

    @classmethod
    def from_config(cls, config: CuLIFConfig, shape: int | tuple[int, ...], **common: Any) -> CuLIF:
        return cls(tau_m=config.tau_m_steps, tau_s=config.tau_s_steps, theta=config.theta, **common)

    def decays(self) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        return decay(self.tau_m), decay(self.tau_s)

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        lam, gam = self.decays()
        if self.uses_kernels(x_seq):
            return run_culif(x_seq, CuLIFState(*states), lam, gam, self.theta, self.surrogate, self.detach_reset,
                             self.gradient)
        if self.uses_fused_torch:
            return fused_culif(x_seq, CuLIFState(*states), lam, gam, self.theta, self.effective_surrogate)
        return culif_multi_step(x_seq, CuLIFState(*states), lam, gam, self.theta, self.spike_fn(), self.detach_reset)

    def extra_repr(self) -> str:
        return f"tau_m={self.tau_m} steps, tau_s={self.tau_s} steps, " + super().extra_repr()


@register_neuron("pculif", CuLIFConfig, per_neuron=False)
@register_neuron("pculif_neuron", CuLIFConfig, per_neuron=True)
class PCuLIF(CuLIF):
    """Parametric CuLIF: ``lam = sigmoid(w_m)``, ``gam = sigmoid(w_s)`` trainable.

    Raw parameters start at ``-log(exp(1/tau) - 1)`` so that ``sigmoid`` gives ``exp(-1/tau)``
    (any ``tau > 0`` works numerically; the spec's use is ``tau > 1``). Registered twice:
    ``pculif`` (one decay pair per layer) and ``pculif_neuron`` (one per neuron).

    Args:
        per_neuron: one decay pair per neuron (needs ``num_neurons``) instead of one per layer.
        num_neurons: feature shape ``F`` of the layer (int or tuple), for ``per_neuron``.
    """

    def __init__(
        self,
        tau_m: float = 5.0,
        tau_s: float = 5.0,
        theta: float = 1.0,
        per_neuron: bool = False,
        num_neurons: int | tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau_m=tau_m, tau_s=tau_s, theta=theta, **kwargs)
        shape = feature_shape(num_neurons, "PCuLIF(per_neuron=True)") if per_neuron else ()
        self.per_neuron = per_neuron
        self.w_m = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_m)))
        self.w_s = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_s)))

    @classmethod
    def from_config(cls, config: CuLIFConfig, shape: int | tuple[int, ...], **common: Any) -> PCuLIF:
        return cls(tau_m=config.tau_m_steps, tau_s=config.tau_s_steps, theta=config.theta, num_neurons=shape,
                   **common)

    def decays(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.w_m), torch.sigmoid(self.w_s)

    def clamp_decays(self, low: float, high: float) -> None:
        """Clamp both trainable decays ``sigmoid(w_m), sigmoid(w_s)`` to ``[low, high]``."""
        lo, hi = math.log(low / (1.0 - low)), math.log(high / (1.0 - high))
        with torch.no_grad():
            self.w_m.clamp_(lo, hi)
            self.w_s.clamp_(lo, hi)

    def extra_repr(self) -> str:
        return f"per_neuron={self.per_neuron}, " + super().extra_repr()
