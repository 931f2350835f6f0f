"""Analytic first-spike times of current-based LIF neurons and their exact gradients.

Units: time in units of the synaptic time constant ``tau_s = 1``; leak potential ``E_l = 0``;
threshold ``theta`` (1 by default). Each output neuron ``n`` gets the input spikes
``t_i`` (``[B, I]``, ``+inf`` = no input spike) through weights ``w_in`` (``[I, N]``); an input spike
starts an exponentially decaying current, and before the neuron's first spike its potential is

    V_n(t) = sum_{i: t_i < t} w_in kappa(t - t_i).

Two neurons have closed-form spike times (``neuron``):

* ``"tau_equal"`` (``tau_m = tau_s``, ``g_l = 1``): ``kappa(s) = s e^{-s}``. With ``a = sum w_i e^{t_i}``
  and ``b = sum w_i t_i e^{t_i}`` over a candidate causal set, ``V(T) = theta`` gives
  ``T = b/a - W0(z)``, ``z = -(theta / a) e^{b/a}``; ``z < -1/e`` (or ``a <= 0``) means no crossing.
* ``"tau_double"`` (``tau_m = 2 tau_s``, ``g_l = 1/2``): ``kappa(s) = e^{-s/2} - e^{-s}`` and threshold
  ``g_l theta``. With ``a1 = sum w_i e^{t_i}``, ``a2 = sum w_i e^{t_i / 2}``,
  ``T = 2 ln(2 a1 / (a2 + sqrt(a2^2 - 4 a1 g_l theta)))``; a negative discriminant (or
  ``a1 <= 0``, or ``a2 + sqrt(.) <= 0``) means no crossing.

Causal-set search: the inputs are sorted by time per sample; for each prefix ``C_k`` (the first
``k`` inputs) the candidate ``T_k`` is kept only if ``t_(k) <= T_k <= t_(k+1)`` (``t_(I+1) = inf``); the
spike time is the minimum over valid candidates, ``+inf`` when there is none (silent neuron). All
prefixes of all samples and neurons are computed at once with cumulative sums (``[B, I, N]``), no
Python loop over samples. The candidate with ``a <= 0`` (resp. ``a1 <= 0``) is only ever a downward
crossing (the potential was above threshold earlier, so an earlier candidate wins), hence skipped.
Sums are formed relative to a per-sample reference time (``e^{t_i - t_ref}``) so that nothing
overflows; the spike times are invariant under that shift.

Gradients (implicit function theorem on ``V(T) = theta`` for the causal set ``C``)::

    Vdot = sum_{i in C} w_i kappa'(T - t_i)
    dT/dw_i = -kappa(T - t_i) / Vdot,        dT/dt_i = w_i kappa'(T - t_i) / Vdot,

zero for non-causal inputs and silent outputs. For ``tau_equal`` these are the spec's
``dT/dw_i = -(1/a) (1/(1+W)) e^{t_i} (T - t_i)`` and ``dT/dt_i = -(1/a) (1/(1+W)) w_i e^{t_i} (T - t_i - 1)``.
Per-sample gradient clipping (``max_dw_norm``): the weight gradient of output neuron ``n`` from
sample ``b`` is dropped when ``max_i |dL/dw_in|`` (that sample's share, before summing over the
batch) exceeds the limit; the error propagated to the input times is not clipped.
"""

from __future__ import annotations

import math

import torch

from sjframe.methods.exact_time.lambertw import lambertw0

__all__ = ["NEURONS", "spike_times", "spike_times_reference", "kappa", "kappa_dot"]

NEURONS = ("tau_equal", "tau_double")


def kappa(s: torch.Tensor, neuron: str) -> torch.Tensor:
    """PSP kernel ``kappa(s)`` (potential per unit weight ``s`` after an input spike, ``s >= 0``)."""
    if neuron == "tau_equal":
        return s * torch.exp(-s)
    return torch.exp(-0.5 * s) - torch.exp(-s)


def kappa_dot(s: torch.Tensor, neuron: str) -> torch.Tensor:
    """Time derivative ``kappa'(s)`` of the PSP kernel."""
    if neuron == "tau_equal":
        return (1.0 - s) * torch.exp(-s)
    return torch.exp(-s) - 0.5 * torch.exp(-0.5 * s)


def _threshold(neuron: str, theta: float) -> float:
    """The right-hand side of ``sum w kappa = .``: ``g_l theta`` (``g_l = 1`` or ``1/2``)."""
    return theta if neuron == "tau_equal" else 0.5 * theta


