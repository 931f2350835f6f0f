"""SpikeProp (Bohte, Kok & La Poutre 2002): exact spike-time gradients with delayed multi-terminal synapses.

Each connection ``i -> j`` has ``K`` terminals with delays ``d_k`` and weights ``w_jik``. A neuron
fires at most once; its potential (spike-response model, no reset needed before the first spike) is

    x_j(t) = sum_i sum_k w_jik eps(t - t_i - d_k),     eps(s) = (s / tau) exp(1 - s / tau) for s > 0, else 0

and its spike time ``t_j`` is the first time ``x_j(t) >= theta`` within ``[0, t_max]`` (``inf``
when it never gets there). We find it on a grid of step ``dt`` and refine the crossing by
bisection on the exact ``x_j`` (``refine_iters`` halvings), so ``t_j`` is exact to ``dt / 2**iters``.

Gradients (implicit function theorem at ``x_j(t_j) = theta``, with the slope
``x'_j = sum_ik w_jik eps'(t_j - t_i - d_k)``, clamped below by ``min_slope`` as is usual for SpikeProp)::

    dt_j / dw_jik = -eps(t_j - t_i - d_k) / x'_j
    dt_j / dt_i   =  sum_k w_jik eps'(t_j - t_i - d_k) / x'_j

Chained by autograd through the layers, these give Bohte's output delta
``delta_j = (t_j^d - t_j) / x'_j`` for ``E = 1/2 sum_j (t_j - t_j^d)^2`` and his hidden-layer deltas.
Silent neurons (``t = inf``) pass no gradient; :func:`bump_silent` raises the incoming weights of
neurons that stay silent instead.

Input coding (:func:`gaussian_rf_encode`): each feature is covered by ``m`` Gaussian receptive
fields (centres ``I_min + (2i - 3)/2 * (I_max - I_min)/(m - 2)``, ``i = 1..m``, width
``(I_max - I_min) / (gamma (m - 2))``); a field with response ``r`` fires at ``t_code (1 - r)``,
and not at all when ``r < min_response``.

Shapes: spike times are ``[B, N]`` tensors (``inf`` = no spike).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "SpikePropLayer",
    "SpikePropNet",
    "bump_silent",
    "eps_kernel",
    "gaussian_rf_encode",
    "spike_time_loss",
    "srm_potential",
]


def eps_kernel(s: torch.Tensor, tau: float, derivative: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(eps(s), eps'(s))`` of the SRM kernel ``(s/tau) e^{1 - s/tau}``; both 0 for ``s <= 0`` (and ``s = -inf``).

    With ``derivative=False`` the second value is ``None``.
    """
    sc = s.clamp(min=0.0) / tau                 # -inf (a silent input) -> 0
    e = torch.exp(1.0 - sc)
    eps = sc * e
    if not derivative:
        return eps, None
    return eps, (s > 0).to(s.dtype) * (e / tau) * (1.0 - sc)


def srm_potential(
    t: torch.Tensor, t_in: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor, tau: float
) -> torch.Tensor:
    """Exact potential ``x_j(t)`` for query times ``t [B, J]``, inputs ``t_in [B, I]``, ``weight [J, I, K]``."""
    s = t[:, :, None, None] - t_in[:, None, :, None] - delays
    eps, _ = eps_kernel(s, tau, derivative=False)
    return (eps * weight).sum((2, 3))


