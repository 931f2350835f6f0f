"""The spike-to-time (first-spike) encoder of FS coding and its Gaussian-window backward.

Given the output spikes ``S [T_in, B, N]`` (0/1) and the output layer's pre-reset membrane
potential ``U [T_in, B, N]`` (``h_seq``), time-major, the encoder builds, per sample ``b``:

* a rank of the neurons by their maximum potential, ``r_n = 1 + #{m : max_t U_m > max_t U_n}``
  (ties broken by neuron index: the lower index gets the better rank);
* a rank of the steps of each neuron by potential, descending, ``q_tau = 0, 1, ...`` (ties broken
  by time: the earlier step gets the lower ``q``);
* the encoded times (time is 1-based, ``tau = 1 .. T_in``)::

      t[n, tau] = tau                            if S[tau, n] = 1
                = T_in + r_n + 0.01 * q_tau      otherwise

* the first-spike time ``t_F[n] = min_tau t[n, tau]``: the first spike step of a neuron that
  spikes, ``T_in + r_n`` for a silent neuron (it falls back on its maximum potential).

``q`` never changes ``t_F`` (a silent neuron's minimum is always its ``q = 0`` step, and the
backward spreads a silent neuron's gradient over all steps anyway); :func:`encoded_times` builds
the whole tensor for inspection and tests, :func:`first_spike_times` only what ``t_F`` needs.

Backward (:class:`FirstSpikeTime`), for ``G = dL/dt_F [B, N]``:

1. backward of the min: ``dL/dt[n, tau] = G[n]`` at the first spike step of a spiking neuron (its
   argmin) and 0 elsewhere; for a silent neuron ``G[n]`` is copied to all ``T_in`` steps;
2. backward of the encoder: ``dL/dS[:, n] = conv1d_same(-A * dL/dt[n, :], g)`` along time, with
   the Gaussian window ``g[k] = c * exp(-(k - (W - 1) / 2)^2 / (2 sigma^2))``, ``k = 0 .. W - 1``,
   ``sigma = T_in // D`` and ``W = min(6 sigma + 1, 2 (T_in // 2) + 1)`` (odd), zero padding
   ``(W - 1) / 2`` at both ends.

``window="peak"`` (default) takes ``c = 1`` (a window of peak 1: the original code's choice, the
one the published hyper-parameters ``A`` were tuned with); ``window="normalised"`` takes the
paper's factor ``c = 1 / (2 pi sigma)`` (note: the paper's factor, not the unit-area
``1 / (sqrt(2 pi) sigma)``). The potential ``U`` gets no gradient.

``sigma = T_in // D`` must be at least 1: a window ``T_in < D`` raises ``ValueError`` when a
gradient is needed (the forward alone, e.g. at evaluation on any window, works for every ``T_in``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "WINDOWS",
    "FirstSpikeTime",
    "encoded_times",
    "first_spike_times",
    "first_spike_times_nograd",
    "gaussian_window",
    "neuron_ranks",
]

WINDOWS = ("peak", "normalised")


def _check_pair(spikes: Tensor, h: Tensor) -> None:
    if not isinstance(spikes, Tensor) or not isinstance(h, Tensor):
        raise ValueError("spikes and h must be tensors")
    if spikes.dim() != 3:
        raise ValueError(f"spikes must be time-major [T, B, N], got shape {tuple(spikes.shape)}")
    if h.shape != spikes.shape:
        raise ValueError(f"h must have the shape of spikes {tuple(spikes.shape)}, got {tuple(h.shape)}")
    if spikes.shape[0] < 1:
        raise ValueError("spikes must have at least one time step (T >= 1)")
    if not spikes.is_floating_point() or not h.is_floating_point():
        raise ValueError(f"spikes and h must be floating point, got {spikes.dtype} and {h.dtype}")
    if spikes.device != h.device:
        raise ValueError(f"spikes and h must be on the same device, got {spikes.device} and {h.device}")
    if not bool(torch.isfinite(h).all()):
        raise ValueError("h (membrane potential) contains NaN or infinite values")


def _check_window_args(D: int, A: float, window: str) -> None:
    if isinstance(D, bool) or not isinstance(D, int) or D < 1:
        raise ValueError(f"D must be a positive integer, got {D!r}")
    if not isinstance(A, (int, float)) or isinstance(A, bool) or not math.isfinite(A):
        raise ValueError(f"A must be a finite number, got {A!r}")
    if window not in WINDOWS:
        raise ValueError(f"window must be one of {WINDOWS}, got {window!r}")


def gaussian_window(T_in: int, D: int, window: str = "peak", dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> Tensor:
    """The Gaussian window ``g [W]`` of the encoder's backward (see the module docstring).

    ``sigma = T_in // D``, ``W = min(6 sigma + 1, 2 (T_in // 2) + 1)``; peak 1 (``window="peak"``)
    or scaled by ``1 / (2 pi sigma)`` (``window="normalised"``). Raises ``ValueError`` when
    ``sigma = 0`` (``T_in < D``).
    """
    _check_window_args(D, 1.0, window)
    if isinstance(T_in, bool) or not isinstance(T_in, int) or T_in < 1:
        raise ValueError(f"T_in must be a positive integer, got {T_in!r}")
    sigma = T_in // D
    if sigma < 1:
        raise ValueError(
            f"the window T_in={T_in} is shorter than D={D}: sigma = T_in // D would be 0; use D <= T_in")
    width = min(6 * sigma + 1, 2 * (T_in // 2) + 1)
    k = torch.arange(width, dtype=torch.float64)
    centre = (width - 1) / 2
    g = torch.exp(-((k - centre) ** 2) / (2.0 * sigma * sigma))
    if window == "normalised":
        g = g / (2.0 * math.pi * sigma)
    return g.to(dtype=dtype, device=device)


def neuron_ranks(h: Tensor) -> Tensor:
    """Rank ``r [B, N]`` (int64, 1 = highest) of the neurons by ``max_t h``; ties by neuron index."""
    peak = h.amax(dim=0)  # [B, N]
    order = torch.argsort(peak, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    positions = torch.arange(1, peak.shape[1] + 1, device=h.device).expand_as(order)
    ranks.scatter_(1, order, positions)
    return ranks


def encoded_times(spikes: Tensor, h: Tensor) -> Tensor:
    """The encoded times ``t [T_in, B, N]`` (float64): ``tau`` at a spike, else ``T_in + r_n + 0.01 q_tau``."""
    _check_pair(spikes, h)
    T = spikes.shape[0]
    ranks = neuron_ranks(h).to(torch.float64)  # [B, N]
    order = torch.argsort(h, dim=0, descending=True, stable=True)  # [T, B, N]
    q = torch.empty_like(order)
    steps = torch.arange(T, device=h.device).view(T, 1, 1).expand_as(order)
    q.scatter_(0, order, steps)
    tau = torch.arange(1, T + 1, dtype=torch.float64, device=h.device).view(T, 1, 1)
    fallback = T + ranks.unsqueeze(0) + 0.01 * q.to(torch.float64)
    return torch.where(spikes > 0, tau.expand_as(fallback), fallback)


def _first_spike_forward(spikes: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``t_F [B, N]`` (float64), the first spike index ``[B, N]`` (0-based) and the silent mask ``[B, N]``."""
    T = spikes.shape[0]
    fired = spikes > 0
    silent = ~fired.any(dim=0)
    first = torch.argmax(fired.to(torch.uint8), dim=0)  # first maximal value -> first spike
    ranks = neuron_ranks(h)
    t_f = torch.where(silent, T + ranks, first + 1).to(torch.float64)
    return t_f, first, silent


