"""CuLIF / PCuLIF through the CUDA kernel ``cupy_neurons/culif.cu``
(``backend='cupy'`` on CUDA tensors, ``backend='cpu'`` on CPU tensors)."""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.base import NeuronOutput, run_kernel
from sjframe.neurons.culif.reference import CuLIFState
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import Surrogate

__all__ = ["run_culif"]


def run_culif(x_seq: torch.Tensor, state: CuLIFState | None, lam: Any, gam: Any, theta: float,
              surrogate: Surrogate | None, detach_reset: bool = True, gradient: GradientSpec | None = None,
              generator: torch.Generator | None = None) -> NeuronOutput:
    """CuLIF / PCuLIF through the kernels (see ``culif.cu`` for the equations); the arguments of
    :func:`~sjframe.neurons.culif.reference.culif_multi_step` with the surrogate and gradient mode
    instead of a spike function (:func:`sjframe.neurons.base.run_kernel`).

    Returns ``NeuronOutput(spikes [T, B, *F], CuLIFState(v, I) [B, *F], h_seq [T, B, *F])``.
    """
    spikes, (v, i), h_seq = run_kernel("culif", x_seq, state, {"lam": lam, "gam": gam}, theta, surrogate,
                                       detach_reset, gradient, generator)
    return NeuronOutput(spikes, CuLIFState(v, i), h_seq)
