"""Fused torch path of LIF (S3GD / LocalZO): forward without an autograd graph, hand-written backward.

Same results as the autograd reference :mod:`sjframe.neurons.lif.reference` (see
:mod:`sjframe.neurons.fused_common`).

LIF backward (``dh_n``, ``dI_n`` the adjoints of step ``t + 1``)::

    dI_t = gam dI_n + (1 - lam) dh_n            dx_t = dI_t
    dh_t = lam dh_n (1 - s_t) + gs_t g(h_t - theta) + gh_t
    dlam = sum_t (v_{t-1} - I_{t-1}) dh_t       dgam = sum_t I_{t-1} dI_t

AdLIF backward (``dw_t`` the adjoint of ``w_t``)::

    dw_t = (alpha - 1) dh_n + beta dw_n
    dh_t = alpha dh_n (1 - s_t) + (gs_t + b dw_n) g(h_t - theta) + a dw_n + gh_t
    dx_t = (1 - alpha) dh_t
    dalpha = sum (v_{t-1} - x_t + w_{t-1}) dh_t; dbeta = sum w_{t-1} dw_t; da = sum h_{t-1} dw_t;
    db = sum s_{t-1} dw_t

LIF backward::

    dh_t = beta dh_n + gs_t g(h_t - theta) + gh_t;  dx_{t-1} = dh_t;  dbeta = sum h_{t-1} dh_t
"""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.base import NeuronOutput, check_input, check_state
from sjframe.neurons.fused_common import as_tensor, axpy, grad_or_zero, reduce_to, scalar_or_tensor, shift, source_step
from sjframe.neurons.lif.reference import LIFState
from sjframe.spike.surrogate import Surrogate

__all__ = ["fused_lif"]


class _LIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, h0: torch.Tensor, x0: torch.Tensor, beta: torch.Tensor,
                theta: float, surrogate: Surrogate) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        T = x_seq.shape[0]
        b = scalar_or_tensor(beta)
        h_seq = torch.empty_like(x_seq)
        spikes = torch.empty_like(x_seq)
        h, x_prev = h0, x0
        s = (h0 >= theta).to(x_seq.dtype)
        for t in range(T):
            h = axpy(b, h, x_prev)  # beta h + x_{t-1} - theta s_{t-1}
            h.sub_(s, alpha=theta)
            h_seq[t] = h
            s = spikes[t]
            s.copy_(h >= theta)
            x_prev = x_seq[t]
        ctx.save_for_backward(h_seq, h0, beta)
        ctx.theta, ctx.surrogate = theta, surrogate
        return spikes, h_seq, h, x_seq[T - 1].clone()

    @staticmethod
    def backward(ctx: Any, gs: torch.Tensor | None, gh: torch.Tensor | None, gh_last: torch.Tensor | None,
                 gx_last: torch.Tensor | None) -> tuple[Any, ...]:
        h_seq, h0, beta = ctx.saved_tensors
        theta, sur = ctx.theta, ctx.surrogate
        T = h_seq.shape[0]
        b = scalar_or_tensor(beta)
        need_beta = ctx.needs_input_grad[3]
        dh_seq = torch.empty_like(h_seq) if need_beta else None
        dx = torch.empty_like(h_seq)  # x_t enters h_{t+1}: dx_t = dh_{t+1}
        dx[T - 1] = grad_or_zero(gx_last, h_seq[0])  # the last input is carried in the state
        dh = None
        for t in range(T - 1, -1, -1):
            c = source_step(gs, gh, h_seq, t, theta, sur)
            if t == T - 1:
                dh = c if gh_last is None else c.add_(gh_last)
            else:
                dh = axpy(b, dh, c)
            if t > 0:
                dx[t - 1] = dh
            if dh_seq is not None:
                dh_seq[t] = dh
        dh0 = beta * dh
        dx0 = dh
        dbeta = reduce_to(shift(h_seq, h0) * dh_seq, beta) if need_beta else None
        return dx, dh0, dx0, dbeta, None, None


def fused_lif(x_seq: torch.Tensor, state: LIFState | None, beta: float | torch.Tensor, theta: float,
              surrogate: Surrogate) -> NeuronOutput:
    """LIF (S3GD / LocalZO) with the reset detached; same results as :func:`lif_multi_step`."""
    check_input(x_seq)
    if state is None:
        state = LIFState(torch.zeros_like(x_seq[0]), torch.zeros_like(x_seq[0]))
    check_state(tuple(state), x_seq[0], ("h", "x"))
    spikes, h_seq, h, x_last = _LIF.apply(x_seq, state.h, state.x, as_tensor(beta, x_seq), float(theta), surrogate)
    return NeuronOutput(spikes, LIFState(h, x_last), h_seq)
