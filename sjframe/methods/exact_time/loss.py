"""Loss, prediction and weight bumping of exact first-spike-time learning.

Loss per sample with label-neuron spike times ``t [C]`` and target ``y`` (times in units of tau_s)::

    L = log sum_k exp(-t_k / xi) + t_y / xi + alpha exp(t_y / beta)

(a cross-entropy of ``softmax(-t / xi)`` plus a regulariser pushing the target spike early); a
sample whose target neuron is silent (``t_y = inf``) gets the constant loss ``silent_target_loss``
(100, no gradient). Silent non-target neurons contribute ``exp(-inf) = 0``. The batch loss is the mean.
Prediction: the label neuron with the earliest spike; a sample whose earliest time is ``inf``
(no label spike) is predicted ``-1`` (always wrong).

Weight bumping: if, in a batch, the fraction of silent (sample, neuron) entries of a layer exceeds
that layer's limit, the lowest such layer's incoming weights are raised by ``bump`` instead of an
optimiser step: only the columns of neurons silent for at least one sample (targeted) or all
weights. ``bump`` starts at ``bump_value`` and doubles while the same layer is bumped on consecutive
batches (exponential bumping); it resets when another layer (or, after a normal step, any layer) is bumped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["exact_time_loss", "predict", "WeightBumper"]


def exact_time_loss(
    t_out: torch.Tensor,
    target: torch.Tensor,
    xi: float = 0.2,
    alpha: float = 0.005,
    beta: float = 1.0,
    silent_target_loss: float = 100.0,
) -> torch.Tensor:
    """Mean loss of label spike times ``t_out [B, C]`` (``inf`` = silent) for class targets ``target [B]``."""
    if t_out.dim() != 2:
        raise ValueError(f"t_out must be [B, C], got {tuple(t_out.shape)}")
    if target.shape != (t_out.shape[0],):
        raise ValueError(f"target must be [B] = [{t_out.shape[0]}], got {tuple(target.shape)}")
    if torch.isnan(t_out).any():
        raise ValueError("t_out contains NaN")
    if xi <= 0 or beta <= 0:
        raise ValueError(f"xi and beta must be positive, got xi={xi}, beta={beta}")
    target = target.long()
    if ((target < 0) | (target >= t_out.shape[1])).any():
        raise ValueError(f"target classes must be in [0, {t_out.shape[1]})")
    silent = torch.isinf(t_out)
    t_y = t_out.gather(1, target.unsqueeze(1)).squeeze(1)
    silent_target = torch.isinf(t_y)
    # rows with a silent target are replaced by a constant below: feed them zeros so that no inf/NaN
    # reaches autograd (0 * inf in the backward of an unused branch would give NaN)
    safe = torch.where(silent | silent_target.unsqueeze(1), torch.zeros_like(t_out), t_out)
    logits = torch.where(silent & ~silent_target.unsqueeze(1), torch.full_like(t_out, -torch.inf), -safe / xi)
    t_y_safe = safe.gather(1, target.unsqueeze(1)).squeeze(1)
    per_sample = torch.logsumexp(logits, dim=1) + t_y_safe / xi + alpha * torch.exp(t_y_safe / beta)
    per_sample = torch.where(silent_target, torch.full_like(per_sample, silent_target_loss), per_sample)
    return per_sample.mean()


def predict(t_out: torch.Tensor) -> torch.Tensor:
    """Class of the earliest label spike ``[B]`` (long); ``-1`` where no label neuron spiked."""
    first = t_out.argmin(dim=1)
    none = torch.isinf(t_out.gather(1, first.unsqueeze(1)).squeeze(1))
    return torch.where(none, torch.full_like(first, -1), first)


class WeightBumper:
    """Raises the weights of silent neurons when a layer loses too many spikes (see module docstring)."""

    def __init__(self, max_silent_fraction: Sequence[float], bump_value: float = 0.0005,
                 exponential: bool = True, targeted: bool = True) -> None:
        if bump_value <= 0:
            raise ValueError(f"bump_value must be positive, got {bump_value}")
        if any(not 0.0 <= f <= 1.0 for f in max_silent_fraction):
            raise ValueError(f"max_silent_fraction entries must be in [0, 1], got {list(max_silent_fraction)}")
        self.max_silent_fraction = [float(f) for f in max_silent_fraction]
        self.bump_value = float(bump_value)
        self.exponential = exponential
        self.targeted = targeted
        self.current = float(bump_value)
        self.last_bumped = -1  # layer index of the last batch's bump, -1 = none

    @torch.no_grad()
    def __call__(self, layers: Sequence[nn.Module], times: Sequence[torch.Tensor]) -> int:
        """Check every layer's output ``times [B, N_l]``; bump the lowest offending layer.

        Returns the bumped layer's index (the caller then skips the optimiser step) or -1.
        """
        if len(times) != len(self.max_silent_fraction) or len(layers) != len(times):
            raise ValueError(f"need one limit per layer: {len(self.max_silent_fraction)} limits, "
                             f"{len(layers)} layers, {len(times)} outputs")
        for i, t in enumerate(times):
            silent = ~torch.isfinite(t)
            if silent.float().mean().item() > self.max_silent_fraction[i]:
                if self.exponential and self.last_bumped == i:
                    self.current *= 2.0
                else:
                    self.current = self.bump_value
                weight = layers[i].weight
                if self.targeted:
                    weight += silent.any(dim=0).to(weight.dtype).unsqueeze(0) * self.current
                else:
                    weight += self.current
                self.last_bumped = i
                return i
        self.last_bumped = -1
        return -1

    def state_dict(self) -> dict[str, Any]:
        return {"current": self.current, "last_bumped": self.last_bumped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.current = float(state["current"])
        self.last_bumped = int(state["last_bumped"])
