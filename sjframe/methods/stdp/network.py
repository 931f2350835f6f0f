"""Unsupervised STDP learning of Diehl & Cook (2015), as set up in n3ml (seed 004).

Network (``I`` inputs, ``N`` excitatory and ``N`` inhibitory neurons, time step ``dt`` ms)::

    input (Poisson, rate = intensity * input_rate Hz)
      -> excitatory  (all-to-all, learned weights W [N, I], init U(0, w_init_max))
      -> inhibitory  (one-to-one, weight w_exc_inh)
      -> excitatory  (all-but-self, weight -w_inh_exc)

Neurons are current-based LIF in mV: every step ``v <- rest + (v - rest) exp(-dt / tau)``, then (if
not refractory) ``v += input``; a spike when ``v > v_thresh (+ theta)`` resets ``v`` to
``v_reset`` and starts a refractory period. Excitatory neurons have an adaptive threshold
``theta [N]`` that grows by ``theta_plus`` per spike and decays with ``tau_theta``; it is learned
during training and frozen at inference.

Plasticity (``x_pre [B, I]``, ``x_post [B, N]`` traces: ``x <- x exp(-dt/tau) + s``, updated before
the weight change of the same step; updates summed over the batch)::

    rule "post_pre" (what n3ml implements):
        dW = nu_post * s_post^T x_pre  -  nu_pre * x_post^T s_pre
    rule "power_law" (the manual's / Diehl & Cook's formula, applied at postsynaptic spikes):
        dW = eta * (s_post^T x_pre - x_tar * s_post^T 1) * (w_max - W)^mu

then ``W`` is clamped to ``[0, w_max]``. After every batch each excitatory neuron's incoming
weights are rescaled to sum to ``norm_total`` (78.4 for 784 MNIST inputs).

The ``post_pre`` rule is SpikingJelly's ``functional.learning.stdp_linear_step`` (with
``f_pre = nu_pre``, ``f_post = nu_post`` and ``tau' = 1 / (1 - exp(-dt/tau))``, which turns its Euler
trace decay ``1 - 1/tau'`` into the exact ``exp(-dt/tau)``), written here as two matrix products:
SpikingJelly's version builds a ``[B, N, I]`` tensor every step (160 M entries for Diehl & Cook's
6400 x 784 net at B = 32). ``tests/test_stdp.py`` checks that both give the same updates.

Labels: each excitatory neuron is assigned the class for which its mean spike count over the
(training) samples of that class is highest (neurons that never fire get ``-1`` and are ignored);
a sample is classified as the class whose assigned neurons have the highest mean spike count.

Batching: ``B`` samples run side by side with shared ``W`` and ``theta``; their weight and
threshold updates are summed, and weights are normalised after the batch. ``B = 1`` is the
original per-sample online learning. Samples that make fewer than ``min_spikes`` excitatory
spikes are presented again with ``input_rate + rate_step`` Hz (Diehl & Cook), up to
``max_retries`` times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = [
    "DiehlCookNetwork",
    "DiehlCookParams",
    "assign_labels",
    "plasticity_step",
    "poisson_encode",
    "power_law_update",
    "predict_from_assignments",
    "sj_trace_tau",
]


@dataclass(frozen=True)
class DiehlCookParams:
    """Parameters of the Diehl & Cook network (potentials in mV, times in ms, rates in Hz)."""

    n_input: int = 64
    n_neurons: int = 100
    dt: float = 1.0
    time_steps: int = 250
    input_rate: float = 128.0
    exc_rest: float = -65.0
    exc_reset: float = -60.0
    exc_thresh: float = -52.0
    exc_tau: float = 100.0
    exc_refrac: float = 5.0
    inh_rest: float = -60.0
    inh_reset: float = -45.0
    inh_thresh: float = -40.0
    inh_tau: float = 10.0
    inh_refrac: float = 2.0
    theta_plus: float = 0.05
    tau_theta: float = 1.0e7
    w_exc_inh: float = 22.5
    w_inh_exc: float = 120.0
    w_max: float = 1.0
    w_init_max: float = 0.3
    norm_total: float | None = 78.4
    rule: Literal["post_pre", "power_law"] = "post_pre"
    nu_pre: float = 1.0e-4
    nu_post: float = 1.0e-2
    tau_pre: float = 20.0
    tau_post: float = 20.0
    eta: float = 1.0e-2
    x_tar: float = 0.4
    mu: float = 0.2
    min_spikes: int = 5
    rate_step: float = 32.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        for name in ("n_input", "n_neurons", "time_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("dt", "input_rate", "exc_tau", "inh_tau", "tau_theta", "tau_pre", "tau_post", "w_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name in ("exc_refrac", "inh_refrac", "theta_plus", "w_exc_inh", "w_inh_exc", "nu_pre", "nu_post",
                     "eta", "mu", "rate_step", "w_init_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.rule not in ("post_pre", "power_law"):
            raise ValueError(f"rule must be 'post_pre' or 'power_law', got {self.rule!r}")
        if self.norm_total is not None and not self.norm_total > 0:
            raise ValueError(f"norm_total must be positive or None, got {self.norm_total!r}")
        if self.exc_thresh <= self.exc_reset or self.inh_thresh <= self.inh_reset:
            raise ValueError("thresholds must lie above the reset potentials "
                             "(exc_thresh > exc_reset, inh_thresh > inh_reset)")


def sj_trace_tau(tau: float, dt: float) -> float:
    """SpikingJelly trace constant ``tau'`` with ``1 - 1/tau' = exp(-dt/tau)`` (exact exponential decay)."""
    return 1.0 / (-math.expm1(-dt / tau))


def poisson_encode(
    intensity: torch.Tensor, time_steps: int, rate_hz: float | torch.Tensor, dt_ms: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Poisson (Bernoulli per step) spikes ``[T, B, I]`` with ``P(spike) = intensity * rate * dt``.

    ``intensity`` is ``[B, I]`` in [0, 1]; ``rate_hz`` a number or a ``[B]`` tensor (per-sample rate).
    The uniforms are drawn on ``generator``'s device (a CPU generator on a CUDA run: the same spikes
    as on the CPU) and moved to ``intensity``'s; without a generator, from the global RNG of that device.
    """
    if intensity.dim() != 2:
        raise ValueError(f"intensity must be [B, I], got shape {tuple(intensity.shape)}")
    if not torch.isfinite(intensity).all() or intensity.min() < 0 or intensity.max() > 1:
        raise ValueError("intensity must be finite and in [0, 1]")
    rate = torch.as_tensor(rate_hz, dtype=intensity.dtype, device=intensity.device)
    if rate.dim() == 1:
        rate = rate[:, None]
    p = (intensity * rate * (dt_ms / 1000.0)).clamp(0.0, 1.0)
    draw_on = p.device if generator is None else generator.device
    u = torch.rand((time_steps, *p.shape), generator=generator, device=draw_on, dtype=p.dtype).to(p.device)
    return (u < p).to(intensity.dtype)


