"""Helpers shared by the fused torch paths of the neurons (``<neuron>/fused.py``).

A fused path runs the forward loop without an autograd graph and a hand-written backward (BPTT),
computing exactly the same forward and the same gradients as the neuron's autograd reference
(reset detached, surrogate from the layer's :class:`~sjframe.spike.surrogate.Surrogate`), the way
the CUDA kernels do: the forward saves the pre-reset potentials ``h_seq`` (spikes are recomputed
from them), the backward runs in reverse time carrying the adjoints. Surrogate values are evaluated
for all steps at once, so the time loops hold only a few elementwise operations per step. It is
what ``backend='torch'`` runs when the reset is detached and the gradient mode is ``dense`` or
``sparse``.

Shapes: ``x_seq [T, B, *F]``; states ``[B, *F]``; parameters scalar tensors or shape ``F``.
"""

from __future__ import annotations

import torch

from sjframe.spike.surrogate import Surrogate

__all__ = ["as_tensor", "axpy", "grad_or_zero", "reduce_to", "scalar_or_tensor", "shift", "source_step"]


def as_tensor(p: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return p if isinstance(p, torch.Tensor) else torch.tensor(p, dtype=like.dtype, device=like.device)


def reduce_to(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Sum a ``[..., *F]`` gradient down to the parameter's shape (scalar or ``F``)."""
    if param.dim() == 0:
        return grad.sum().reshape(())
    return grad.reshape(-1, *param.shape).sum(0)


def shift(seq: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """``[first, seq_0, ..., seq_{T-2}]``: the previous-step values."""
    return torch.cat([first.unsqueeze(0), seq[:-1]])


def grad_or_zero(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def scalar_or_tensor(p: torch.Tensor) -> float | torch.Tensor:
    """A Python float for a constant scalar parameter (cheaper ``alpha=`` kernels), else the tensor.

    Under ``torch.compile`` the tensor is kept: ``.item()`` would break the graph there, and the
    tensor forms (``lerp`` / ``addcmul`` with a 0-d weight) compute the same values. A parameter on
    an accelerator is kept as well: ``.item()`` would wait for the device on every call.
    """
    if p.dim() == 0 and not p.requires_grad and p.device.type == "cpu" and not torch.compiler.is_compiling():
        return p.item()
    return p


def axpy(a: float | torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``a * x + y`` in one kernel (``a`` a float or a broadcastable tensor)."""
    return torch.add(y, x, alpha=a) if isinstance(a, float) else torch.addcmul(y, x, a)


def source_step(gs: torch.Tensor | None, gh: torch.Tensor | None, h_seq: torch.Tensor, t: int, theta: float,
                 sur: Surrogate) -> torch.Tensor:
    """``gs_t g(h_t - theta) + gh_t`` at one step (a new tensor)."""
    if gs is None:
        return torch.zeros_like(h_seq[t]) if gh is None else gh[t].clone()
    c = gs[t] * sur.derivative(h_seq[t] - theta)
    return c if gh is None else c.add_(gh[t])
