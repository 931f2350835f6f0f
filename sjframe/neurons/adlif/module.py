"""AdLIF: the SpikingJelly module (registered as ``adlif``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from sjframe.neurons.adlif.config import AdLIFConfig
from sjframe.neurons.adlif.fused import fused_adlif
from sjframe.neurons.adlif.kernel import run_adlif
from sjframe.neurons.adlif.reference import AdLIFState, adlif_multi_step
from sjframe.neurons.base import NeuronOutput, SJNeuron, feature_shape
from sjframe.neurons.params import check_tau, inverse_sigmoid_decay
from sjframe.neurons.registry import register_neuron

__all__ = ["AdLIF"]


@register_neuron("adlif", AdLIFConfig)
class AdLIF(SJNeuron):
    """Adaptive LIF with per-neuron trainable ``alpha, beta`` (decays) and ``a, b`` in [0, 1].

    Args:
        num_neurons: feature shape ``F`` (int or tuple).
        tau_m: membrane time constant in steps: ``alpha = sigmoid(w_m)`` starts at ``exp(-1/tau_m)``.
        tau_w: adaptation time constant in steps (default 100): ``beta`` starts at ``exp(-1/tau_w)``.
        a, b: initialised U(0, 1); clamped to [0, 1] before every forward (in place, no gradient).
    """

    state_names = ("v", "w", "h", "s")

    def __init__(
        self,
        num_neurons: int | tuple[int, ...] | None = None,
        tau_m: float = 5.0,
        tau_w: float = 100.0,
        theta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(theta=theta, **kwargs)
        shape = feature_shape(num_neurons, "AdLIF")
        self.tau_m = check_tau(tau_m, "tau_m")
        self.tau_w = check_tau(tau_w, "tau_w")
        self.w_m = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_m)))
        self.w_w = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_w)))
        self.a = nn.Parameter(torch.rand(shape))
        self.b = nn.Parameter(torch.rand(shape))

    @classmethod
    def from_config(cls, config: AdLIFConfig, shape: int | tuple[int, ...], **common: Any) -> AdLIF:
        return cls(num_neurons=shape, tau_m=config.tau_m_steps, tau_w=config.tau_w_steps, theta=config.theta, **common)

    def clamp_parameters(self) -> None:
        """Keep ``a, b`` in [0, 1] (the original clamps before every forward).

        Only writes when a value is out of range, so that repeated single-step calls within one
        sequence (recurrent layers) do not modify parameters already saved by autograd.
        """
        with torch.no_grad():
            for p in (self.a, self.b):
                low, high = torch.aminmax(p)  # one reduction instead of two comparisons and two any()
                if not (low.item() >= 0.0 and high.item() <= 1.0):  # NaN: clamp_ (keeps NaN, clamps the rest)
                    p.clamp_(0.0, 1.0)

    def clamp_decays(self, low: float, high: float) -> None:
        """Clamp the trainable membrane decay ``alpha = sigmoid(w_m)`` to ``[low, high]``."""
        with torch.no_grad():
            self.w_m.clamp_(math.log(low / (1.0 - low)), math.log(high / (1.0 - high)))

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        self.clamp_parameters()
        alpha, beta = torch.sigmoid(self.w_m), torch.sigmoid(self.w_w)
        if self.uses_kernels(x_seq):
            return run_adlif(x_seq, AdLIFState(*states), alpha, beta, self.a, self.b, self.theta, self.surrogate,
                             self.detach_reset, self.gradient)
        if self.uses_fused_torch:
            return fused_adlif(x_seq, AdLIFState(*states), alpha, beta, self.a, self.b, self.theta,
                               self.effective_surrogate)
        return adlif_multi_step(
            x_seq, AdLIFState(*states), alpha, beta, self.a, self.b, self.theta, self.spike_fn(), self.detach_reset
        )

    def extra_repr(self) -> str:
        return f"tau_m={self.tau_m} steps (init), tau_w={self.tau_w} steps (init), " + super().extra_repr()