def _first_crossing(t_in: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """Spike times ``[B, J]`` (``inf`` if silent) by a grid search plus bisection."""
    tau, theta, t_max, dt = cfg["tau"], cfg["theta"], cfg["t_max"], cfg["dt"]
    grid = torch.arange(0.0, t_max + 0.5 * dt, dt, dtype=t_in.dtype, device=t_in.device)
    n_i, n_k = weight.shape[1], weight.shape[2]
    chunk = max(1, int(4_000_000 // max(1, n_i * n_k * grid.numel())))
    w2 = weight.reshape(weight.shape[0], -1)
    out = []
    for b0 in range(0, t_in.shape[0], chunk):
        tb = t_in[b0:b0 + chunk]
        s = grid - tb[:, :, None, None] - delays[:, None]            # [b, I, K, G]
        eps, _ = eps_kernel(s, tau, derivative=False)
        x = torch.matmul(w2, eps.reshape(tb.shape[0], -1, grid.numel()))   # [b, J, G]
        above = x >= theta
        fired = above.any(2)
        idx = above.to(torch.int8).argmax(2)                          # first grid index at/above theta
        hi = grid[idx]
        lo = grid[(idx - 1).clamp(min=0)]
        for _ in range(cfg["refine_iters"]):
            mid = 0.5 * (lo + hi)
            up = srm_potential(mid, tb, weight, delays, tau) >= theta
            hi = torch.where(up, mid, hi)
            lo = torch.where(up, lo, mid)
        out.append(torch.where(fired, hi, torch.full_like(hi, math.inf)))
    return torch.cat(out)


class _SpikeTime(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, t_in: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor, cfg: dict[str, Any]):
        t_out = _first_crossing(t_in.detach(), weight.detach(), delays, cfg)
        ctx.save_for_backward(t_in, weight, delays, t_out)
        ctx.cfg = cfg
        return t_out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        t_in, weight, delays, t_out = ctx.saved_tensors
        cfg = ctx.cfg
        fired = torch.isfinite(t_out)
        g = torch.where(fired, grad, torch.zeros_like(grad))
        s = torch.where(fired, t_out, torch.zeros_like(t_out))[:, :, None, None] - t_in[:, None, :, None] - delays
        eps, deps = eps_kernel(s, cfg["tau"])                         # [B, J, I, K]
        slope = (deps * weight).sum((2, 3)).clamp(min=cfg["min_slope"])
        scale = torch.where(fired, g / slope, torch.zeros_like(g))   # [B, J]
        grad_w = -(scale[:, :, None, None] * eps).sum(0)
        grad_t = (scale[:, :, None, None] * deps * weight).sum((1, 3))
        grad_t = torch.where(torch.isfinite(t_in), grad_t, torch.zeros_like(grad_t))
        return grad_t, grad_w, None, None


class SpikePropLayer(nn.Module):
    """``I -> J`` neurons with ``K`` delayed terminals per connection: ``weight [J, I, K]``.

    Args:
        delays: the ``K`` terminal delays (ms).
        tau: SRM kernel time constant (ms). theta: firing threshold.
        t_max: end of the simulated window (ms). dt: grid step of the crossing search (ms).
        refine_iters: bisection halvings of the crossing interval. min_slope: lower clamp of ``x'_j``.
        w_init: ``(low, high)`` of the uniform weight initialisation.
    """

    def __init__(
        self, n_in: int, n_out: int, delays: Sequence[float], tau: float = 7.0, theta: float = 1.0,
        t_max: float = 50.0, dt: float = 0.1, refine_iters: int = 20, min_slope: float = 0.1,
        w_init: tuple[float, float] = (0.0, 0.1), dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1 or len(delays) < 1:
            raise ValueError(f"need n_in, n_out and len(delays) >= 1, got {n_in}, {n_out}, {len(delays)}")
        for name, value in (("tau", tau), ("theta", theta), ("t_max", t_max), ("dt", dt)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if min_slope < 0 or refine_iters < 0:
            raise ValueError("min_slope and refine_iters must be >= 0")
        lo, hi = w_init
        w = lo + (hi - lo) * torch.rand(n_out, n_in, len(delays), generator=generator, dtype=dtype)
        self.weight = nn.Parameter(w)
        self.register_buffer("delays", torch.tensor(list(delays), dtype=dtype))
        self.cfg = {"tau": float(tau), "theta": float(theta), "t_max": float(t_max), "dt": float(dt),
                    "refine_iters": int(refine_iters), "min_slope": float(min_slope)}

    def forward(self, t_in: torch.Tensor) -> torch.Tensor:
        if t_in.dim() != 2 or t_in.shape[1] != self.weight.shape[1]:
            raise ValueError(f"t_in must be [B, {self.weight.shape[1]}], got shape {tuple(t_in.shape)}")
        if torch.isnan(t_in).any() or (t_in == -math.inf).any():
            raise ValueError("t_in contains NaN or -inf (use +inf for 'no spike')")
        return _SpikeTime.apply(t_in.to(self.weight.dtype), self.weight, self.delays, self.cfg)


class SpikePropNet(nn.Module):
    """A stack of :class:`SpikePropLayer`; ``forward(t_in [B, I])`` returns all layers' times, output last."""

    def __init__(self, sizes: Sequence[int], delays: Sequence[float], **layer_kwargs: Any) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least input and output sizes, got {list(sizes)}")
        self.layers = nn.ModuleList(
            SpikePropLayer(a, b, delays, **layer_kwargs) for a, b in zip(sizes[:-1], sizes[1:])
        )

    def forward(self, t_in: torch.Tensor) -> list[torch.Tensor]:
        times = []
        t = t_in
        for layer in self.layers:
            t = layer(t)
            times.append(t)
        return times


def spike_time_loss(t_out: torch.Tensor, t_target: torch.Tensor) -> torch.Tensor:
    """Bohte's ``E = 1/2 sum_j (t_j - t_j^d)^2``, averaged over the batch; silent outputs are left out."""
    if t_out.shape != t_target.shape:
        raise ValueError(f"t_out {tuple(t_out.shape)} and t_target {tuple(t_target.shape)} differ")
    fired = torch.isfinite(t_out)
    diff = torch.where(fired, t_out - t_target, torch.zeros_like(t_out))
    return 0.5 * (diff ** 2).sum(1).mean()


@torch.no_grad()
def bump_silent(layer: SpikePropLayer, t_out: torch.Tensor, bump: float, max_silent: float = 0.0) -> int:
    """Add ``bump`` to the incoming weights of neurons silent on more than ``max_silent`` of the batch.

    Returns the number of neurons bumped.
    """
    silent = (~torch.isfinite(t_out)).to(layer.weight.dtype).mean(0) > max_silent
    layer.weight[silent] += bump
    return int(silent.sum())


def gaussian_rf_encode(
    x: torch.Tensor, x_min: torch.Tensor, x_max: torch.Tensor, n_fields: int = 12, gamma: float = 1.5,
    t_code: float = 10.0, min_response: float = 0.1,
) -> torch.Tensor:
    """Population coding of ``x [B, F]`` into spike times ``[B, F * n_fields]`` (``inf`` = no spike)."""
    if x.dim() != 2:
        raise ValueError(f"x must be [B, F], got shape {tuple(x.shape)}")
    if n_fields < 3:
        raise ValueError(f"n_fields must be >= 3, got {n_fields}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    span = (x_max - x_min).to(x.dtype)
    if (span <= 0).any():
        raise ValueError("x_max must exceed x_min for every feature")
    i = torch.arange(1, n_fields + 1, dtype=x.dtype, device=x.device)
    centres = x_min[:, None] + (2 * i - 3) / 2 * span[:, None] / (n_fields - 2)   # [F, m]
    sigma = span[:, None] / (gamma * (n_fields - 2))
    r = torch.exp(-0.5 * ((x[:, :, None] - centres) / sigma) ** 2)                 # [B, F, m]
    t = t_code * (1.0 - r)
    t = torch.where(r >= min_response, t, torch.full_like(t, math.inf))
    return t.reshape(x.shape[0], x.shape[1] * n_fields)
