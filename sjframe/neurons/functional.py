"""Pure functional cores of the sjframe neurons (torch reference backend).

Shape convention: ``x_seq`` is time-major ``[T, B, *F]`` (``F`` the feature shape of the layer,
e.g. ``(N,)`` or ``(C, H, W)``); states are ``[B, *F]``; per-neuron parameters broadcast against
``F`` (shape ``F`` or scalar). Time is counted in steps; ``theta`` is the threshold; spikes are
``s_t = H(h_t - theta)`` through ``spike_fn`` (which carries the surrogate / gradient mode).

Each core returns ``(spike_seq [T, B, *F], state_last, h_seq [T, B, *F])`` where ``h_seq`` is the
pre-reset membrane potential (the FS decoder ranks silent neurons by it).

CuLIF / PCuLIF (``lam = exp(-1/tau_m)``, ``gam = exp(-1/tau_s)`` or trainable)::

    h_t = lam * v_{t-1} + (1 - lam) * I_{t-1}
    I_t = gam * I_{t-1} + x_t
    s_t = H(h_t - theta)
    v_t = h_t * (1 - s_t)                 # hard reset to 0 (s detached if detach_reset)

AdLIF (``alpha, beta`` in (0, 1), ``a, b`` in [0, 1], all per neuron)::

    h_t = alpha * v_{t-1} + (1 - alpha) * (x_t - w_{t-1})
    s_t = H(h_t - theta);  v_t = h_t * (1 - s_t)
    w_t = beta * w_{t-1} + a * h_{t-1} + b * s_{t-1}

LIF of S3GD / LocalZO (``beta = exp(-1/tau_m)``; subtractive reset; one-step lag)::

    h_t = beta * h_{t-1} + x_{t-1} - theta * s_{t-1}
    s_t = H(h_t - theta)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = [
    "AdLIFState",
    "CuLIFState",
    "LIFState",
    "NeuronOutput",
    "adlif_multi_step",
    "culif_multi_step",
    "lif_multi_step",
]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
Scalar = float | torch.Tensor


class CuLIFState(NamedTuple):
    """CuLIF / PCuLIF state after a step: post-reset potential ``v`` and synaptic current ``I``."""

    v: torch.Tensor
    i: torch.Tensor


class AdLIFState(NamedTuple):
    """AdLIF state: ``v`` (post reset), adaptation ``w``, and the last pre-reset ``h`` and spike ``s``."""

    v: torch.Tensor
    w: torch.Tensor
    h: torch.Tensor
    s: torch.Tensor


class LIFState(NamedTuple):
    """LIF state: last pre-reset potential ``h`` (spike recomputed from it) and last input ``x``."""

    h: torch.Tensor
    x: torch.Tensor


class NeuronOutput(NamedTuple):
    spikes: torch.Tensor
    state: tuple[torch.Tensor, ...]
    h_seq: torch.Tensor


def _check_input(x_seq: torch.Tensor, name: str = "x_seq") -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(f"{name} must be time-major [T, B, ...] with at least 2 dims, got shape {tuple(x_seq.shape)}")
    if not x_seq.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x_seq.dtype}")


def _check_state(state: tuple[torch.Tensor, ...], like: torch.Tensor, names: tuple[str, ...]) -> None:
    for name, s in zip(names, state, strict=True):
        if s.shape != like.shape:
            raise ValueError(f"state {name} has shape {tuple(s.shape)}, expected {tuple(like.shape)} (= x_seq[0])")


def _zeros(x_seq: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(x_seq[0]) for _ in range(n))


def culif_multi_step(
    x_seq: torch.Tensor,
    state: CuLIFState | None,
    lam: Scalar,
    gam: Scalar,
    theta: float,
    spike_fn: SpikeFn,
    detach_reset: bool = True,
) -> NeuronOutput:
    """CuLIF (fixed ``lam, gam``) or PCuLIF (``lam, gam`` tensors, scalar or per neuron)."""
    _check_input(x_seq)
    v, cur = _zeros(x_seq, 2) if state is None else state
    _check_state((v, cur), x_seq[0], ("v", "I"))
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = lam * v + (1.0 - lam) * cur
        cur = gam * cur + x_seq[t]
        s = spike_fn(h - theta)
        v = h * (1.0 - (s.detach() if detach_reset else s))
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), CuLIFState(v, cur), torch.stack(hs))


def adlif_multi_step(
    x_seq: torch.Tensor,
    state: AdLIFState | None,
    alpha: Scalar,
    beta: Scalar,
    a: Scalar,
    b: Scalar,
    theta: float,
    spike_fn: SpikeFn,
    detach_reset: bool = True,
) -> NeuronOutput:
    """AdLIF with per-neuron ``alpha, beta`` (decays) and ``a, b`` (adaptation couplings)."""
    _check_input(x_seq)
    v, w, h_prev, s_prev = _zeros(x_seq, 4) if state is None else state
    _check_state((v, w, h_prev, s_prev), x_seq[0], ("v", "w", "h", "s"))
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = alpha * v + (1.0 - alpha) * (x_seq[t] - w)
        w = beta * w + a * h_prev + b * s_prev
        s = spike_fn(h - theta)
        v = h * (1.0 - (s.detach() if detach_reset else s))
        h_prev, s_prev = h, s
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), AdLIFState(v, w, h_prev, s_prev), torch.stack(hs))


def lif_multi_step(
    x_seq: torch.Tensor,
    state: LIFState | None,
    beta: Scalar,
    theta: float,
    spike_fn: SpikeFn,
    detach_reset: bool = True,
) -> NeuronOutput:
    """LIF of S3GD / LocalZO: subtractive reset by ``theta``, output lags input by one step."""
    _check_input(x_seq)
    h, x_prev = _zeros(x_seq, 2) if state is None else state
    _check_state((h, x_prev), x_seq[0], ("h", "x"))
    s = (h >= theta).to(h.dtype)  # spike of the carried state (constant: not differentiated)
    spikes, hs = [], []
    for t in range(x_seq.shape[0]):
        h = beta * h + x_prev - theta * (s.detach() if detach_reset else s)
        s = spike_fn(h - theta)
        x_prev = x_seq[t]
        spikes.append(s)
        hs.append(h)
    return NeuronOutput(torch.stack(spikes), LIFState(h, x_prev), torch.stack(hs))
