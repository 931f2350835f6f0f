"""Fused torch path of AdLIF: forward without an autograd graph, hand-written backward.

Same results as the autograd reference :mod:`sjframe.neurons.adlif.reference` (see
:mod:`sjframe.neurons.fused_common`).

Ad
"""

from __future__ import annotations

from typing import Any

import torch

from sjframe.neurons.adlif.reference import AdLIFState
from sjframe.neurons.base import NeuronOutput, check_input, check_state
from sjframe.neurons.fused_common import as_tensor, reduce_to, shift
from sjframe.spike.surrogate import Surrogate

__all__ = ["fused_adlif"]


class _AdLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, w0: torch.Tensor, h0: torch.Tensor,
                s0: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                theta: float, surrogate: Surrogate) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        T = x_seq.shape[0]
        h_seq = torch.empty_like(x_seq)
        w_seq = torch.empty_like(x_seq)  # w_t (used by h_{t+1})
        spikes = torch.empty_like(x_seq)
        v, w, h_prev, s_prev = v0, w0, h0, s0
        for t in range(T):
            h = torch.lerp(x_seq[t] - w, v, alpha, out=h_seq[t])  # alpha v + (1 - alpha)(x - w)
            w = torch.addcmul(torch.addcmul(beta * w, a, h_prev), b, s_prev, out=w_seq[t])
            s = spikes[t]
            s.copy_(h >= theta)
            v = h.masked_fill(s.bool(), 0.0)
            h_prev, s_prev = h, s
        ctx.save_for_backward(x_seq, h_seq, w_seq, v0, w0, h0, s0, alpha, beta, a, b)
        ctx.theta, ctx.surrogate = theta, surrogate
        return spikes, h_seq, v, w.clone(), h_prev.clone(), s_prev.clone()

    @staticmethod
    def backward(ctx: Any, gs: torch.Tensor | None, gh: torch.Tensor | None, gv: torch.Tensor | None,
                 gw: torch.Tensor | None, gh_last: torch.Tensor | None, gs_last: torch.Tensor | None) -> tuple[Any, ...]:
        x_seq, h_seq, w_seq, v0, w0, h0, s0, alpha, beta, a, b = ctx.saved_tensors
        theta, sur = ctx.theta, ctx.surrogate
        T = h_seq.shape[0]
        dh_seq = torch.empty_like(h_seq)
        dw_seq = torch.empty_like(h_seq)
        dh_n = torch.zeros_like(h_seq[0])
        dw_n = torch.zeros_like(h_seq[0])
        am1 = alpha - 1.0
        for t in range(T - 1, -1, -1):
            last = t == T - 1
            dw = torch.addcmul(beta * dw_n, am1, dh_n)  # (alpha - 1) dh_{t+1} + beta dw_{t+1}
            dv = alpha * dh_n
            ds = b * dw_n if gs is None else torch.addcmul(gs[t], b, dw_n)  # total dL/ds_t
            if last:
                dw = dw if gw is None else dw + gw
                dv = dv if gv is None else dv + gv
                ds = ds if gs_last is None else ds + gs_last
            u = h_seq[t] - theta
            dh = dv * (u < 0) + ds * sur.derivative(u) + a * dw_n
            if gh is not None:
                dh += gh[t]
            if last and gh_last is not None:
                dh += gh_last
            dh_seq[t], dw_seq[t] = dh, dw
            dh_n, dw_n = dh, dw
        dx = (1.0 - alpha) * dh_seq
        dv0 = alpha * dh_seq[0]
        dw0 = am1 * dh_seq[0] + beta * dw_seq[0]
        dh0 = a * dw_seq[0]
        ds0 = b * dw_seq[0]
        grads: list[torch.Tensor | None] = [None, None, None, None]
        if any(ctx.needs_input_grad[5:9]):
            fired = h_seq >= theta
            v_prev = shift(h_seq.masked_fill(fired, 0.0), v0)
            w_prev = shift(w_seq, w0)
            h_prev = shift(h_seq, h0)
            s_prev = shift(fired.to(h_seq.dtype), s0)
            terms = [lambda: (v_prev - x_seq + w_prev) * dh_seq, lambda: w_prev * dw_seq,
                     lambda: h_prev * dw_seq, lambda: s_prev * dw_seq]
            for k, (term, p) in enumerate(zip(terms, (alpha, beta, a, b))):
                if ctx.needs_input_grad[5 + k]:
                    grads[k] = reduce_to(term(), p)
        return (dx, dv0, dw0, dh0, ds0, *grads, None, None)


def fused_adlif(x_seq: torch.Tensor, state: AdLIFState | None, alpha: torch.Tensor, beta: torch.Tensor,
                a: torch.Tensor, b: torch.Tensor, theta: float, surrogate: Surrogate) -> NeuronOutput:
    """AdLIF with the reset detached; same results as :func:`adlif_multi_step`."""
    check_input(x_seq)
    if state is None:
        state = AdLIFState(*(torch.zeros_like(x_seq[0]) for _ in range(4)))
    check_state(tuple(state), x_seq[0], ("v", "w", "h", "s"))
    params = [as_tensor(p, x_seq) for p in (alpha, beta, a, b)]
    spikes, h_seq, v, w, h, s = _AdLIF.apply(x_seq, *state, *params, float(theta), surrogate)
    return NeuronOutput(spikes, AdLIFState(v, w, h, s), h_seq)
