"""Output decoders of FS and FR coding.

* FS: ``y_hat = argmin_n t_F[b, n]`` on first-spike times ``t_F [B, N]``;
* FR: ``y_hat = argmax_n sum_t S[t, b, n]`` on output spikes ``[T, B, N]``.

Ties go to the lowest neuron index (so a sample whose output is all silent decodes to class 0 by
FR; by FS a silent output still decodes to the neuron of highest potential, rank 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["fr_predict", "fs_predict", "spike_counts"]


def _check(name: str, x: Tensor, ndim: int, layout: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(x).__name__}")
    if x.dim() != ndim or x.shape[-1] < 1:
        raise ValueError(f"{name} must be {layout} with N >= 1, got shape {tuple(x.shape)}")
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name} contains NaN values")


def fs_predict(t_F: Tensor) -> Tensor:
    """FS prediction ``[B]`` (int64): the neuron with the earliest first-spike time."""
    _check("t_F", t_F, 2, "[B, N]")
    return torch.argmin(t_F, dim=1)


def spike_counts(spikes: Tensor) -> Tensor:
    """Spike counts ``[B, N]`` of output spikes ``[T, B, N]`` over the whole window."""
    _check("spikes", spikes, 3, "[T, B, N]")
    return spikes.sum(dim=0)


def fr_predict(spikes: Tensor) -> Tensor:
    """FR prediction ``[B]`` (int64): the neuron with the most spikes over the window."""
    return torch.argmax(spike_counts(spikes), dim=1)