def _out_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def first_spike_times_nograd(spikes: Tensor, h: Tensor) -> Tensor:
    """The forward of the encoder only: ``t_F [B, N]`` (float32 or float64), no graph."""
    _check_pair(spikes, h)
    with torch.no_grad():
        t_f, _, _ = _first_spike_forward(spikes.detach(), h.detach())
    return t_f.to(_out_dtype(spikes.dtype))


class FirstSpikeTime(torch.autograd.Function):
    """Autograd function of the spike-to-time encoder; use :func:`first_spike_times`."""

    @staticmethod
    def forward(ctx, spikes: Tensor, h: Tensor, D: int, A: float, window: str) -> Tensor:  # type: ignore[override]
        t_f, first, silent = _first_spike_forward(spikes, h)
        ctx.save_for_backward(first, silent)
        ctx.D, ctx.A, ctx.window = D, float(A), window
        ctx.T_in, ctx.spike_dtype = spikes.shape[0], spikes.dtype
        return t_f.to(_out_dtype(spikes.dtype))

    @staticmethod
    def backward(ctx, grad_t: Tensor):  # type: ignore[override]
        first, silent = ctx.saved_tensors
        T = ctx.T_in
        B, N = grad_t.shape
        work = _out_dtype(ctx.spike_dtype)
        grad_t = grad_t.to(work)
        # 1. backward of the min over time: argmin step, or every step for a silent neuron
        dl_dt = torch.zeros((T, B, N), dtype=work, device=grad_t.device)
        dl_dt.scatter_(0, first.unsqueeze(0), grad_t.unsqueeze(0))
        dl_dt = torch.where(silent.unsqueeze(0), grad_t.unsqueeze(0).expand(T, B, N), dl_dt)
        # 2. backward of the encoder: Gaussian-window "same" convolution along time
        g = gaussian_window(T, ctx.D, ctx.window, dtype=work, device=grad_t.device)
        rows = (-ctx.A * dl_dt).permute(1, 2, 0).reshape(B * N, 1, T)
        conv = F.conv1d(rows, g.view(1, 1, -1), padding=(g.numel() - 1) // 2)
        grad_s = conv.reshape(B, N, T).permute(2, 0, 1).contiguous().to(ctx.spike_dtype)
        return grad_s, None, None, None, None


def first_spike_times(spikes: Tensor, h: Tensor, D: int, A: float, window: str = "peak") -> Tensor:
    """First-spike times ``t_F [B, N]`` of output spikes ``[T_in, B, N]`` with potentials ``h [T_in, B, N]``.

    Time is 1-based: a neuron whose first spike is at step index ``k`` (0-based) gets ``k + 1``; a
    silent neuron gets ``T_in + r_n`` (``r_n`` its rank by maximum potential). The result is
    float32 (float64 for float64 spikes). Gradients flow to ``spikes`` through the Gaussian-window
    backward ``dL/dS = conv1d_same(-A dL/dt, g)`` (``D`` sets ``sigma = T_in // D``, ``window``
    is ``"peak"`` or ``"normalised"``); ``h`` gets none. See the module docstring for the math.
    """
    _check_pair(spikes, h)
    _check_window_args(D, A, window)
    if spikes.requires_grad and torch.is_grad_enabled():
        gaussian_window(spikes.shape[0], D, window)  # raises the clear error for T_in < D early
    return FirstSpikeTime.apply(spikes, h.detach(), D, float(A), window)