def power_law_update(
    weight: torch.Tensor, x_pre: torch.Tensor, s_post: torch.Tensor, eta: float, x_tar: float, w_max: float,
    mu: float,
) -> torch.Tensor:
    """The manual's rule at postsynaptic spikes, summed over the batch.

    ``dW[n, i] = eta * sum_b s_post[b, n] (x_pre[b, i] - x_tar) * (w_max - W[n, i])^mu``

    Shapes: ``weight [N, I]``, ``x_pre [B, I]``, ``s_post [B, N]``; returns ``dW [N, I]``.
    """
    corr = s_post.t() @ x_pre - x_tar * s_post.sum(0)[:, None]
    return eta * corr * (w_max - weight).clamp(min=0.0).pow(mu)


def plasticity_step(
    weight: torch.Tensor, s_pre: torch.Tensor, s_post: torch.Tensor, x_pre: torch.Tensor, x_post: torch.Tensor,
    p: DiehlCookParams,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the plasticity rule ``p.rule``: ``(dW [N, I], x_pre [B, I], x_post [B, N])``.

    The traces are first advanced (``x <- x exp(-dt/tau) + s``), then the update is computed from the
    new traces and this step's spikes (``s_pre [B, I]``, ``s_post [B, N]``), summed over the batch.
    """
    if p.rule == "post_pre":
        x_pre = x_pre * math.exp(-p.dt / p.tau_pre) + s_pre
        x_post = x_post * math.exp(-p.dt / p.tau_post) + s_post
        dw = p.nu_post * (s_post.t() @ x_pre) - p.nu_pre * (x_post.t() @ s_pre)
        return dw, x_pre, x_post
    x_pre = x_pre * math.exp(-p.dt / p.tau_pre) + s_pre
    return power_law_update(weight, x_pre, s_post, p.eta, p.x_tar, p.w_max, p.mu), x_pre, x_post


class DiehlCookNetwork(nn.Module):
    """The excitatory / inhibitory network with learned input weights ``weight [N, I]``.

    Buffers (saved in ``state_dict``): ``weight [N, I]``, ``theta [N]`` (adaptive thresholds, mV),
    ``assignments [N]`` (class per neuron, -1 unassigned).
    """

    def __init__(self, params: DiehlCookParams, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.params = params
        w = torch.rand(params.n_neurons, params.n_input, generator=generator) * params.w_init_max
        self.register_buffer("weight", w)
        self.register_buffer("theta", torch.zeros(params.n_neurons))
        self.register_buffer("assignments", torch.full((params.n_neurons,), -1, dtype=torch.long))
        if params.norm_total is not None:
            self.normalize()

    @torch.no_grad()
    def normalize(self) -> None:
        """Rescale every neuron's incoming weights to sum to ``norm_total``."""
        if self.params.norm_total is None:
            return
        total = self.weight.sum(1, keepdim=True).clamp(min=1e-12)
        self.weight.mul_(self.params.norm_total / total)

    @torch.no_grad()
    def run(self, spikes_in: torch.Tensor, learn: bool) -> torch.Tensor:
        """Present input spikes ``[T, B, I]`` from a rested state; returns excitatory spike counts ``[B, N]``.

        With ``learn=True`` the weights and adaptive thresholds are updated online (weights are not
        normalised here: call :meth:`normalize` after the batch).
        """
        p = self.params
        if spikes_in.dim() != 3 or spikes_in.shape[2] != p.n_input:
            raise ValueError(f"spikes_in must be [T, B, {p.n_input}], got shape {tuple(spikes_in.shape)}")
        spikes_in = spikes_in.to(self.weight.dtype)
        batch, n = spikes_in.shape[1], p.n_neurons
        like = torch.zeros(batch, n, device=self.weight.device, dtype=self.weight.dtype)
        v_e, v_i = like + p.exc_rest, like + p.inh_rest
        ref_e, ref_i = like.clone(), like.clone()
        s_e, s_i = like.clone(), like.clone()
        x_pre = torch.zeros_like(spikes_in[0])
        x_post = like.clone()
        counts = like.clone()
        dec_e, dec_i = math.exp(-p.dt / p.exc_tau), math.exp(-p.dt / p.inh_tau)
        dec_theta = math.exp(-p.dt / p.tau_theta)
        for t in range(spikes_in.shape[0]):
            s_in = spikes_in[t]
            inhibition = p.w_inh_exc * (s_i.sum(1, keepdim=True) - s_i)
            i_e = s_in @ self.weight.t() - inhibition
            i_i = p.w_exc_inh * s_e
            v_e = p.exc_rest + (v_e - p.exc_rest) * dec_e
            v_i = p.inh_rest + (v_i - p.inh_rest) * dec_i
            v_e = torch.where(ref_e > 0, v_e, v_e + i_e)
            v_i = torch.where(ref_i > 0, v_i, v_i + i_i)
            s_e = (v_e > p.exc_thresh + self.theta).to(v_e.dtype)
            s_i = (v_i > p.inh_thresh).to(v_i.dtype)
            v_e = torch.where(s_e > 0, torch.full_like(v_e, p.exc_reset), v_e)
            v_i = torch.where(s_i > 0, torch.full_like(v_i, p.inh_reset), v_i)
            ref_e = torch.where(s_e > 0, torch.full_like(ref_e, p.exc_refrac), (ref_e - p.dt).clamp(min=0.0))
            ref_i = torch.where(s_i > 0, torch.full_like(ref_i, p.inh_refrac), (ref_i - p.dt).clamp(min=0.0))
            counts += s_e
            if learn:
                dw, x_pre, x_post = plasticity_step(self.weight, s_in, s_e, x_pre, x_post, p)
                self.weight.add_(dw).clamp_(0.0, p.w_max)
                self.theta.mul_(dec_theta).add_(p.theta_plus * s_e.sum(0))
        return counts

    @torch.no_grad()
    def present(
        self, intensity: torch.Tensor, learn: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Poisson-encode ``intensity [B, I]`` and run; re-present quiet samples at a higher rate.

        Returns the excitatory spike counts ``[B, N]`` of each sample's last presentation.
        """
        p = self.params
        intensity = intensity.to(self.weight.device, self.weight.dtype)
        rate = torch.full((intensity.shape[0],), p.input_rate, device=intensity.device, dtype=intensity.dtype)
        spikes = poisson_encode(intensity, p.time_steps, rate, p.dt, generator)
        counts = self.run(spikes, learn)
        for _ in range(p.max_retries):
            quiet = counts.sum(1) < p.min_spikes
            if not quiet.any():
                break
            rate[quiet] += p.rate_step
            spikes = poisson_encode(intensity[quiet], p.time_steps, rate[quiet], p.dt, generator)
            counts[quiet] = self.run(spikes, learn)
        if learn:
            self.normalize()
        return counts


def assign_labels(counts: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Class per neuron ``[N]`` from spike counts ``[M, N]`` of labelled samples ``[M]``.

    Neuron ``n`` gets ``argmax_c mean_{m: y_m = c} counts[m, n]``; neurons that never fire get -1.
    """
    if counts.dim() != 2 or labels.shape != (counts.shape[0],):
        raise ValueError(f"counts must be [M, N] and labels [M], got {tuple(counts.shape)} and {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    sums = torch.zeros(num_classes, counts.shape[1], dtype=counts.dtype, device=counts.device)
    sums.index_add_(0, labels.to(counts.device), counts)
    per_class = torch.bincount(labels, minlength=num_classes).to(counts.device, counts.dtype).clamp(min=1)
    rates = sums / per_class[:, None]
    out = rates.argmax(0)
    out[rates.sum(0) == 0] = -1
    return out


def predict_from_assignments(counts: torch.Tensor, assignments: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Predicted class ``[B]``: the class whose assigned neurons fire most on average (``counts [B, N]``)."""
    if counts.dim() != 2 or assignments.shape != (counts.shape[1],):
        raise ValueError(f"counts must be [B, N] and assignments [N], got {tuple(counts.shape)}, "
                         f"{tuple(assignments.shape)}")
    scores = torch.full((counts.shape[0], num_classes), -1.0, dtype=counts.dtype, device=counts.device)
    for c in range(num_classes):
        mask = assignments == c
        if mask.any():
            scores[:, c] = counts[:, mask].mean(1)
    return scores.argmax(1)
