"""AdLIF through the CUDA kernel ``cupy_neurons/adlif.cu``
(``backend='cupy'`` on CUDA tensors, ``backend='cpu'`` on CPU tensors)."""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.adlif.reference import AdLIFState
from sjframe.neurons.base import NeuronOutput, run_kernel
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import Surrogate

__all__ = ["run_adlif"]


def run_adlif(x_seq: torch.Tensor, state: AdLIFState | None, alpha: Any, beta: Any, a: Any, b: Any, theta: float,
              surrogate: Surrogate | None, detach_reset: bool = True, gradient: GradientSpec | None = None,
              generator: torch.Generator | None = None) -> NeuronOutput:
    """AdLIF through the kernels (see ``adlif.cu``); arguments as :func:`sjframe.neurons.culif.kernel.run_culif`.

    Returns ``NeuronOutput(spikes, AdLIFState(v, w, h, s) [B, *F], h_seq)``; the state's ``h`` and
    ``s`` are copies of the last step of ``h_seq`` and ``spikes``.
    """
    spikes, (v, w), h_seq = run_kernel("adlif", x_seq, state, {"alpha": alpha, "beta": beta, "a": a, "b": b}, theta,
                                       surrogate, detach_reset, gradient, generator)
    return NeuronOutput(spikes, AdLIFState(v, w, h_seq[-1].clone(), spikes[-1].clone()), h_seq)
