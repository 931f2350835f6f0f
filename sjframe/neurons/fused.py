"""Fused torch backend: forward loop without an autograd graph, hand-written backward (BPTT).

The autograd loops of :mod:`sjframe.neurons.functional` are the reference (checked by
``gradcheck``). This module computes exactly the same forward and the same gradients (reset
detached, surrogate from the layer's :class:`~sjframe.spike.surrogate.Surrogate`) with the recurrences
of spec/first-spike-coding.md section 1, the way the CUDA kernels do: the forward saves the
pre-reset potentials ``h_seq`` (spikes are recomputed from them), the backward runs in reverse
time carrying the adjoints. Surrogate values are evaluated for all steps at once, so the time
loops hold only a few elementwise operations per step. It is what ``backend='torch'`` runs when
the reset is detached and the gradient mode is ``dense`` or ``sparse``.

Shapes: ``x_seq [T, B, *F]``; states ``[B, *F]``; parameters scalar tensors or shape ``F``.

CuLIF backward (``dh_n``, ``dI_n`` the adjoints of step ``t + 1``)::

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

from sjframe.neurons.functional import AdLIFState, CuLIFState, LIFState, NeuronOutput, _check_input, _check_state
from sjframe.spike.surrogate import Surrogate

__all__ = ["fused_adlif", "fused_culif", "fused_lif"]


def _as_tensor(p: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return p if isinstance(p, torch.Tensor) else torch.tensor(p, dtype=like.dtype, device=like.device)


def _reduce_to(grad: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """Sum a ``[..., *F]`` gradient down to the parameter's shape (scalar or ``F``)."""
    if param.dim() == 0:
        return grad.sum().reshape(())
    return grad.reshape(-1, *param.shape).sum(0)


