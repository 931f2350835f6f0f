"""Output decoders of FS and FR coding, and the one definition of a *silent* sample.

A sample is **silent** when no output neuron spikes at any step of the window
(``sum_{t, n} S[t, b, n] == 0``). Decoders that need a spike return :data:`SILENT` (``-1``, never a
class index, so it never equals a target) for such a sample.

* :func:`fs_predict` (the paper's rule): ``y_hat = argmin_n t_F[b, n]`` on first-spike times
  ``t_F [B, N]`` from the spike-to-time encoder. A silent output still decodes: every neuron then
  has ``t_F = T + r_n`` and the neuron of highest peak potential (rank 1) wins -- an analog readout
  that costs no spike. Ties (equal ``t_F``) go to the lowest neuron index.
* :func:`fs_spike_predict`: the decision by the first output spike only. Let ``k*`` be the first
  0-based step at which any output neuron spikes; the prediction is the neuron that spikes at
  ``k*``. **Tie rule**: when several neurons first spike at the same step ``k*``, the one with the
  larger membrane potential ``h[k*, b, n]`` at that step wins (``h`` the pre-reset potential the
  model reports); without ``h``, or among equal potentials, the lowest neuron index wins. A silent
  sample gives :data:`SILENT`, and its decision step is ``T`` (never reached in the window).
* :func:`fr_predict`: ``y_hat = argmax_n sum_t S[t, b, n]`` on output spikes ``[T, B, N]``; ties
  (equal counts) go to the lowest neuron index; **a silent sample gives** :data:`SILENT` (no spike,
  no rate decision). :mod:`sjframe.methods.surrogate.metrics` uses these decoders, so ``acc_fr`` scores a silent
  sample as wrong, exactly as ``fr_predict`` does.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "SILENT",
    "first_spike_steps",
    "fr_predict",
    "fs_predict",
    "fs_spike_predict",
    "silent_samples",
    "spike_counts",
]

SILENT = -1
"""The prediction of a decoder that needs a spike, for a sample whose output never spikes."""


def _check(name: str, x: Tensor, ndim: int, layout: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != ndim or x.shape[-1] < 1:
        raise ValueError(f"{name} must be {layout} with N >= 1, got shape {tuple(x.shape)}")
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN values")


def fs_predict(t_F: Tensor) -> Tensor:
    """FS prediction ``[B]`` (int64) by the paper's rule: the neuron with the earliest first-spike time.

    A silent output still decodes (to the neuron of highest potential, see the module docstring).
    """
    _check("t_F", t_F, 2, "[B, N]")
    return torch.argmin(t_F, dim=1)


def spike_counts(spikes: Tensor) -> Tensor:
    """Spike counts ``[B, N]`` of output spikes ``[T, B, N]`` over the whole window."""
    _check("spikes", spikes, 3, "[T, B, N]")
    return spikes.sum(dim=0)


def silent_samples(spikes: Tensor) -> Tensor:
    """Mask ``[B]`` (bool) of the samples whose output ``[T, B, N]`` has no spike in the window."""
    _check("spikes", spikes, 3, "[T, B, N]")
    return ~(spikes > 0).any(dim=2).any(dim=0)


def first_spike_steps(spikes: Tensor) -> Tensor:
    """0-based step ``[B, N]`` (int64) of each neuron's first spike; ``T`` for a neuron that never spikes."""
    _check("spikes", spikes, 3, "[T, B, N]")
    T = spikes.shape[0]
    fired = spikes > 0
    first = torch.argmax(fired.to(torch.uint8), dim=0)  # the first maximal entry: the first spike
    return torch.where(fired.any(dim=0), first, torch.full_like(first, T))


def fs_spike_predict(spikes: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """FS prediction by the first output spike: ``(pred [B] int64, step [B] int64)``.

    ``pred`` is the neuron that spikes first (:data:`SILENT` for a silent sample), ``step`` the
    0-based step of that spike (``T`` for a silent sample). Ties at the same first step go to the
    larger potential ``h [T, B, N]`` at that step when ``h`` is given, then to the lowest index.
    """
    first = first_spike_steps(spikes)  # validates spikes
    T, B, N = spikes.shape
    step = first.amin(dim=1)  # [B]
    candidate = first == step.unsqueeze(1)  # [B, N]; all True for a silent sample (step == T)
    if h is not None:
        if not isinstance(h, Tensor) or h.shape != spikes.shape:
            raise ValueError(f"h must be a tensor of the shape of spikes {tuple(spikes.shape)}, got "
                             f"{tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__}")
        at = step.clamp(max=T - 1).view(1, B, 1).expand(1, B, N)
        h_at = h.detach().gather(0, at.to(h.device)).squeeze(0).to(torch.float64)  # [B, N]
        if bool(torch.isnan(h_at).any()):
            raise ValueError("h contains NaN values at the first-spike step")
        score = torch.where(candidate, h_at, torch.full_like(h_at, -torch.inf))
        best = score.amax(dim=1, keepdim=True)
        candidate = candidate & (score == best)
    # the lowest index among the remaining candidates (argmax returns the first maximal entry)
    pred = torch.argmax(candidate.to(torch.uint8), dim=1)
    pred = torch.where(step < T, pred, torch.full_like(pred, SILENT))
    return pred, step


def fr_predict(spikes: Tensor) -> Tensor:
    """FR prediction ``[B]`` (int64): the neuron with the most spikes over the window.

    Ties go to the lowest index; a silent sample (no output spike) gives :data:`SILENT` (``-1``).
    """
    counts = spike_counts(spikes)
    pred = torch.argmax(counts, dim=1)
    return torch.where(counts.amax(dim=1) > 0, pred, torch.full_like(pred, SILENT))
