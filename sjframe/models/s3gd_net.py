"""The reference network of S3GD (Perez-Nieves & Goodman 2021) and LocalZO (Mukhoty et al. 2023).

Input ``x [T, B, *input_shape]`` (features flattened to ``N_in``)::

    s_1 = LIF(x W_1^T)          fused Linear (no bias) + LIF, dense / sparse / LocalZO backward
    s_l = LIF(s_{l-1} W_l^T)    (``hidden_sizes``: two layers of 200 in the papers)
    out_t = beta_ro out_{t-1} + (1 - beta_ro) s_L[t-1] W_ro^T,   out_0 = 0   (leaky, non-spiking)
    logits = max_t out_t  (FMNIST, N-MNIST)  or  sum_t out_t  (SHD)

LIF: ``beta = exp(-1 / tau_m_steps)``, threshold ``theta`` (1), subtractive reset (detached), one
step lag (:class:`sjframe.layers.sparse_linear_lif.SparseLinearLIF`). In ``sparse`` / ``localzo`` mode
each layer hands its active set to the next, so the input gradient of layer ``l`` is computed only
where layer ``l-1`` needs it (spec/sparse-and-zeroth-order.md section 2). Train with
``loss.mode: logits_nll`` (log-softmax + NLL); the engine adds ``regularizer(output)``.

Activity regulariser (per hidden layer ``S [T, B, N]``, summed over the batch, divided by ``B``)::

    upper = lambda_up * max(0, (1/N) sum_{t,j} S - f_up) ^ p_up          (mean spike count per neuron)
    lower = lambda_low * sum_j max(0, f_low - sum_t S_j)^2 / N

Init (``init``): ``normal``: ``W ~ N(0, (wm (1 - beta) / sqrt(fan_in))^2)`` (FMNIST; wm 20 in S3GD,
10 in LocalZO); ``uniform``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (N-MNIST, SHD). The readout
uses ``beta`` of the hidden layers in the normal init's scale, as the originals do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sjframe.core.config import dataclass_from_dict
from sjframe.layers.sparse_linear_lif import ActiveSet, SparseLinearLIF
from sjframe.models.base import ModelOutput
from sjframe.neurons.base import BACKENDS
from sjframe.neurons.params import check_tau, decay
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import surrogate_from_config

__all__ = ["S3GDNet", "S3GDNetOptions", "build_s3gd_net"]


@dataclass(frozen=True)
class S3GDNetOptions:
    """Options of :class:`S3GDNet` (time constants in steps of the data's ``dt``).

    Attributes:
        hidden_sizes: sizes of the spiking hidden layers (the papers: ``[200, 200]``).
        tau_m_steps: membrane time constant of the hidden LIF (10 ms / dt).
        tau_readout_steps: time constant of the leaky readout (10 ms / dt; SHD 20 ms / 2 ms = 10).
        theta: threshold of the hidden LIF.
        readout: ``max`` (max over time; FMNIST, N-MNIST) or ``sum`` (SHD).
        init: ``normal`` (scaled by ``weight_multiplier (1 - beta)``) or ``uniform``.
        weight_multiplier: ``wm`` of the normal init.
        surrogate: model-wide surrogate (default ``fast_sigmoid`` with ``rho = 100``, the S3GD one).
        gradient: model-wide gradient mode: ``dense | sparse | localzo`` or a mapping (default sparse).
        backend: ``torch``, ``cupy``, ``cpu`` or ``auto`` (the sparse backward kernels).
        layer_overrides: ``{"hidden1": {"gradient": ..., "surrogate": ...}}`` per layer.
        reg_lambda_upper, reg_f_upper, reg_p_upper: upper activity term (FMNIST/N-MNIST f_up 1, SHD 10).
        reg_lambda_lower, reg_f_lower: lower activity term.
    """

    hidden_sizes: list[int] = field(default_factory=lambda: [200, 200])
    tau_m_steps: float = 10.0
    tau_readout_steps: float = 10.0
    theta: float = 1.0
    readout: str = "max"
    init: str = "uniform"
    weight_multiplier: float = 20.0
    surrogate: str | dict[str, Any] | None = None
    gradient: str | dict[str, Any] | None = "sparse"
    backend: str = "torch"
    layer_overrides: dict[str, Any] = field(default_factory=dict)
    reg_lambda_upper: float = 0.06
    reg_f_upper: float = 1.0
    reg_p_upper: float = 1.0
    reg_lambda_lower: float = 100.0
    reg_f_lower: float = 1e-3

    def __post_init__(self) -> None:
        if not self.hidden_sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be a non-empty list of positive ints, got {self.hidden_sizes!r}")
        check_tau(self.tau_m_steps, "tau_m_steps")
        check_tau(self.tau_readout_steps, "tau_readout_steps")
        if not (math.isfinite(self.theta) and self.theta > 0):
            raise ValueError(f"theta must be positive, got {self.theta!r}")
        if self.readout not in ("max", "sum"):
            raise ValueError(f"readout must be 'max' or 'sum', got {self.readout!r}")
        if self.init not in ("normal", "uniform"):
            raise ValueError(f"init must be 'normal' or 'uniform', got {self.init!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        for name in ("weight_multiplier", "reg_p_upper"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("reg_lambda_upper", "reg_f_upper", "reg_lambda_lower", "reg_f_lower"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        valid_layers = {f"hidden{i + 1}" for i in range(len(self.hidden_sizes))}
        for layer, spec in self.layer_overrides.items():
            if layer not in valid_layers:
                raise ValueError(f"layer_overrides: unknown layer {layer!r}; valid: {sorted(valid_layers)}")
            if not isinstance(spec, dict) or set(spec) - {"surrogate", "gradient"}:
                raise ValueError(f"layer_overrides.{layer} must be a mapping with keys among ['gradient', 'surrogate']")
        # parse once here so that a bad value is a config error, not a failure at the first batch
        GradientSpec.from_config(self.gradient)
        if self.surrogate is not None:
            surrogate_from_config(self.surrogate)


class S3GDNet(nn.Module):
    """Input -> fused Linear+LIF hidden layers -> leaky non-spiking readout (see the module docstring).

    ``forward(x [T, B, *input_shape]) -> ModelOutput(logits [B, C], layer_spikes={"hidden1": ...})``.
    After each forward, :attr:`active_fraction` maps each hidden layer to its measured active
    fraction (None in dense mode).
    """

    def __init__(self, opts: S3GDNetOptions, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.opts = opts
        self.input_shape = tuple(input_shape)
        n_in = math.prod(self.input_shape)
        beta = decay(opts.tau_m_steps)
        self.beta_readout = decay(opts.tau_readout_steps)
        self.layers = nn.ModuleList()
        sizes = [n_in, *opts.hidden_sizes]
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            override = opts.layer_overrides.get(f"hidden{i + 1}", {})
            layer = SparseLinearLIF(
                fan_in, fan_out, tau_m=opts.tau_m_steps, theta=opts.theta,
                surrogate=override.get("surrogate", opts.surrogate), gradient=override.get("gradient", opts.gradient),
                backend=opts.backend,
            )
            self._init_weight(layer.weight, fan_in, beta)
            self.layers.append(layer)
        self.readout = nn.Parameter(torch.empty(num_classes, sizes[-1]))
        self._init_weight(self.readout, sizes[-1], beta)
        self.active_fraction: dict[str, float | None] = {}

    def _init_weight(self, weight: nn.Parameter, fan_in: int, beta: float) -> None:
        with torch.no_grad():
            if self.opts.init == "normal":
                weight.normal_(0.0, self.opts.weight_multiplier * (1.0 - beta) / math.sqrt(fan_in))
            else:
                bound = 1.0 / math.sqrt(fan_in)
                weight.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        if x.dim() < 3 or tuple(x.shape[2:]) != self.input_shape:
            raise ValueError(
                f"S3GDNet expects x [T, B, *{self.input_shape}], got shape {tuple(x.shape)}"
            )
        T, B = x.shape[:2]
        s = x.reshape(T, B, -1).to(self.readout.dtype)
        active: ActiveSet | None = None
        layer_spikes: dict[str, torch.Tensor] = {}
        self.active_fraction = {}
        for i, layer in enumerate(self.layers):
            out = layer(s, in_active=active)
            s, active = out.spikes, out.active
            name = f"hidden{i + 1}"
            layer_spikes[name] = s
            self.active_fraction[name] = None if active is None else active.fraction
        drive = (1.0 - self.beta_readout) * F.linear(s, self.readout)  # [T, B, C]
        out_t = torch.zeros_like(drive[0])
        outs = [out_t]
        for t in range(T - 1):
            out_t = self.beta_readout * out_t + drive[t]
            outs.append(out_t)
        out_seq = torch.stack(outs)
        logits = out_seq.max(0).values if self.opts.readout == "max" else out_seq.sum(0)
        return ModelOutput(logits=logits, layer_spikes=layer_spikes)

    def regularizer(self, output: ModelOutput) -> torch.Tensor:
        """Activity regulariser over the hidden layers (see the module docstring); a scalar."""
        o = self.opts
        total = self.readout.new_zeros(())
        for name in (f"hidden{i + 1}" for i in range(len(self.layers))):
            spikes = output.layer_spikes[name]  # [T, B, N]
            n = spikes.shape[2]
            batch = spikes.shape[1]
            counts = spikes.sum(0)  # [B, N] spikes per neuron
            upper = o.reg_lambda_upper * torch.clamp(counts.sum(1) / n - o.reg_f_upper, min=0.0) ** o.reg_p_upper
            lower = o.reg_lambda_lower * (torch.clamp(o.reg_f_lower - counts, min=0.0) ** 2).sum(1) / n
            total = total + (upper + lower).sum() / batch
        return total

    def extra_repr(self) -> str:
        return f"readout={self.opts.readout}, beta_readout={self.beta_readout:.4f}"


def build_s3gd_net(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> S3GDNet:
    """Registry builder of :class:`S3GDNet` (``options``: the keys of :class:`S3GDNetOptions`)."""
    return S3GDNet(dataclass_from_dict(S3GDNetOptions, options, "model"), input_shape, num_classes)


build_s3gd_net.options_class = S3GDNetOptions  # type: ignore[attr-defined]
