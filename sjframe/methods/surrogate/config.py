"""Experiment config of the ``surrogate`` method: YAML + command-line overrides -> typed, frozen dataclasses.

A config file (``configs/*.yaml``) looks like::

    method: surrogate            # BPTT with surrogate gradients, FS / FR coding (the default)
    seed: 0
    data:   {name: shd, T: 80, T_empty: 20, dt: 10, test_T: 100, test_T_empty: 0}
    model:  {name: fcnet, hidden_sizes: [256, 256], neuron_type: culif,
             neuron1: {tau_m_steps: 5, tau_s_steps: 5, theta: 5},
             neuron2: {tau_m_steps: 60, tau_s_steps: 60, theta: 10}}
    train:  {epochs: 80, batch_size: 128, lr: 1.0e-3}
    loss:   {mode: first_time, alpha0: 0.2, D: 16, A: 200, treg_lambda: 0.01, treg_beta0: 0.02}

Every key has a default (see the dataclasses below); the resolved config, with the defaults
filled in, is written into every run directory. Unknown keys and wrong types raise
:class:`ConfigError` naming the key and listing the valid ones; ``0`` and ``false`` are values.

**Units.** ``data.dt`` is in ms (the bin width). Neuron time constants are in **steps** of ``dt``
(keys ``tau_m_steps``, ``tau_s_steps``, ``tau_w_steps``): the paper's tau1 = 50 ms at dt = 10 ms is
``tau_m_steps: 5``. Windows ``T``, ``T_empty`` are in steps.

**Windows.** ``data.T`` / ``data.T_empty`` are the training (and validation) window;
``data.test_T`` / ``data.test_T_empty`` the test window (``null``: the training one). ``test.py``
sets the test window from its ``--T`` / ``--T_empty``.

**Command line.** Any value: ``--section.key value [value ...]`` (or ``--section.key=value``), e.g.
``--train.lr 3e-4 --model.hidden_sizes 128 128 --data.T_empty 0``. Values are parsed by the type of
the key (``none``/``null`` for an optional value). Seed 003's flags are mapped onto the config
(:data:`TRAIN_FLAGS`, :data:`TEST_FLAGS`), so its ``run.sh`` lines work.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from sjframe.core.config import CliOptions, ConfigError, dataclass_from_dict, dataclass_to_dict
from sjframe.core.config import key_type as config_key_type
from sjframe.core.distributed import DistBackend

__all__ = [
    "TEST_FLAGS",
    "TRAIN_FLAGS",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LossConfig",
    "ModelConfig",
    "SurrogateConfig",
    "TrainConfig",
    "cli_options",
    "config_to_dict",
    "key_type",
    "resolve_config",
]

#: the largest finite float32 (learning rates above it overflow in the parameters' dtype)
FLOAT32_MAX = 3.4028234663852886e38
LOSS_MODES = ("first_time", "firing_rate", "rate_ce", "logits_nll")
SELECT_METRICS = ("acc", "acc_fs", "acc_fs_spike", "acc_fr", "loss")
PROTOCOLS = ("validated", "paper")


@dataclass(frozen=True)
class DataConfig:
    """Data set and windows (passed to ``sjframe.data.build_dataset``).

    Attributes:
        name: data set name (``sjframe.data`` registry).
        root: folder of the data files (None: the data set's default, ``datasets``).
        T, T_empty: training / validation window in steps (``T_empty`` empty bins appended); None: the data set's default.
        dt: bin width in ms; None: the data set's default.
        test_T, test_T_empty: test window in steps; None: the training window.
        clamp, val_fraction, val_seed: common data set options; None: the data set's default
            (``val_fraction`` / ``val_seed``: the older, random form of ``val_split``).
        val_split: the validation split carved from the training file, ``{fraction: 0.1, by: speaker | random,
            seed: 0}`` (``sjframe.data.common``); None: the data set's default (by speaker where the file has
            speaker ids, e.g. SHD and the spoken digits; random otherwise). The test set is never used for any
            choice (``best.pt``, tuning).
        options: further data-set-specific options (e.g. Yin-Yang ``encoding``), passed as they are.
        num_workers: DataLoader worker processes.
    """

    name: str = "yinyang"
    root: str | None = None
    T: int | None = None
    T_empty: int | None = None
    dt: float | None = None
    test_T: int | None = None
    test_T_empty: int | None = None
    clamp: bool | None = None
    val_fraction: float | None = None
    val_seed: int | None = None
    val_split: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    num_workers: int = 0

    def __post_init__(self) -> None:
        for key in ("T", "test_T"):
            value = getattr(self, key)
            if value is not None and value < 1:
                raise ValueError(f"data.{key} must be >= 1, got {value}")
        for key in ("T_empty", "test_T_empty"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"data.{key} must be >= 0, got {value}")
        if self.dt is not None and not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"data.dt must be a positive number of ms, got {self.dt}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.val_split is not None:
            if self.val_fraction is not None or self.val_seed is not None:
                raise ValueError("give either data.val_split or data.val_fraction / data.val_seed (the older random "
                                 "form), not both")
            from sjframe.data.common import resolve_val_split

            resolve_val_split({"val_split": self.val_split})  # keys, by and fraction checked before a run starts
        reserved = {"root", "T", "T_empty", "dt", "clamp", "val_fraction", "val_seed", "val_split"} & set(self.options)
        if reserved:
            raise ValueError(f"data.options must not repeat the data keys {sorted(reserved)}; set them in data directly")

    def window(self, split: str) -> tuple[int | None, int | None]:
        """``(T, T_empty)`` of ``split`` (the test split uses ``test_T`` / ``test_T_empty`` when set)."""
        if split == "test":
            return (self.T if self.test_T is None else self.test_T,
                    self.T_empty if self.test_T_empty is None else self.test_T_empty)
        return self.T, self.T_empty

    def dataset_options(self, split: str) -> dict[str, Any]:
        """Keyword options of ``build_dataset(name, split, **options)`` (unset common options left out)."""
        T, T_empty = self.window(split)
        common = {"root": self.root, "T": T, "T_empty": T_empty, "dt": self.dt, "clamp": self.clamp,
                  "val_fraction": self.val_fraction, "val_seed": self.val_seed, "val_split": self.val_split}
        out = {k: v for k, v in common.items() if v is not None}
        out.update(self.options)
        return out


@dataclass(frozen=True)
class ModelConfig:
    """``name`` (``sjframe.models.MODELS``) and the model's own options (validated by its options class).

    In YAML the options sit next to ``name``: ``model: {name: fcnet, hidden_sizes: [256, 256], ...}``.
    """

    name: str = "fcnet"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation.

    Attributes:
        epochs: training epochs.
        batch_size / test_batch_size: batch sizes of training and of validation / test, **global**: under
            torchrun each of the N processes takes ``batch_size / N`` samples per step (``batch_size`` must be
            divisible by N) and ``ceil(test_batch_size / N)`` per evaluation batch, so a config means the same
            optimisation on any number of processes (README "Training on several GPUs": scaling ``lr`` with a
            larger batch).
        lr, weight_decay, amsgrad: Adam's (the paper: amsgrad, weight decay 1e-4).
        grad_clip: maximum gradient norm (None: no clipping; the paper: 10).
        scheduler: ``none | cosine | multistep`` (stepped once per epoch).
        cosine_t_max, cosine_eta_min: CosineAnnealingLR's T_max (epochs) and eta_min.
        milestones, gamma: MultiStepLR's.
        select_metric: validation metric choosing the best checkpoint (higher is better; ``loss`` is
            lower-better); None: ``acc_fs`` for ``first_time``, ``acc`` for ``logits_nll``, else ``acc_fr``.
        protocol: ``validated`` (the default: a validation split held out of the training file, ``best.pt``
            chosen on it) or ``paper`` (seed 003's protocol: train on the whole training file, no validation,
            no ``best.pt``; the last epoch is tested, and every report says so: not comparable to validated
            numbers). ``--protocol paper``.
        tensorboard: also write the training curves (loss, accuracies, ``acc_fs_spike``, ``silent_fraction``,
            N_s, lr) as TensorBoard event files under ``<run_dir>/tensorboard/`` (rank 0; a resume appends).
        log_interval: batches between progress-bar updates of the running loss.
        init_checkpoint: model weights to start from (a checkpoint file or run directory; seed 003's ``--load_pt_file``).
        max_batches: stop each epoch after this many batches (None: all; for smoke tests).
        progress: show tqdm progress bars.
        compile: run the training forward through ``torch.compile`` (backend ``compile_backend``: ``inductor``,
            ``aot_eager``, ...); evaluation stays eager.
        sync_bn: under torchrun, convert BatchNorm layers to ``SyncBatchNorm`` (statistics of the global batch;
            PyTorch supports it on CUDA only).
        dist_backend: process-group backend under torchrun: ``auto`` (``nccl`` on CUDA, ``gloo`` on CPU), ``nccl``, ``gloo``.
        find_unused_parameters: DistributedDataParallel's option, for models with trainable parameters outside the
            loss's autograd graph.
    """

    epochs: int = 10
    batch_size: int = 128
    test_batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    amsgrad: bool = True
    grad_clip: float | None = 10.0
    scheduler: Literal["none", "cosine", "multistep"] = "none"
    cosine_t_max: int = 128
    cosine_eta_min: float = 0.0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    select_metric: str | None = None
    log_interval: int = 10
    init_checkpoint: str | None = None
    max_batches: int | None = None
    progress: bool = True
    compile: bool = False
    compile_backend: str = "inductor"
    sync_bn: bool = False
    dist_backend: DistBackend = "auto"
    find_unused_parameters: bool = False
    protocol: Literal["validated", "paper"] = "validated"
    tensorboard: bool = False

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "test_batch_size", "log_interval", "cosine_t_max"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} must be >= 1, got {getattr(self, key)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"train.lr must be positive, got {self.lr}")
        if self.lr > FLOAT32_MAX:
            raise ValueError(f"train.lr {self.lr:g} overflows float32 (the parameters' type; largest {FLOAT32_MAX:.4g}): "
                             "the first optimiser step would make every weight inf")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"train.grad_clip must be positive or null, got {self.grad_clip}")
        if self.select_metric is not None and self.select_metric not in SELECT_METRICS:
            raise ValueError(f"train.select_metric {self.select_metric!r} unknown; valid: {list(SELECT_METRICS)} or null")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"train.protocol {self.protocol!r} unknown; valid: {list(PROTOCOLS)}")
        if self.protocol == "paper" and self.select_metric is not None:
            raise ValueError("train.select_metric has no use under train.protocol paper (no validation split; the "
                             "last epoch is tested); leave it null")
        if self.max_batches is not None and self.max_batches < 1:
            raise ValueError(f"train.max_batches must be >= 1 or null, got {self.max_batches}")
        if not self.compile_backend.strip():
            raise ValueError("train.compile_backend must name a torch.compile backend (e.g. inductor), got ''")


