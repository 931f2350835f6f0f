"""LIF (S3GD / LocalZO) through the CUDA kernel ``cupy_neurons/lif.cu``
(``backend='cupy'`` on CUDA tensors, ``backend='cpu'`` on CPU tensors)."""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.base import NeuronOutput, run_kernel
from sjframe.neurons.lif.reference import LIFState
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import Surrogate

__all__ = ["run_lif"]


def run_lif(x_seq: torch.Tensor, state: LIFState | None, beta: Any, theta: float, surrogate: Surrogate | None,
            detach_reset: bool = True, gradient: GradientSpec | None = None,
            generator: torch.Generator | None = None) -> NeuronOutput:
    """LIF through the kernels (see ``lif.cu``); arguments as :func:`sjframe.neurons.culif.kernel.run_culif`.

    Returns ``NeuronOutput(spikes, LIFState(h, x) [B, *F], h_seq)``; the state is a copy of the last
    step of ``h_seq`` and of ``x_seq``.
    """
    spikes, _, h_seq = run_kernel("lif", x_seq, state, {"beta": beta}, theta, surrogate, detach_reset, gradient,
                                  generator)
    return NeuronOutput(spikes, LIFState(h_seq[-1].clone(), x_seq[-1].clone()), h_seq)