def _prefix_sums(t_in: torch.Tensor, w: torch.Tensor, neuron: str) -> dict[str, torch.Tensor]:
    """Inputs sorted per sample and the cumulative sums of every prefix (all ``[B, I, N]`` or ``[B, I]``).

    Times are taken relative to ``ref`` = each sample's latest finite input time (``u = t - ref <= 0``),
    so ``e^u <= 1`` never overflows. ``tau_equal``: ``a = cumsum w e^u``, ``b = cumsum w u e^u``;
    ``tau_double``: ``a = cumsum w e^u`` (a1), ``b = cumsum w e^{u/2}`` (a2).
    """
    t_sorted, order = torch.sort(t_in, dim=1, stable=True)  # +inf last; stable: same order as backward
    finite = torch.isfinite(t_sorted)  # [B, I]
    w_sorted = w[order]  # [B, I, N]
    ref = torch.where(finite, t_sorted, torch.full_like(t_sorted, -math.inf)).amax(dim=1, keepdim=True)
    ref = torch.where(torch.isfinite(ref), ref, torch.zeros_like(ref))  # [B, 1]
    u = torch.where(finite, t_sorted - ref, torch.zeros_like(t_sorted))  # [B, I], <= 0
    zero = torch.zeros((), dtype=t_in.dtype, device=t_in.device)
    e = torch.where(finite, torch.exp(u), zero)
    a = torch.cumsum(w_sorted * e.unsqueeze(-1), dim=1)
    if neuron == "tau_equal":
        b = torch.cumsum(w_sorted * (u * e).unsqueeze(-1), dim=1)
    else:
        b = torch.cumsum(w_sorted * torch.where(finite, torch.exp(0.5 * u), zero).unsqueeze(-1), dim=1)
    u_next = torch.cat([u[:, 1:], torch.full_like(u[:, :1], math.inf)], dim=1)
    u_next = torch.where(torch.cat([finite[:, 1:], torch.zeros_like(finite[:, :1])], dim=1), u_next,
                         torch.full_like(u_next, math.inf))
    return {"t_sorted": t_sorted, "finite": finite, "ref": ref, "u": u, "u_next": u_next, "a": a, "b": b}


