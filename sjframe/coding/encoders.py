"""Input encoders: static values ``[B, ...]`` in ``[0, 1]`` -> spike trains ``[T, B, ...]`` (time-major).

* :func:`latency_encode`: at most one spike per input, at a step that depends on the value.

  - ``mode="linear"``: ``k = round(t_min + (1 - x) (t_max - t_min))`` (``invert=True``, the default:
    a larger value spikes earlier) or ``k = round(t_min + x (t_max - t_min))`` (``invert=False``);
    values ``x <= threshold`` give no spike when a ``threshold`` is set.
  - ``mode="s3gd"``: the S3GD / LocalZO Fashion-MNIST code ``k = floor(tau ln(x / (x - threshold)))``
    for ``x > threshold`` (defaults ``tau = 20``, ``threshold = 0.2``), no spike otherwise; a spike
    is kept only if ``k < T``.

* :func:`rate_encode`: ``mode="bernoulli"``: ``S_t ~ Bernoulli(max_rate x)`` independently at
  every step; ``mode="poisson"``: ``S_t ~ Poisson(max_rate x)`` event counts per step (clamped to
  1 with ``clamp=True``). Pass a ``torch.Generator`` for reproducible draws.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["LATENCY_MODES", "RATE_MODES", "latency_encode", "rate_encode"]

LATENCY_MODES = ("linear", "s3gd")
RATE_MODES = ("bernoulli", "poisson")


def _check_values(values: Tensor) -> None:
    if not isinstance(values, Tensor):
        raise ValueError(f"values must be a tensor, got {type(values).__name__}")
    if values.dim() < 1:
        raise ValueError("values must be [B, ...] with a batch dimension")
    if not values.is_floating_point():
        raise ValueError(f"values must be floating point in [0, 1], got {values.dtype}")
    if bool(torch.isnan(values).any()):
        raise ValueError("values contain NaN")
    if values.numel() and (float(values.min()) < 0.0 or float(values.max()) > 1.0):
        raise ValueError(f"values must lie in [0, 1], got [{float(values.min())}, {float(values.max())}]")


def _check_T(T: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")


def latency_encode(values: Tensor, T: int, mode: str = "linear", t_min: int = 0, t_max: int | None = None,
                   invert: bool = True, threshold: float | None = None, tau: float = 20.0,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Latency code of ``values [B, ...]`` in ``[0, 1]``: spikes ``[T, B, ...]`` with at most one spike each.

    Args:
        values: inputs in ``[0, 1]``.
        T: number of steps.
        mode: ``"linear"`` or ``"s3gd"`` (see the module docstring).
        t_min, t_max: first and last step (0-based) of the linear code; ``t_max`` defaults to ``T - 1``.
        invert: linear code only; ``True`` maps 1 to ``t_min`` and 0 to ``t_max``.
        threshold: linear code: values ``<= threshold`` stay silent (``None``: every value spikes);
            s3gd code: the offset of the formula (default 0.2).
        tau: s3gd code: the time scale of the formula (default 20 steps).
        dtype: dtype of the returned spikes.
    """
    _check_values(values)
    _check_T(T)
    if mode not in LATENCY_MODES:
        raise ValueError(f"mode must be one of {LATENCY_MODES}, got {mode!r}")
    x = values.to(torch.float64)
    if mode == "linear":
        t_max = T - 1 if t_max is None else t_max
        for name, v in (("t_min", t_min), ("t_max", t_max)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= T - 1:
                raise ValueError(f"{name} must be an integer step in [0, {T - 1}], got {v!r}")
        if t_min > t_max:
            raise ValueError(f"t_min ({t_min}) must be <= t_max ({t_max})")
        frac = 1.0 - x if invert else x
        step = torch.round(t_min + frac * (t_max - t_min))
        fires = torch.ones_like(x, dtype=torch.bool) if threshold is None else x > float(threshold)
    else:
        thr = 0.2 if threshold is None else float(threshold)
        if not 0.0 <= thr < 1.0:
            raise ValueError(f"threshold of the s3gd code must be in [0, 1), got {threshold!r}")
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be a positive number, got {tau!r}")
        fires = x > thr
        safe = torch.where(fires, x, torch.ones_like(x))
        step = torch.floor(tau * torch.log(safe / (safe - thr)))
        fires = fires & (step < T)
    step = torch.where(fires, step, torch.zeros_like(step)).long()
    spikes = torch.zeros((T, *values.shape), dtype=dtype, device=values.device)
    spikes.scatter_(0, step.unsqueeze(0), fires.unsqueeze(0).to(dtype))
    return spikes


def rate_encode(values: Tensor, T: int, mode: str = "bernoulli", max_rate: float = 1.0,
                generator: torch.Generator | None = None, clamp: bool = False,
                dtype: torch.dtype = torch.float32) -> Tensor:
    """Rate code of ``values [B, ...]`` in ``[0, 1]``: spikes ``[T, B, ...]``, rate ``max_rate x`` per step.

    ``mode="bernoulli"`` needs ``max_rate`` in ``[0, 1]`` (a probability per step); ``"poisson"``
    draws event counts per step (``clamp=True`` turns them into 0/1 spikes).
    """
    _check_values(values)
    _check_T(T)
    if mode not in RATE_MODES:
        raise ValueError(f"mode must be one of {RATE_MODES}, got {mode!r}")
    if isinstance(max_rate, bool) or not isinstance(max_rate, (int, float)) or not math.isfinite(max_rate) or max_rate < 0:
        raise ValueError(f"max_rate must be a number >= 0, got {max_rate!r}")
    if mode == "bernoulli" and max_rate > 1:
        raise ValueError(f"max_rate must be <= 1 for Bernoulli spikes (a probability per step), got {max_rate}")
    rate = (values.to(torch.float32) * float(max_rate)).unsqueeze(0).expand(T, *values.shape).contiguous()
    if mode == "bernoulli":
        spikes = torch.bernoulli(rate, generator=generator)
    else:
        spikes = torch.poisson(rate, generator=generator)
        if clamp:
            spikes = spikes.clamp_(max=1.0)
    return spikes.to(dtype)
