"""The settings of the ``exact_time`` method: the ``exact_time:`` config section (see :mod:`.method`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["ExactDataConfig", "ExactLossConfig", "ExactNetConfig", "ExactTimeConfig", "ExactTrainConfig"]


@dataclass(frozen=True)
class ExactDataConfig:
    """Data and encoding.

    Attributes:
        name: ``yinyang`` (generated) | ``mnist`` (784 inputs) | ``mnist16`` (16x16 = 256 inputs).
        root: folder of the MNIST IDX files.
        t_early, t_late: spike times of value 1 (bright) and 0 (dark), in tau_s.
        black_no_spike: black pixels do not spike; None: the data set's default (true for mnist16).
        n_val: MNIST: the last ``n_val`` training images are the validation set.
        max_train_samples: use only the first N training samples (smoke runs); None: all.
    """

    name: Literal["yinyang", "mnist", "mnist16"] = "yinyang"
    root: str = "datasets"
    t_early: float = 0.15
    t_late: float = 2.0
    black_no_spike: bool | None = None
    n_val: int = 10000
    max_train_samples: int | None = None

    def __post_init__(self) -> None:
        if not self.t_late > self.t_early >= 0:
            raise ValueError(f"need 0 <= t_early < t_late, got {self.t_early}, {self.t_late}")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ValueError(f"max_train_samples must be >= 1 or null, got {self.max_train_samples}")


@dataclass(frozen=True)
class ExactNetConfig:
    """Network: ``inputs -> layer_sizes[0] -> ... -> layer_sizes[-1]`` (= number of classes).

    Attributes:
        layer_sizes: neurons per layer, the last is the label layer.
        bias_times: per layer, the times of its bias input spikes (``[]``: no bias).
        weight_mean, weight_std: per layer, the normal initialisation of the weights.
        neuron: ``tau_equal`` (tau_m = tau_s, Lambert W) | ``tau_double`` (tau_m = 2 tau_s, closed form).
        threshold: firing threshold theta (E_l = 0).
        dtype: ``float64`` (default, as published) | ``float32``.
    """

    layer_sizes: tuple[int, ...] = (120, 3)
    bias_times: tuple[tuple[float, ...], ...] = ((0.9,), (0.9,))
    weight_mean: tuple[float, ...] = (1.5, 0.5)
    weight_std: tuple[float, ...] = (0.8, 0.8)
    neuron: Literal["tau_equal", "tau_double"] = "tau_equal"
    threshold: float = 1.0
    dtype: Literal["float64", "float32"] = "float64"

    def __post_init__(self) -> None:
        n = len(self.layer_sizes)
        if n < 1 or any(s < 1 for s in self.layer_sizes):
            raise ValueError(f"layer_sizes must be positive sizes, got {list(self.layer_sizes)}")
        for name in ("bias_times", "weight_mean", "weight_std"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one entry per layer ({n}), got {len(getattr(self, name))}")
        if any(s < 0 for s in self.weight_std):
            raise ValueError(f"weight_std must be >= 0, got {list(self.weight_std)}")
        if self.threshold <= 0:
            raise ValueError(f"threshold must be positive, got {self.threshold}")


@dataclass(frozen=True)
class ExactLossConfig:
    """``log sum_k exp(-t_k/xi) + t_y/xi + alpha exp(t_y/beta)``; a silent target costs ``silent_target_loss``."""

    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 1.0
    silent_target_loss: float = 100.0

    def __post_init__(self) -> None:
        if self.xi <= 0 or self.beta <= 0:
            raise ValueError(f"xi and beta must be positive, got xi={self.xi}, beta={self.beta}")


@dataclass(frozen=True)
class ExactTrainConfig:
    """Optimisation.

    Attributes:
        epochs, batch_size: training length and batch; batch_size_eval: batch of validation / test.
        optimizer: ``adam`` | ``sgd`` (with ``momentum``); lr; StepLR(lr_step, lr_gamma) per epoch.
        max_dw_norm: per-sample weight-gradient clipping limit (null: off).
        max_silent_fraction: per layer, the silent fraction of a batch above which weights are bumped.
        bump_value, bump_exponential, bump_targeted: weight bumping (see sjframe.methods.exact_time.loss).
        input_noise_std: Gaussian noise on the input spike times in training (negative times reflected).
        seed: weight initialisation, data order, noise. device: ``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``.
        threads: torch CPU threads (null: torch's default). save_every: savepoint every N epochs (0: none).
        plots: write the figures at the end of training (``test.py`` / ``eval`` always do).
    """

    epochs: int = 300
    batch_size: int = 150
    batch_size_eval: int = 1000
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.005
    momentum: float = 0.0
    lr_step: int = 20
    lr_gamma: float = 0.95
    max_dw_norm: float | None = 0.2
    max_silent_fraction: tuple[float, ...] = (0.3, 0.0)
    bump_value: float = 0.0005
    bump_exponential: bool = True
    bump_targeted: bool = True
    input_noise_std: float = 0.0
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    save_every: int = 10
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "batch_size_eval", "lr_step"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"need lr > 0 and 0 < lr_gamma <= 1, got lr={self.lr}, lr_gamma={self.lr_gamma}")
        if self.max_dw_norm is not None and self.max_dw_norm <= 0:
            raise ValueError(f"max_dw_norm must be positive or null, got {self.max_dw_norm}")
        if any(not 0 <= f <= 1 for f in self.max_silent_fraction):
            raise ValueError(f"max_silent_fraction entries must be in [0, 1], got {list(self.max_silent_fraction)}")
        if self.bump_value <= 0 or self.input_noise_std < 0 or self.save_every < 0:
            raise ValueError("bump_value must be > 0, input_noise_std >= 0 and save_every >= 0")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")


@dataclass(frozen=True)
class ExactTimeConfig:
    """The ``exact_time:`` section of a config."""

    data: ExactDataConfig = field(default_factory=ExactDataConfig)
    net: ExactNetConfig = field(default_factory=ExactNetConfig)
    loss: ExactLossConfig = field(default_factory=ExactLossConfig)
    train: ExactTrainConfig = field(default_factory=ExactTrainConfig)

    def __post_init__(self) -> None:
        if len(self.train.max_silent_fraction) != len(self.net.layer_sizes):
            raise ValueError(
                f"train.max_silent_fraction needs one entry per layer ({len(self.net.layer_sizes)}), "
                f"got {len(self.train.max_silent_fraction)}"
            )