def _closed_form(a: torch.Tensor, b: torch.Tensor, neuron: str, rhs: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Threshold-crossing time ``u`` (relative to ``ref``) of the prefix sums ``a, b`` and its existence mask."""
    if neuron == "tau_equal":
        ok = a > 0
        a_safe = torch.where(ok, a, torch.ones_like(a))
        ratio = b / a_safe
        log_neg_z = math.log(rhs) - torch.log(a_safe) + ratio  # ln(-z); z >= -1/e  <=>  ln(-z) <= -1
        ok = ok & (log_neg_z <= -1.0)
        z = -torch.exp(torch.clamp(log_neg_z, max=-1.0))  # in [-1/e, 0): W0 defined, never NaN
        return ratio - lambertw0(z), ok
    disc = b * b - 4.0 * a * rhs
    den = b + torch.sqrt(torch.clamp(disc, min=0.0))
    ok = (a > 0) & (disc >= 0) & (den > 0)
    arg = torch.where(ok, 2.0 * a / torch.where(ok, den, torch.ones_like(den)), torch.ones_like(den))
    return 2.0 * torch.log(arg), ok


@torch.no_grad()
def _search_candidates(t_in: torch.Tensor, w: torch.Tensor, neuron: str, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The spec's search: candidate ``T_k`` for every prefix, keep ``t_(k) <= T_k <= t_(k+1)``, take the minimum.

    Returns spike times ``[B, N]`` and causal-set sizes ``[B, N]`` (0 = silent). Evaluates the closed
    form ``I`` times per neuron; :func:`_search` gives the same result with one evaluation.
    """
    p = _prefix_sums(t_in, w, neuron)
    u, ok = _closed_form(p["a"], p["b"], neuron, _threshold(neuron, theta))
    ok = ok & p["finite"].unsqueeze(-1) & (u >= p["u"].unsqueeze(-1)) & (u <= p["u_next"].unsqueeze(-1))
    cand = torch.where(ok, u, torch.full_like(u, math.inf))
    u_min, k = cand.min(dim=1)  # [B, N]
    spiked = torch.isfinite(u_min)
    times = torch.where(spiked, p["ref"] + u_min, torch.full_like(u_min, math.inf))
    return times, torch.where(spiked, k + 1, torch.zeros_like(k))


@torch.no_grad()
def _search(t_in: torch.Tensor, w: torch.Tensor, neuron: str, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal-set search. Returns spike times ``[B, N]`` and the causal-set size ``[B, N]`` (long, 0 = silent).

    The potential of prefix ``C_k`` is unimodal in time when ``a > 0`` (``tau_equal``: peak at
    ``u* = 1 + b/a``; ``tau_double``: at ``u* = -2 ln(a2 / (2 a1))``, needs ``a2 > 0``) and has no
    upward crossing otherwise. The spike falls in the first window ``[t_(k), t_(k+1)]`` whose
    maximum of ``V_k`` (at ``u*`` clamped into the window) reaches the threshold; the closed form is
    evaluated only there (``[B, N]`` entries instead of ``[B, I, N]``), and the result is clamped
    into that window against rounding. Equal to :func:`_search_candidates` (checked in the tests).
    """
    p = _prefix_sums(t_in, w, neuron)
    a, b, u0, u1 = p["a"], p["b"], p["u"].unsqueeze(-1), p["u_next"].unsqueeze(-1)
    rhs = _threshold(neuron, theta)
    if neuron == "tau_equal":
        pos = a > 0
        peak = 1.0 + b / torch.where(pos, a, torch.ones_like(a))
    else:
        pos = (a > 0) & (b > 0)
        peak = -2.0 * torch.log(torch.where(pos, b / (2.0 * torch.where(pos, a, torch.ones_like(a))), torch.ones_like(a)))
    uc = torch.minimum(torch.maximum(peak, u0), u1)
    uc = torch.where(torch.isfinite(uc), uc, u0)
    if neuron == "tau_equal":
        v_max = torch.exp(-uc) * (a * uc - b)
    else:
        x = torch.exp(-0.5 * uc)
        v_max = x * (b - a * x)
    crossing = pos & p["finite"].unsqueeze(-1) & (v_max >= rhs)  # [B, I, N]
    n_in = crossing.shape[1]
    k = (~crossing).cumprod(dim=1).sum(dim=1)  # windows before the first crossing = its index; n_in: none
    spiked = k < n_in  # [B, N]
    k = torch.clamp(k, max=n_in - 1)
    kk = k.unsqueeze(1)
    a_k = a.gather(1, kk).squeeze(1)
    b_k = b.gather(1, kk).squeeze(1)
    one = torch.ones_like(a_k)
    u, _ = _closed_form(torch.where(spiked, a_k, one), torch.where(spiked, b_k, one), neuron, rhs)  # safe dummies
    lo = p["u"].gather(1, k)
    hi = p["u_next"].gather(1, k)
    u = torch.minimum(torch.maximum(u, lo), hi)
    times = torch.where(spiked, p["ref"] + u, torch.full_like(u, math.inf))
    return times, torch.where(spiked, k + 1, torch.zeros_like(k))


class _SpikeTimes(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t_in, w, neuron, theta, max_dw_norm):  # type: ignore[override]
        times, size = _search(t_in, w, neuron, theta)
        ctx.neuron = neuron
        ctx.max_dw_norm = max_dw_norm
        ctx.save_for_backward(t_in, w, times, size)
        return times

    @staticmethod
    def backward(ctx, grad_times):  # type: ignore[override]
        t_in, w, times, size = ctx.saved_tensors
        # rank of every input in its sample's time order; causal iff rank < size of the causal set
        order = torch.argsort(t_in, dim=1, stable=True)
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(t_in.shape[1], device=t_in.device).expand_as(order))
        spiked = size > 0  # [B, N]
        causal = (rank.unsqueeze(-1) < size.unsqueeze(1)) & spiked.unsqueeze(1)  # [B, I, N]
        s = times.unsqueeze(1) - t_in.unsqueeze(-1)
        s = torch.where(causal, s, torch.zeros_like(s))
        zero = torch.zeros((), dtype=t_in.dtype, device=t_in.device)
        k = torch.where(causal, kappa(s, ctx.neuron), zero)
        kd = torch.where(causal, kappa_dot(s, ctx.neuron), zero)
        vdot = (w.unsqueeze(0) * kd).sum(dim=1)  # [B, N]
        ok = spiked & (vdot != 0)
        g = torch.where(ok, grad_times / torch.where(ok, vdot, torch.ones_like(vdot)), zero)  # dL/dT / Vdot
        grad_t = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_t = (w.unsqueeze(0) * kd * g.unsqueeze(1)).sum(dim=2)
        if ctx.needs_input_grad[1]:
            per_sample = -k * g.unsqueeze(1)  # [B, I, N]
            if ctx.max_dw_norm is not None:
                too_big = per_sample.abs().amax(dim=1) > ctx.max_dw_norm  # [B, N]
                per_sample = torch.where(too_big.unsqueeze(1), zero, per_sample)
            grad_w = per_sample.sum(dim=0)
        return grad_t, grad_w, None, None, None


def _check(t_in: torch.Tensor, w: torch.Tensor, neuron: str, theta: float, max_dw_norm: float | None) -> None:
    if not isinstance(t_in, torch.Tensor) or t_in.dim() != 2:
        raise ValueError(f"t_in must be a [B, I] tensor of input spike times, got {getattr(t_in, 'shape', t_in)!r}")
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError(f"w must be a [I, N] weight tensor, got {getattr(w, 'shape', w)!r}")
    if t_in.shape[1] != w.shape[0]:
        raise ValueError(f"t_in has {t_in.shape[1]} inputs but w has {w.shape[0]} rows "
                         f"(t_in {tuple(t_in.shape)}, w {tuple(w.shape)})")
    if not t_in.is_floating_point() or t_in.dtype != w.dtype:
        raise ValueError(f"t_in and w must share one floating dtype, got {t_in.dtype} and {w.dtype}")
    if t_in.device != w.device:
        raise ValueError(f"t_in and w must be on one device, got {t_in.device} and {w.device}")
    if neuron not in NEURONS:
        raise ValueError(f"neuron must be one of {NEURONS}, got {neuron!r}")
    if not (isinstance(theta, (int, float)) and theta > 0):
        raise ValueError(f"theta must be a positive number, got {theta!r}")
    if max_dw_norm is not None and not max_dw_norm > 0:
        raise ValueError(f"max_dw_norm must be positive or None, got {max_dw_norm!r}")
    if torch.isnan(t_in).any() or torch.isneginf(t_in).any():
        raise ValueError("t_in contains NaN or -inf (use +inf for 'no input spike')")
    if not torch.isfinite(w).all():
        raise ValueError("w contains NaN or inf")


def spike_times(
    t_in: torch.Tensor,
    w: torch.Tensor,
    neuron: str = "tau_equal",
    theta: float = 1.0,
    max_dw_norm: float | None = None,
) -> torch.Tensor:
    """First output spike times ``[B, N]`` (``+inf`` = silent) of a layer with weights ``w [I, N]``.

    ``t_in [B, I]`` are the input spike times (``+inf`` = no spike). Differentiable in ``t_in`` and
    ``w`` with the exact gradients of the module docstring; ``max_dw_norm`` enables per-sample
    weight-gradient clipping (``None``: exact gradient).
    """
    _check(t_in, w, neuron, theta, max_dw_norm)
    return _SpikeTimes.apply(t_in, w, neuron, float(theta), max_dw_norm)


def spike_times_reference(
    t_in: torch.Tensor, w: torch.Tensor, neuron: str = "tau_equal", theta: float = 1.0, dt: float = 1e-4,
    t_max: float = 10.0,
) -> torch.Tensor:
    """Brute-force reference: the first time on the grid ``0, dt, ..., t_max`` where ``V >= threshold``.

    ``V(t) = sum_{t_i <= t} w_in kappa(t - t_i)`` evaluated directly (for tests; ``[B, N]``, ``+inf`` silent).
    A grid point is only accurate to ``dt``; the exact time is bracketed by the crossing step.
    """
    _check(t_in, w, neuron, theta, None)
    grid = torch.arange(0.0, t_max + dt / 2, dt, dtype=t_in.dtype, device=t_in.device)  # [G]
    out = torch.full((t_in.shape[0], w.shape[1]), math.inf, dtype=t_in.dtype, device=t_in.device)
    rhs = _threshold(neuron, theta)
    for b in range(t_in.shape[0]):
        s = grid.unsqueeze(0) - t_in[b].unsqueeze(1)  # [I, G]
        active = s >= 0
        k = torch.where(active, kappa(torch.where(active, s, torch.zeros_like(s)), neuron), torch.zeros_like(s))
        v = w.t() @ k  # [N, G]
        above = v >= rhs
        none = torch.full_like(above[:, 0], -1, dtype=torch.long)
        first = torch.where(above.any(dim=1), above.float().argmax(dim=1), none)
        out[b] = torch.where(first >= 0, grid[first.clamp(min=0)], torch.full_like(out[b], math.inf))
    return out
