"""Feed-forward networks of analytic-spike-time LIF layers with bias spikes.

Shapes: spike times are ``[B, F]`` (one first spike per neuron and sample; ``+inf`` = no spike),
not time-major frames: these networks work on event times, not on time steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sjframe.methods.exact_time.spiketime import NEURONS, spike_times

__all__ = ["ExactLayer", "ExactTimeNet"]


class ExactLayer(nn.Module):
    """``n_in`` inputs plus ``len(bias_times)`` bias spikes -> ``n_out`` LIF neurons.

    ``weight`` is ``[n_in + n_bias, n_out]`` (bias rows last), initialised ``N(weight_mean, weight_std^2)``.
    ``forward(t_in [B, n_in]) -> t_out [B, n_out]``; the bias spikes (fixed times) are appended to
    every sample's inputs. Per-sample gradient clipping (``max_dw_norm``) applies in training mode only.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        bias_times: Sequence[float] = (),
        weight_mean: float = 0.0,
        weight_std: float = 1.0,
        neuron: str = "tau_equal",
        theta: float = 1.0,
        max_dw_norm: float | None = None,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1:
            raise ValueError(f"n_in and n_out must be >= 1, got {n_in}, {n_out}")
        if neuron not in NEURONS:
            raise ValueError(f"neuron must be one of {NEURONS}, got {neuron!r}")
        if weight_std < 0:
            raise ValueError(f"weight_std must be >= 0, got {weight_std}")
        self.n_in, self.n_out, self.neuron, self.theta, self.max_dw_norm = n_in, n_out, neuron, theta, max_dw_norm
        self.register_buffer("bias_times", torch.tensor(list(bias_times), dtype=dtype))
        weight = torch.empty(n_in + len(bias_times), n_out, dtype=dtype)
        weight.normal_(weight_mean, weight_std, generator=generator)
        self.weight = nn.Parameter(weight)

    def forward(self, t_in: torch.Tensor) -> torch.Tensor:
        if t_in.dim() != 2 or t_in.shape[1] != self.n_in:
            raise ValueError(f"t_in must be [B, {self.n_in}], got {tuple(t_in.shape)}")
        t = torch.cat([t_in, self.bias_times.expand(t_in.shape[0], -1)], dim=1)
        clip = self.max_dw_norm if self.training else None
        return spike_times(t, self.weight, self.neuron, self.theta, clip)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_bias={self.bias_times.numel()}, n_out={self.n_out}, neuron={self.neuron}"


class ExactTimeNet(nn.Module):
    """``n_inputs -> layer_sizes[0] -> ... -> layer_sizes[-1]`` (the last layer is the label layer).

    ``forward(t_in [B, n_inputs]) -> (t_out [B, C], hidden: list of [B, H_l])``. The prediction is the
    label neuron that spikes first (see :func:`sjframe.methods.exact_time.loss.predict`).
    """

    def __init__(
        self,
        n_inputs: int,
        layer_sizes: Sequence[int],
        bias_times: Sequence[Sequence[float]],
        weight_mean: Sequence[float],
        weight_std: Sequence[float],
        neuron: str = "tau_equal",
        theta: float = 1.0,
        max_dw_norm: float | None = None,
        dtype: torch.dtype = torch.float64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        n = len(layer_sizes)
        for name, seq in (("bias_times", bias_times), ("weight_mean", weight_mean), ("weight_std", weight_std)):
            if len(seq) != n:
                raise ValueError(f"{name} needs one entry per layer ({n}), got {len(seq)}")
        gen = torch.Generator().manual_seed(seed)
        sizes = [n_inputs, *layer_sizes]
        self.layers = nn.ModuleList(
            ExactLayer(sizes[i], sizes[i + 1], bias_times[i], weight_mean[i], weight_std[i], neuron, theta,
                       max_dw_norm, dtype, gen)
            for i in range(n)
        )

    def forward(self, t_in: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden: list[torch.Tensor] = []
        t = t_in
        for i, layer in enumerate(self.layers):
            t = layer(t)
            if i < len(self.layers) - 1:
                hidden.append(t)
        return t, hidden