def _shift(seq: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """``[first, seq_0, ..., seq_{T-2}]``: the previous-step values."""
    return torch.cat([first.unsqueeze(0), seq[:-1]])


def _grad_or_zero(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g


def _scalar_or_tensor(p: torch.Tensor) -> float | torch.Tensor:
    """A Python float for a constant scalar parameter (cheaper ``alpha=`` kernels), else the tensor.

    Under ``torch.compile`` the tensor is kept: ``.item()`` would break the graph there, and the
    tensor forms (``lerp`` / ``addcmul`` with a 0-d weight) compute the same values. A parameter on
    an accelerator is kept as well: ``.item()`` would wait for the device on every call.
    """
    if p.dim() == 0 and not p.requires_grad and p.device.type == "cpu" and not torch.compiler.is_compiling():
        return p.item()
    return p


def _axpy(a: float | torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``a * x + y`` in one kernel (``a`` a float or a broadcastable tensor)."""
    return torch.add(y, x, alpha=a) if isinstance(a, float) else torch.addcmul(y, x, a)


def _source_step(gs: torch.Tensor | None, gh: torch.Tensor | None, h_seq: torch.Tensor, t: int, theta: float,
                 sur: Surrogate) -> torch.Tensor:
    """``gs_t g(h_t - theta) + gh_t`` at one step (a new tensor)."""
    if gs is None:
        return torch.zeros_like(h_seq[t]) if gh is None else gh[t].clone()
    c = gs[t] * sur.derivative(h_seq[t] - theta)
    return c if gh is None else c.add_(gh[t])


# ---------------------------------------------------------------------------------------- CuLIF
class _CuLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, v0: torch.Tensor, i0: torch.Tensor, lam: torch.Tensor,
                gam: torch.Tensor, theta: float, surrogate: Surrogate) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        need_params = ctx.needs_input_grad[3] or ctx.needs_input_grad[4]
        lm, gm = _scalar_or_tensor(lam), _scalar_or_tensor(gam)
        T = x_seq.shape[0]
        h_seq = torch.empty_like(x_seq)
        spikes = torch.empty_like(x_seq)
        i_seq = torch.empty_like(x_seq) if need_params else None
        v, cur = v0, i0
        for t in range(T):
            h = torch.lerp(cur, v, lm, out=h_seq[t])  # lam * v + (1 - lam) * I
            cur = _axpy(gm, cur, x_seq[t])  # gam * I + x_t
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
        lm, gm = _scalar_or_tensor(lam), _scalar_or_tensor(gam)
        T = h_seq.shape[0]
        need_params = i_seq is not None
        dx = torch.empty_like(h_seq)
        dh_seq = torch.empty_like(h_seq) if need_params else None
        dh = None
        di = _grad_or_zero(gi, h_seq[0])
        for t in range(T - 1, -1, -1):
            if t == T - 1:
                dv = gv
            else:
                di = _axpy(gm, di, (1.0 - lm) * dh)  # gam dI_{t+1} + (1 - lam) dh_{t+1}
                dv = lm * dh
            dh = _source_step(gs, gh, h_seq, t, theta, sur)
            if dv is not None:
                dh = dh + dv * (h_seq[t] < theta)
            dx[t] = di
            if dh_seq is not None:
                dh_seq[t] = dh
        dv0 = lm * dh
        di0 = _axpy(gm, dx[0], (1.0 - lm) * dh)
        dlam = dgam = None
        if need_params:
            v_prev = _shift(h_seq.masked_fill(h_seq >= theta, 0.0), v0)
            i_prev = _shift(i_seq, i0)
            if ctx.needs_input_grad[3]:
                dlam = _reduce_to((v_prev - i_prev) * dh_seq, lam)
            if ctx.needs_input_grad[4]:
                dgam = _reduce_to(i_prev * dx, gam)
        return dx, dv0, di0, dlam, dgam, None, None


def fused_culif(x_seq: torch.Tensor, state: CuLIFState | None, lam: float | torch.Tensor,
                gam: float | torch.Tensor, theta: float, surrogate: Surrogate) -> NeuronOutput:
    """CuLIF / PCuLIF with the reset detached; same results as :func:`culif_multi_step`."""
    _check_input(x_seq)
    if state is None:
        state = CuLIFState(torch.zeros_like(x_seq[0]), torch.zeros_like(x_seq[0]))
    _check_state(tuple(state), x_seq[0], ("v", "I"))
    spikes, h_seq, v, cur = _CuLIF.apply(x_seq, state.v, state.i, _as_tensor(lam, x_seq), _as_tensor(gam, x_seq),
                                          float(theta), surrogate)
    return NeuronOutput(spikes, CuLIFState(v, cur), h_seq)


# ---------------------------------------------------------------------------------------- AdLIF
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
            v_prev = _shift(h_seq.masked_fill(fired, 0.0), v0)
            w_prev = _shift(w_seq, w0)
            h_prev = _shift(h_seq, h0)
            s_prev = _shift(fired.to(h_seq.dtype), s0)
            terms = [lambda: (v_prev - x_seq + w_prev) * dh_seq, lambda: w_prev * dw_seq,
                     lambda: h_prev * dw_seq, lambda: s_prev * dw_seq]
            for k, (term, p) in enumerate(zip(terms, (alpha, beta, a, b))):
                if ctx.needs_input_grad[5 + k]:
                    grads[k] = _reduce_to(term(), p)
        return (dx, dv0, dw0, dh0, ds0, *grads, None, None)


def fused_adlif(x_seq: torch.Tensor, state: AdLIFState | None, alpha: torch.Tensor, beta: torch.Tensor,
                a: torch.Tensor, b: torch.Tensor, theta: float, surrogate: Surrogate) -> NeuronOutput:
    """AdLIF with the reset detached; same results as :func:`adlif_multi_step`."""
    _check_input(x_seq)
    if state is None:
        state = AdLIFState(*(torch.zeros_like(x_seq[0]) for _ in range(4)))
    _check_state(tuple(state), x_seq[0], ("v", "w", "h", "s"))
    params = [_as_tensor(p, x_seq) for p in (alpha, beta, a, b)]
    spikes, h_seq, v, w, h, s = _AdLIF.apply(x_seq, *state, *params, float(theta), surrogate)
    return NeuronOutput(spikes, AdLIFState(v, w, h, s), h_seq)


# ---------------------------------------------------------------------------------------- LIF
class _LIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x_seq: torch.Tensor, h0: torch.Tensor, x0: torch.Tensor, beta: torch.Tensor,
                theta: float, surrogate: Surrogate) -> tuple[torch.Tensor, ...]:
        ctx.set_materialize_grads(False)
        T = x_seq.shape[0]
        b = _scalar_or_tensor(beta)
        h_seq = torch.empty_like(x_seq)
        spikes = torch.empty_like(x_seq)
        h, x_prev = h0, x0
        s = (h0 >= theta).to(x_seq.dtype)
        for t in range(T):
            h = _axpy(b, h, x_prev)  # beta h + x_{t-1} - theta s_{t-1}
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
        b = _scalar_or_tensor(beta)
        need_beta = ctx.needs_input_grad[3]
        dh_seq = torch.empty_like(h_seq) if need_beta else None
        dx = torch.empty_like(h_seq)  # x_t enters h_{t+1}: dx_t = dh_{t+1}
        dx[T - 1] = _grad_or_zero(gx_last, h_seq[0])  # the last input is carried in the state
        dh = None
        for t in range(T - 1, -1, -1):
            c = _source_step(gs, gh, h_seq, t, theta, sur)
            if t == T - 1:
                dh = c if gh_last is None else c.add_(gh_last)
            else:
                dh = _axpy(b, dh, c)
            if t > 0:
                dx[t - 1] = dh
            if dh_seq is not None:
                dh_seq[t] = dh
        dh0 = beta * dh
        dx0 = dh
        dbeta = _reduce_to(_shift(h_seq, h0) * dh_seq, beta) if need_beta else None
        return dx, dh0, dx0, dbeta, None, None


def fused_lif(x_seq: torch.Tensor, state: LIFState | None, beta: float | torch.Tensor, theta: float,
              surrogate: Surrogate) -> NeuronOutput:
    """LIF (S3GD / LocalZO) with the reset detached; same results as :func:`lif_multi_step`."""
    _check_input(x_seq)
    if state is None:
        state = LIFState(torch.zeros_like(x_seq[0]), torch.zeros_like(x_seq[0]))
    _check_state(tuple(state), x_seq[0], ("h", "x"))
    spikes, h_seq, h, x_last = _LIF.apply(x_seq, state.h, state.x, _as_tensor(beta, x_seq), float(theta), surrogate)
    return NeuronOutput(spikes, LIFState(h, x_last), h_seq)
