"""Losses of FS / FR coding and of the other readouts.

Shapes: first-spike times ``t_F [B, N]``, output spikes ``[T, B, N]`` (time-major), logits
``[B, N]``, targets ``[B]`` (int64 class indices in ``[0, N)``). Every loss returns a scalar
tensor, averaged over the batch.

* :func:`fs_loss` (loss_mode ``first_time``)::

      L = mean_b[-log softmax(-alpha0 t_F)_y] + lambda mean_b[(exp(beta0 t_F,y) - 1) 1(t_F,y > T_in)]

  The softmax term is computed on ``t_F - min_n t_F`` (per sample, detached): a shift that leaves
  the softmax unchanged and keeps the exponent bounded. The ``treg = (lambda, beta0)`` term uses
  the unshifted ``t_F,y`` as written above; it penalises only a silent target neuron.
* :func:`fr_loss` (loss_mode ``firing_rate``): cross-entropy of ``softmax(alpha1 f)``, with
  ``f = (1 / T) sum_t S_t`` the spike count per step of each output neuron.
* :func:`rate_ce_loss` (seed 002): ``(1 / T) sum_t CE(S_t, y)``, the output spikes of each step
  taken as logits.
* :func:`logits_nll_loss`: ``mean_b[-log softmax(z)_y]`` of the logits ``z`` of a non-spiking readout.
* :func:`spike_count_loss`: ``lambda_s |N_s - target N_s|``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fr_loss", "fs_loss", "logits_nll_loss", "rate_ce_loss", "spike_count_loss"]


def _check_number(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_scores(name: str, scores: Tensor, ndim: int) -> None:
    if not isinstance(scores, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(scores).__name__}")
    if scores.dim() != ndim:
        layout = "[B, N]" if ndim == 2 else "[T, B, N]"
        raise ValueError(f"{name} must be {layout}, got shape {tuple(scores.shape)}")
    if not scores.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {scores.dtype}")
    if not bool(torch.isfinite(scores).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def _check_target(target: Tensor, batch: int, classes: int) -> None:
    if not isinstance(target, Tensor):
        raise ValueError(f"target must be a tensor, got {type(target).__name__}")
    if target.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"target must hold integer class indices, got {target.dtype}")
    if target.shape != (batch,):
        raise ValueError(f"target must be [B] = [{batch}], got shape {tuple(target.shape)}")
    if batch and (int(target.min()) < 0 or int(target.max()) >= classes):
        raise ValueError(f"target values must be in [0, {classes}), got [{int(target.min())}, {int(target.max())}]")


def fs_loss(t_F: Tensor, target: Tensor, alpha0: float, treg: Sequence[float] | None = None,
            T_in: int | None = None) -> Tensor:
    """FS loss on first-spike times ``t_F [B, N]`` (see the module docstring).

    Args:
        t_F: first-spike times from :func:`sjframe.coding.fs.first_spike_times`.
        target: class indices ``[B]``.
        alpha0: softmax temperature (> 0).
        treg: ``(lambda, beta0)`` of the silent-target penalty, or ``None`` / ``lambda = 0`` for none.
        T_in: simulation length ``T + T_empty``; required when ``lambda != 0``.
    """
    _check_scores("t_F", t_F, 2)
    _check_target(target, t_F.shape[0], t_F.shape[1])
    alpha0 = _check_number("alpha0", alpha0)
    if alpha0 <= 0:
        raise ValueError(f"alpha0 must be > 0, got {alpha0}")
    target = target.long()
    shifted = t_F - t_F.min(dim=1, keepdim=True).values.detach()
    loss = F.cross_entropy(-alpha0 * shifted, target)
    if treg is None:
        return loss
    if len(treg) != 2:
        raise ValueError(f"treg must be (lambda, beta0), got {treg!r}")
    lam, beta0 = _check_number("treg lambda", treg[0]), _check_number("treg beta0", treg[1])
    if lam == 0.0:
        return loss
    if isinstance(T_in, bool) or not isinstance(T_in, int) or T_in < 1:
        raise ValueError(f"T_in must be a positive integer when treg lambda != 0, got {T_in!r}")
    t_y = t_F.gather(1, target.unsqueeze(1)).squeeze(1)
    silent = (t_y > T_in).to(t_F.dtype)
    return loss + lam * ((torch.exp(beta0 * t_y) - 1.0) * silent).mean()


def fr_loss(spikes: Tensor, target: Tensor, alpha1: float) -> Tensor:
    """FR loss: ``CE(softmax(alpha1 f), y)`` with ``f = mean_t S_t`` of output spikes ``[T, B, N]``."""
    _check_scores("spikes", spikes, 3)
    _check_target(target, spikes.shape[1], spikes.shape[2])
    alpha1 = _check_number("alpha1", alpha1)
    rate = spikes.mean(dim=0)
    return F.cross_entropy(alpha1 * rate, target.long())


def rate_ce_loss(spikes: Tensor, target: Tensor) -> Tensor:
    """Seed 002's loss: ``(1 / T) sum_t CE(S_t, y)`` of output spikes ``[T, B, N]`` taken as logits."""
    _check_scores("spikes", spikes, 3)
    _check_target(target, spikes.shape[1], spikes.shape[2])
    T, B, N = spikes.shape
    per_step = F.cross_entropy(spikes.reshape(T * B, N), target.long().repeat(T), reduction="none")
    return per_step.view(T, B).mean(dim=1).mean(dim=0)


def logits_nll_loss(logits: Tensor, target: Tensor) -> Tensor:
    """``mean_b[-log softmax(z)_y]`` of logits ``[B, N]`` (a non-spiking readout)."""
    _check_scores("logits", logits, 2)
    _check_target(target, logits.shape[0], logits.shape[1])
    return F.cross_entropy(logits, target.long())


def spike_count_loss(n_s: Tensor, target_n_s: float, lambda_s: float) -> Tensor:
    """``lambda_s |N_s - target N_s|`` for a (differentiable) spike count ``n_s`` (a scalar tensor).

    ``n_s`` is the average number of spikes per neuron per sample over the window, summed over the
    hidden and output layers (:func:`sjframe.methods.surrogate.metrics.spike_count` builds it from layer spikes).
    """
    if not isinstance(n_s, Tensor) or n_s.numel() != 1:
        raise ValueError(f"n_s must be a one-element tensor, got {n_s!r}")
    if not n_s.is_floating_point() or not bool(torch.isfinite(n_s).all()):
        raise ValueError(f"n_s must be a finite floating-point value, got {n_s!r}")
    target_n_s = _check_number("target_n_s", target_n_s)
    lambda_s = _check_number("lambda_s", lambda_s)
    if target_n_s < 0 or lambda_s < 0:
        raise ValueError(f"target_n_s and lambda_s must be >= 0, got {target_n_s} and {lambda_s}")
    return lambda_s * (n_s.reshape(()) - target_n_s).abs()
