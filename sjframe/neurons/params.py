"""Time-constant helpers shared by the neurons (one place for units and init formulas)."""

from __future__ import annotations

import math

__all__ = ["check_tau", "decay", "inverse_sigmoid_decay", "tau_steps"]


def check_tau(tau: float, name: str) -> float:
    """Validate a time constant given in steps (positive and finite)."""
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"{name} must be a positive number of steps, got {tau!r}")
    return float(tau)


def decay(tau_steps_value: float) -> float:
    """Per-step decay ``exp(-1/tau)`` of a time constant in steps."""
    return math.exp(-1.0 / tau_steps_value)


def inverse_sigmoid_decay(tau_steps_value: float) -> float:
    """Raw parameter ``w = -log(exp(1/tau) - 1)`` with ``sigmoid(w) = exp(-1/tau)``."""
    return -math.log(math.expm1(1.0 / tau_steps_value))


def tau_steps(tau_ms: float, dt_ms: float) -> float:
    """Convert a time constant in ms to steps of ``dt_ms``."""
    if dt_ms <= 0:
        raise ValueError(f"dt must be positive (ms), got {dt_ms!r}")
    return check_tau(tau_ms, "tau (ms)") / dt_ms
