"""LIF of S3GD / LocalZO: the SpikingJelly module (registered as ``lif``)."""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.base import NeuronOutput, SJNeuron
from sjframe.neurons.lif.config import LIFConfig
from sjframe.neurons.lif.fused import fused_lif
from sjframe.neurons.lif.kernel import run_lif
from sjframe.neurons.lif.reference import LIFState, lif_multi_step
from sjframe.neurons.params import check_tau, decay
from sjframe.neurons.registry import register_neuron

__all__ = ["LIF"]


@register_neuron("lif", LIFConfig)
class LIF(SJNeuron):
    """LIF of S3GD / LocalZO: ``beta = exp(-1/tau_m)``, subtractive reset, one-step lag.

    Args:
        tau_m: membrane time constant in steps (``beta = exp(-dt / tau_mem)`` with tau_mem in ms
            is ``tau_m = tau_mem / dt`` steps).
    """

    state_names = ("h", "x")

    def __init__(self, tau_m: float = 10.0, theta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(theta=theta, **kwargs)
        self.tau_m = check_tau(tau_m, "tau_m")

    @classmethod
    def from_config(cls, config: LIFConfig, shape: int | tuple[int, ...], **common: Any) -> LIF:
        return cls(tau_m=config.tau_m_steps, theta=config.theta, **common)

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        beta = decay(self.tau_m)
        if self.uses_kernels(x_seq):
            return run_lif(x_seq, LIFState(*states), beta, self.theta, self.surrogate, self.detach_reset,
                           self.gradient)
        if self.uses_fused_torch:
            return fused_lif(x_seq, LIFState(*states), beta, self.theta, self.effective_surrogate)
        return lif_multi_step(x_seq, LIFState(*states), beta, self.theta, self.spike_fn(), self.detach_reset)

    def extra_repr(self) -> str:
        return f"tau_m={self.tau_m} steps, " + super().extra_repr()