@dataclass(frozen=True)
class LossConfig:
    """Loss and output coding.

    Attributes:
        mode: ``first_time`` (FS), ``firing_rate`` (FR), ``rate_ce`` (seed 002's CSNN loss),
            ``logits_nll`` (non-spiking readouts returning logits).
        alpha0, D, A, window: FS softmax temperature, Gaussian width divisor, amplitude, window
            normalisation (``peak`` | ``normalised``) (``--FS alpha0 D A``).
        treg_lambda, treg_beta0: the silent-target penalty (``--treg lambda beta0``; lambda 0 disables).
        alpha1: FR softmax scale (``--FR alpha1``).
        spike_count_lambda, spike_count_target: optional ``lambda_s * |N_s - target|`` (lambda 0 disables).
        regularizer_weight: weight of the model's own ``regularizer(output)`` if it has one (0 disables).
    """

    mode: Literal["first_time", "firing_rate", "rate_ce", "logits_nll"] = "first_time"
    alpha0: float = 0.2
    D: int = 16
    A: float = 200.0
    window: Literal["peak", "normalised"] = "peak"
    treg_lambda: float = 0.01
    treg_beta0: float = 0.02
    alpha1: float = 20.0
    spike_count_lambda: float = 0.0
    spike_count_target: float = 0.0
    regularizer_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.D < 1:
            raise ValueError(f"loss.D must be >= 1, got {self.D}")
        for key in ("alpha0", "A", "alpha1"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise ValueError(f"loss.{key} must be positive, got {getattr(self, key)}")
        for key in ("treg_lambda", "treg_beta0", "spike_count_lambda", "spike_count_target", "regularizer_weight"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise ValueError(f"loss.{key} must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (``test.py``).

    Attributes:
        checkpoint: ``best`` (chosen on validation) or ``last``.
        raster_samples: number of test samples whose spike rasters are plotted.
        plots: write rasters and first-spike pattern plots.
    """

    checkpoint: Literal["best", "last"] = "best"
    raster_samples: int = 2
    plots: bool = True

    def __post_init__(self) -> None:
        if self.raster_samples < 0:
            raise ValueError(f"eval.raster_samples must be >= 0, got {self.raster_samples}")


@dataclass(frozen=True)
class SurrogateConfig:
    """The whole config of the ``surrogate`` method.

    Attributes:
        method: always ``surrogate`` here.
        name: run name (the run directory is ``<runs_root>/<name>-<timestamp>``); None: the config file's stem.
        seed: seed of torch / numpy / python RNGs and of the data order.
        device: ``auto`` (CUDA if available) | ``cpu`` | ``cuda`` | ``cuda:N``.
        threads: torch CPU threads (None: torch's default).
        runs_root: folder of the run directories.
    """

    method: Literal["surrogate"] = "surrogate"
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    runs_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null, got {self.threads}")


def _model_options_class(name: str) -> type | None:
    from sjframe.models import get_builder

    return getattr(get_builder(name), "options_class", None)


def resolve_config(raw: dict[str, Any]) -> SurrogateConfig:
    """Validate a raw config dict (YAML + overrides) into :class:`SurrogateConfig`, defaults filled in.

    The model options are validated by the model's options class (``builder.options_class``) when
    it has one, and stored with their defaults filled in.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    model_raw = raw.pop("model", None) or {}
    if not isinstance(model_raw, dict):
        raise ConfigError(f"config.model: expected a mapping, got {type(model_raw).__name__}")
    name = model_raw.pop("name", ModelConfig.name)
    if not isinstance(name, str):
        raise ConfigError(f"config.model.name: expected a string, got {name!r}")
    try:
        options_cls = _model_options_class(name)
    except ValueError as exc:
        raise ConfigError(f"config.model.name: {exc}") from exc
    if options_cls is not None:
        options = dataclass_to_dict(dataclass_from_dict(options_cls, model_raw, "config.model"))
    else:
        options = model_raw
    cfg = dataclass_from_dict(SurrogateConfig, raw, "config")
    _check_non_spiking(name, cfg)
    return dataclasses.replace(cfg, model=ModelConfig(name=name, options=options))


def _check_non_spiking(name: str, cfg: SurrogateConfig) -> None:
    """A non-spiking baseline (``logreg``, ``mlp``, ``gru``) trains on its logits and has no spike metric to select on."""
    from sjframe.models import is_non_spiking

    if not is_non_spiking(name):
        return
    if cfg.loss.mode != "logits_nll":
        raise ConfigError(f"config.loss.mode: model {name!r} is non-spiking (it returns logits, no spikes); "
                          f"set loss.mode: logits_nll (cross-entropy on the logits), not {cfg.loss.mode!r}")
    if cfg.train.select_metric not in (None, "acc", "loss"):
        raise ConfigError(f"config.train.select_metric: model {name!r} is non-spiking; choose acc or loss "
                          f"(or null: acc), not {cfg.train.select_metric!r}")


def config_to_dict(cfg: SurrogateConfig) -> dict[str, Any]:
    """Plain YAML-able dict of a resolved config (model options flattened next to ``name``)."""
    out = dataclass_to_dict(cfg)
    model = out.pop("model")
    out["model"] = {"name": model["name"], **model["options"]}
    order = ["method", "name", "seed", "device", "threads", "runs_root", "data", "model", "train", "loss", "eval"]
    return {k: out[k] for k in order}


# ----------------------------------------------------------------------------------------- command line
# seed 003's flags -> config paths (values split over the paths in order).
_COMMON_FLAGS: dict[str, tuple[str, ...]] = {
    "--batch-size": ("train.batch_size",),
    "--test-batch-size": ("train.test_batch_size",),
    "--lr": ("train.lr",),
    "--epochs": ("train.epochs",),
    "--loss_mode": ("loss.mode",),
    "--dt": ("data.dt",),
    "--hidden_size": ("model.hidden_sizes",),
    "--FS": ("loss.alpha0", "loss.D", "loss.A"),
    "--FR": ("loss.alpha1",),
    "--neuron1": ("model.neuron1.tau_m_steps", "model.neuron1.tau_s_steps", "model.neuron1.theta"),
    "--neuron2": ("model.neuron2.tau_m_steps", "model.neuron2.tau_s_steps", "model.neuron2.theta"),
    "--treg": ("loss.treg_lambda", "loss.treg_beta0"),
    "--log-interval": ("train.log_interval",),
    "--seed": ("seed",),
}
#: train.py: ``--T`` / ``--T_empty`` set the training window, ``--load_pt_file`` the initial weights.
TRAIN_FLAGS: dict[str, tuple[str, ...]] = {
    **_COMMON_FLAGS,
    "--T": ("data.T",),
    "--T_empty": ("data.T_empty",),
    "--load_pt_file": ("train.init_checkpoint",),
    "--protocol": ("train.protocol",),
}
#: test.py: ``--T`` / ``--T_empty`` set the **test** window (``--load_pt_file`` is the checkpoint, handled by test.py).
TEST_FLAGS: dict[str, tuple[str, ...]] = {
    **_COMMON_FLAGS,
    "--T": ("data.test_T",),
    "--T_empty": ("data.test_T_empty",),
}
# flags taking no value: flag -> (path, value)
_SWITCHES: dict[str, tuple[str, Any]] = {"--best_model": ("eval.checkpoint", "best")}


def key_type(raw: dict[str, Any], path: list[str]) -> Any:
    """Type of the key ``path`` in the surrogate schema; the keys under ``model`` are those of the model's options class."""
    if path[0] == "model" and len(path) > 1:
        if path[1] == "name":
            return str
        name = (raw.get("model") or {}).get("name", ModelConfig.name)
        try:
            options = _model_options_class(name)
        except ValueError as exc:
            raise ConfigError(f"--model.{path[1]}: {exc}") from exc
        return Any if options is None else config_key_type(options, path[1:], prefix=("model",))
    return config_key_type(SurrogateConfig, path)


def cli_options(command: str) -> CliOptions:
    """What ``train.py`` / ``test.py`` (``command``) accept for this method besides ``--section.key value``."""
    return CliOptions(flags=TRAIN_FLAGS if command == "train" else TEST_FLAGS, switches=_SWITCHES,
                      top_level=frozenset(f.name for f in dataclasses.fields(SurrogateConfig)))
