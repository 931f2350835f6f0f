"""Non-spiking baselines on the same frames as the SNNs: logistic regression, an MLP and a GRU (issue #17).

They are models like any other (``model.name: logreg | mlp | gru``), trained by the ``surrogate``
method's engine with ``loss.mode: logits_nll`` (cross-entropy on the logits) on the same data sets,
windows and validation splits as the SNNs; ``test.py`` reports their accuracy (the argmax of the
logits) and no spike metric (:class:`~sjframe.models.base.ModelOutput` with ``logits`` only).

Input ``x [T, B, *input_shape]`` (binned event counts, features flattened to ``N``), as for every model.

**Pooling** (:func:`pool_counts`): the ``T`` frames are summed into ``time_bins`` contiguous bins and
the ``N`` channels into ``channel_bins`` groups of neighbouring channels. Bin ``k`` of ``n`` over a
length ``L`` covers ``[floor(k L / n), floor((k + 1) L / n))``, so the bins differ in size by at most
one when ``n`` does not divide ``L``; ``None`` keeps every frame / channel. Then (optional)
``log(1 + count)`` and an input normalisation: ``batchnorm`` is ``BatchNorm1d(affine=False)`` on the
features (batch statistics in training, running statistics at evaluation: a fixed affine map of the
inputs, so the logistic regression stays linear in its inputs and nothing is fitted on the test set).

* ``logreg``: ``z = W f + b``, ``f [B, time_bins * channel_bins]`` the pooled features.
* ``mlp``:    ``z = W_L relu(... relu(W_1 f + b_1) ...) + b_L`` (``hidden_sizes``; dropout after each ReLU).
* ``gru``:    ``h_t = GRU(g_t, h_{t-1})`` over the pooled frames ``g [T', B, channel_bins]``
  (``T' = time_bins`` or ``T``), ``z = W r + b`` with ``r = h_{T'}`` (``readout: last``) or the
  mean / max of ``h_t`` over time; ``num_layers`` stacked, dropout before the readout.

Static inputs (Yin-Yang's ``encoding: raw``, items ``[4]``) reach these models as one frame
``[1, B, 4]`` (:func:`sjframe.methods.surrogate.evaluation.as_frames`): with ``time_bins: 1`` and no
``log_counts`` the features are the raw values. Builders carry ``non_spiking = True``, which the
surrogate method reads to allow such inputs and to require ``loss.mode: logits_nll``.

Parameter counts (:func:`parameter_count`): logistic regression ``F C + C``; GRU
``3 H (N' + H) + 6 H`` per layer (PyTorch's two bias vectors) ``+ H C + C``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from sjframe.core.config import dataclass_from_dict
from sjframe.models.base import ModelOutput
from sjframe.models.fcnet import check_input

__all__ = [
    "GRUBaseline",
    "GRUOptions",
    "LogRegOptions",
    "MLPOptions",
    "PooledCountsClassifier",
    "bin_matrix",
    "build_gru",
    "build_logreg",
    "build_mlp",
    "parameter_count",
    "pool_counts",
]

INPUT_NORMS = ("none", "batchnorm")
READOUTS = ("last", "mean", "max")


def _check_bins(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"model.{name} must be a positive integer or null, got {value!r}")


@dataclass(frozen=True)
class _PoolOptions:
    """Pooling and input transform shared by the baselines.

    Attributes:
        time_bins: number of time bins the ``T`` frames are summed into (None: every frame).
        channel_bins: number of channel groups the ``N`` features are summed into (None: every channel).
        log_counts: use ``log(1 + count)`` of the pooled counts.
        input_norm: ``none`` or ``batchnorm`` (``BatchNorm1d(affine=False)`` on the features).
    """

    time_bins: int | None = 10
    channel_bins: int | None = None
    log_counts: bool = True
    input_norm: Literal["none", "batchnorm"] = "batchnorm"

    def __post_init__(self) -> None:
        _check_bins("time_bins", self.time_bins)
        _check_bins("channel_bins", self.channel_bins)
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"model.input_norm must be one of {list(INPUT_NORMS)}, got {self.input_norm!r}")


@dataclass(frozen=True)
class LogRegOptions(_PoolOptions):
    """Options of ``logreg`` (the pooling ones, see :class:`_PoolOptions`)."""


@dataclass(frozen=True)
class MLPOptions(_PoolOptions):
    """Options of ``mlp``: the pooling ones, plus

    Attributes:
        hidden_sizes: sizes of the ReLU hidden layers.
        dropout: dropout probability after each hidden ReLU.
    """

    hidden_sizes: list[int] = field(default_factory=lambda: [256, 256])
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.hidden_sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                        for n in self.hidden_sizes):
            raise ValueError(f"model.hidden_sizes must be a non-empty list of positive sizes, got {self.hidden_sizes!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")


@dataclass(frozen=True)
class GRUOptions(_PoolOptions):
    """Options of ``gru``: the pooling ones (defaults: every frame and channel, raw counts), plus

    Attributes:
        hidden_size: GRU state size ``H``.
        num_layers: stacked GRU layers.
        readout: ``last`` (the final state), ``mean`` or ``max`` of the states over time.
        dropout: dropout before the linear readout (and between stacked layers).
    """

    time_bins: int | None = None
    log_counts: bool = False
    hidden_size: int = 128
    num_layers: int = 1
    readout: Literal["last", "mean", "max"] = "last"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("hidden_size", "num_layers"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key} must be a positive integer, got {value!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"model.readout must be one of {list(READOUTS)}, got {self.readout!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")


# ------------------------------------------------------------------------------------------------ pooling
def bin_matrix(length: int, bins: int | None, dtype: torch.dtype = torch.float32,
               device: torch.device | None = None) -> torch.Tensor:
    """``[length, bins]`` 0/1 matrix: entry ``(i, k)`` is 1 when ``floor(k L / n) <= i < floor((k + 1) L / n)``
    (``bins`` None: the identity, every index its own bin). Summing ``x @ M`` pools a last axis of size ``length``."""
    if bins is None:
        return torch.eye(length, dtype=dtype, device=device)
    if bins > length:
        raise ValueError(f"cannot sum {length} steps / channels into {bins} bins (more bins than entries)")
    index = torch.arange(length, device=device)
    # entry i is in bin k iff floor(k L / n) <= i < floor((k + 1) L / n), i.e. k = ceil((i + 1) n / L) - 1
    which = torch.div((index + 1) * bins + length - 1, length, rounding_mode="floor") - 1
    return torch.nn.functional.one_hot(which, bins).to(dtype)


def pool_counts(x: torch.Tensor, time_bins: int | None, channel_bins: int | None) -> torch.Tensor:
    """Sum frames ``x [T, B, N]`` into ``[T', B, N']`` (``T' = time_bins`` or ``T``, ``N' = channel_bins`` or ``N``).

    Bin ``k`` of ``n`` over an axis of length ``L`` covers ``[floor(k L / n), floor((k + 1) L / n))`` (:func:`bin_matrix`).
    """
    T, _, N = x.shape
    if time_bins is not None:
        if time_bins > T:
            raise ValueError(f"model.time_bins = {time_bins} exceeds the window's T = {T} frames")
        x = torch.einsum("tk,tbn->kbn", bin_matrix(T, time_bins, x.dtype, x.device), x)
    if channel_bins is not None:
        x = x @ bin_matrix(N, channel_bins, x.dtype, x.device)
    return x


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm without affine has none)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class _Features(nn.Module):
    """Pooled, transformed frames ``[T', B, N']`` of ``x [T, B, *input_shape]`` (see the module docstring)."""

    def __init__(self, opts: _PoolOptions, input_shape: tuple[int, ...], norm_features: int) -> None:
        super().__init__()
        self.opts = opts
        self.input_shape = tuple(input_shape)
        self.channels = math.prod(self.input_shape)
        if opts.channel_bins is not None and opts.channel_bins > self.channels:
            raise ValueError(f"model.channel_bins = {opts.channel_bins} exceeds the input's {self.channels} channels")
        self.norm = nn.BatchNorm1d(norm_features, affine=False) if opts.input_norm == "batchnorm" else nn.Identity()

    def frames(self, x: torch.Tensor, who: str) -> torch.Tensor:
        check_input(x, self.input_shape, who)
        g = pool_counts(x.flatten(2), self.opts.time_bins, self.opts.channel_bins)
        return torch.log1p(g.clamp_min(0.0)) if self.opts.log_counts else g


class PooledCountsClassifier(nn.Module):
    """``logreg`` (no hidden layer) and ``mlp``: a classifier of the flattened pooled features.

    ``forward(x [T, B, *input_shape]) -> ModelOutput(logits [B, C])``; the features are ordered
    time bin major: ``f[b, k * N' + j]`` = bin ``k``, channel group ``j``.
    """

    def __init__(self, opts: _PoolOptions, input_shape: tuple[int, ...], num_classes: int,
                 hidden_sizes: list[int] | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.opts = opts
        n_channels = (opts.channel_bins if opts.channel_bins is not None else math.prod(input_shape))
        # the feature count needs T when time_bins is None: only a fixed number of time bins gives fixed features
        if opts.time_bins is None:
            raise ValueError("model.time_bins must be set for logreg / mlp (a fixed number of features); "
                             "use time_bins: 1 for static inputs")
        self.num_features = opts.time_bins * n_channels
        self.features = _Features(opts, input_shape, self.num_features)
        layers: list[nn.Module] = []
        n_in = self.num_features
        for n in hidden_sizes or []:
            layers += [nn.Linear(n_in, n), nn.ReLU(), nn.Dropout(dropout)]
            n_in = n
        layers.append(nn.Linear(n_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        g = self.features.frames(x, type(self).__name__)  # [T', B, N']
        f = g.permute(1, 0, 2).reshape(g.shape[1], -1)  # [B, T' * N']
        return ModelOutput(logits=self.net(self.features.norm(f)))


class GRUBaseline(nn.Module):
    """``gru``: a GRU over the pooled frames and a linear readout.

    ``forward(x [T, B, *input_shape]) -> ModelOutput(logits [B, C])``; the normalisation (``batchnorm``)
    is over the ``N'`` channels with statistics over every frame and sample.
    """

    def __init__(self, opts: GRUOptions, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.opts = opts
        n_in = opts.channel_bins if opts.channel_bins is not None else math.prod(input_shape)
        self.features = _Features(opts, input_shape, n_in)
        self.gru = nn.GRU(n_in, opts.hidden_size, num_layers=opts.num_layers,
                          dropout=opts.dropout if opts.num_layers > 1 else 0.0)
        self.drop = nn.Dropout(opts.dropout)
        self.out = nn.Linear(opts.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        g = self.features.frames(x, type(self).__name__)  # [T', B, N']
        T, B, N = g.shape
        g = self.features.norm(g.reshape(T * B, N)).reshape(T, B, N)
        h, _ = self.gru(g)  # [T', B, H]
        if self.opts.readout == "last":
            r = h[-1]
        elif self.opts.readout == "mean":
            r = h.mean(dim=0)
        else:
            r = h.amax(dim=0)
        return ModelOutput(logits=self.out(self.drop(r)))


def build_logreg(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> PooledCountsClassifier:
    """Registry builder of ``logreg`` (``options``: the keys of :class:`LogRegOptions`)."""
    return PooledCountsClassifier(dataclass_from_dict(LogRegOptions, options, "model"), input_shape, num_classes)


def build_mlp(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> PooledCountsClassifier:
    """Registry builder of ``mlp`` (``options``: the keys of :class:`MLPOptions`)."""
    opts = dataclass_from_dict(MLPOptions, options, "model")
    return PooledCountsClassifier(opts, input_shape, num_classes, opts.hidden_sizes, opts.dropout)


def build_gru(options: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> GRUBaseline:
    """Registry builder of ``gru`` (``options``: the keys of :class:`GRUOptions`)."""
    return GRUBaseline(dataclass_from_dict(GRUOptions, options, "model"), input_shape, num_classes)


for _builder, _options in ((build_logreg, LogRegOptions), (build_mlp, MLPOptions), (build_gru, GRUOptions)):
    _builder.options_class = _options  # type: ignore[attr-defined]
    _builder.non_spiking = True  # type: ignore[attr-defined]
