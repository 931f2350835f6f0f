"""Fused torch path of CuLIF / PCuLIF: forward without an autograd graph, hand-written backward.

Same results as the autograd reference :mod:`sjframe.neurons.culif.reference` (see
:mod:`sjframe.neurons.fused_common`).

CuLIF backward (``dh_n``, ``dI_n`` the adjoints of step ``t + 1``)::

    dI_t = gam dI_n + (1 - lam) dh_n            dx_t = dI_t
    dh_t = lam dh_n (1 - s_t) + gs_t g(h_t - theta) + gh_t
    dlam = sum_t (v_{t-1} - I_{t-1}) dh_t       dgam = sum_t I_{t-1} dI_t
"""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.base import NeuronOutput, check_input, check_state
from sjframe.neurons.culif.reference import CuLIFState
from sjframe.neurons.fused_common import as_tensor, axpy, grad_or_zero, reduce_to, scalar_or_tensor, shift, source_step
from sjframe.spike.surrogate import Surrogate

__all__ = ["fused_culif"]


class _CuLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, i0: torch.Tensor, lam: torch.Tensor,
                gam: torch.Tensor, theta: float, surrogate: Surrogate) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        need_params = ctx.needs_input_grad[3] or ctx.needs_input_grad[4]
        lm, gm = scalar_or_tensor(lam), scalar_or_tensor(gam)
        T = x_seq.shape[0]
        h_seq = torch.empty_like(x_seq)
        spikes = torch.empty_like(x_seq)
        i_seq = torch.empty_like(x_seq) if need_params else None
        v, cur = v0, i0
        for t in range(T):
            h = torch.lerp(cur, v, lm, out=h_seq[t])  # lam * v + (1 - lam) * I
            cur = axpy(gm, cur, x_seq[t])  # gam * I + x_t
            if i_seq is not None:
                i_seq[t] = cur
            fired = h >= theta
            spikes[t] = fired
            v = h.masked_fill(fired, 0.0)
        ctx.save_for_backward(h_seq, i_seq, v0, i0, lam, gam)
        ctx.theta, ctx.surrogate = theta, surrogate
        return spikes, h_seq, v, cur

    @staticmethod
    def backward(ctx: Any, gs: torch.Tensor | None, gh: torch.Tensor | None, gv: torch.Tensor | None,
                 gi: torch.Tensor | None) -> tuple[Any, ...]:
        h_seq, i_seq, v0, i0, lam, gam = ctx.saved_tensors
        theta, sur = ctx.theta, ctx.surrogate
        lm, gm = scalar_or_tensor(lam), scalar_or_tensor(gam)
        T = h_seq.shape[0]
        need_params = i_seq is not None
        dx = torch.empty_like(h_seq)
        dh_seq = torch.empty_like(h_seq) if need_params else None
        dh = None
        di = grad_or_zero(gi, h_seq[0])
        for t in range(T - 1, -1, -1):
            if t == T - 1:
                dv = gv
            else:
                di = axpy(gm, di, (1.0 - lm) * dh)  # gam dI_{t+1} + (1 - lam) dh_{t+1}
                dv = lm * dh
            dh = source_step(gs, gh, h_seq, t, theta, sur)
            if dv is not None:
                dh = dh + dv * (h_seq[t] < theta)
            dx[t] = di
            if dh_seq is not None:
                dh_seq[t] = dh
        dv0 = lm * dh
        di0 = axpy(gm, dx[0], (1.0 - lm) * dh)
        dlam = dgam = None
        if need_params:
            v_prev = shift(h_seq.masked_fill(h_seq >= theta, 0.0), v0)
            i_prev = shift(i_seq, i0)
            if ctx.needs_input_grad[3]:
                dlam = reduce_to((v_prev - i_prev) * dh_seq, lam)
            if ctx.needs_input_grad[4]:
                dgam = reduce_to(i_prev * dx, gam)
        return dx, dv0, di0, dlam, dgam, None, None


def fused_culif(x_seq: torch.Tensor, state: CuLIFState | None, lam: float | torch.Tensor,
                gam: float | torch.Tensor, theta: float, surrogate: Surrogate) -> NeuronOutput:
    """CuLIF / PCuLIF with the reset detached; same results as :func:`culif_multi_step`."""
    check_input(x_seq)
    if state is None:
        state = CuLIFState(torch.zeros_like(x_seq[0]), torch.zeros_like(x_seq[0]))
    check_state(tuple(state), x_seq[0], ("v", "I"))
    spikes, h_seq, v, cur = _CuLIF.apply(x_seq, state.v, state.i, as_tensor(lam, x_seq), as_tensor(gam, x_seq),
                                          float(theta), surrogate)
    return NeuronOutput(spikes, CuLIFState(v, cur), h_seq)
