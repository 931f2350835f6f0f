"""Method ``exact_time``: exact first-spike-time learning (fastAndDeep) on analytic LIF spike times.

Config (the ``exact_time:`` section; every key has a default, unknown keys are errors)::

    method: exact_time
    exact_time:
      data:  {name: yinyang, t_early: 0.15, t_late: 2.0}
      net:   {layer_sizes: [120, 3], bias_times: [[0.9], [0.9]], weight_mean: [1.5, 0.5],
              weight_std: [0.8, 0.8], neuron: tau_equal, threshold: 1.0, dtype: float64}
      loss:  {xi: 0.2, alpha: 0.005, beta: 1.0, silent_target_loss: 100.0}
      train: {epochs: 300, batch_size: 150, lr: 0.005, lr_step: 20, lr_gamma: 0.95,
              max_dw_norm: 0.2, max_silent_fraction: [0.3, 0.0], bump_value: 0.0005, seed: 0}

Times are in units of ``tau_s``. Workflow (seed 001's verbs)::

    train      python train.py configs/exact_yinyang.yaml [--exact_time.train.epochs 50 ...]
    inference  python test.py <run_dir> [--checkpoint best|last|epoch_K]   (accuracy report and plots)
    eval       python test.py <run_dir> ...  plots: spike-time histograms per class, accuracy curves,
               weight histograms (under <run_dir>/plots)
    continue   python train.py --resume <run_dir>                           (from last.pt)

or, without the entry points, ``python -m sjframe.methods.exact_time.method`` with the verbs
``train <config>``, ``inference <run_dir>`` (no plots), ``eval <run_dir>`` and
``continue <run_dir> [--epoch K]`` (``--epoch``: from the savepoint ``epoch_K.pt``); every verb takes
``--exact_time.<section>.<key> value`` overrides.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one ``event: epoch`` record per
epoch, ``event: test`` records), ``checkpoints/last.pt`` (every epoch), ``best.pt`` (best validation
accuracy), ``epoch_K.pt`` savepoints every ``save_every`` epochs, and ``plots/``. Resuming restores
weights, optimiser, scheduler and bumping state; the data order and input noise of epoch ``e`` come
from generators seeded by ``(seed, e)``, so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm import tqdm

from sjframe.core.config import ConfigError, dataclass_from_dict, dataclass_to_dict
from sjframe.core.rundir import RunDir
from sjframe.methods.exact_time.encoding import load_split
from sjframe.methods.exact_time.loss import WeightBumper, exact_time_loss, predict
from sjframe.methods.exact_time.network import ExactTimeNet
from sjframe.methods.exact_time.plots import plot_accuracy_curves, plot_spike_time_histograms, plot_weight_histograms

__all__ = ["CONFIG", "ExactTimeConfig", "parse_config", "build_network", "train", "evaluate", "main"]


# ------------------------------------------------------------------------------------------ config
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
        seed: weight initialisation, data order, noise. device: ``cpu`` | ``cuda`` | ``cuda:N``.
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
        if not (self.device in ("cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")
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


CONFIG = ExactTimeConfig


def parse_config(cfg: dict[str, Any]) -> ExactTimeConfig:
    """The typed ``exact_time`` section of a whole config dict (``method`` must be ``exact_time``)."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config must be a mapping, got {type(cfg).__name__}")
    method = cfg.get("method", "surrogate")
    if method != "exact_time":
        raise ConfigError(f"method: expected 'exact_time' for this module, got {method!r}")
    return dataclass_from_dict(ExactTimeConfig, cfg.get("exact_time"), "exact_time")


def resolved_config(cfg: dict[str, Any], parsed: ExactTimeConfig) -> dict[str, Any]:
    """``cfg`` with its ``exact_time`` section replaced by the parsed one (defaults filled in)."""
    out = {k: v for k, v in cfg.items() if k != "exact_time"}
    out["method"] = "exact_time"
    out["exact_time"] = dataclass_to_dict(parsed)
    return out


# --------------------------------------------------------------------------------------- building
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def build_network(c: ExactTimeConfig, n_inputs: int) -> ExactTimeNet:
    """The network of config ``c`` for ``n_inputs`` inputs, weights drawn with ``c.train.seed``."""
    n = c.net
    return ExactTimeNet(n_inputs, n.layer_sizes, n.bias_times, n.weight_mean, n.weight_std, n.neuron,
                        n.threshold, c.train.max_dw_norm, _DTYPES[n.dtype], c.train.seed)


def _device(c: ExactTimeConfig) -> torch.device:
    dev = torch.device(c.train.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"exact_time.train.device is {c.train.device!r} but CUDA is not available")
    return dev


def _load(c: ExactTimeConfig, split: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    d = c.data
    x, y, n_cls = load_split(d.name, split, d.root, d.t_early, d.t_late, d.black_no_spike, d.n_val, _DTYPES[c.net.dtype])
    if split == "train" and d.max_train_samples is not None:
        x, y = x[: d.max_train_samples], y[: d.max_train_samples]
    if c.net.layer_sizes[-1] != n_cls:
        raise ConfigError(f"exact_time.net.layer_sizes[-1] = {c.net.layer_sizes[-1]} but {d.name} has {n_cls} classes")
    return x, y, n_cls


def _batches(n: int, size: int, order: torch.Tensor | None = None) -> list[torch.Tensor]:
    idx = order if order is not None else torch.arange(n)
    return [idx[i: i + size] for i in range(0, n, size)]


@torch.no_grad()
def evaluate_split(net: ExactTimeNet, x: torch.Tensor, y: torch.Tensor, c: ExactTimeConfig,
                   device: torch.device) -> dict[str, Any]:
    """Loss, accuracy, silent fractions and label spike times ``t_out [N, C]`` of a whole split."""
    net.eval()
    outs, hidden_silent, loss_sum = [], [], 0.0
    for idx in _batches(x.shape[0], c.train.batch_size_eval):
        t_out, hidden = net(x[idx].to(device))
        loss_sum += float(_loss(t_out, y[idx].to(device), c)) * idx.numel()
        outs.append(t_out.cpu())
        hidden_silent.append([(~torch.isfinite(h)).double().sum().item() / h.shape[1] for h in hidden])
    t_out = torch.cat(outs)
    n = x.shape[0]
    pred = predict(t_out)
    silent_hidden = [sum(col) / n for col in zip(*hidden_silent)] if hidden_silent and hidden_silent[0] else []
    return {
        "loss": loss_sum / n,
        "acc": (pred == y).double().mean().item(),
        "silent_label_fraction": (~torch.isfinite(t_out)).double().mean().item(),
        "silent_hidden_fraction": silent_hidden,
        "t_out": t_out,
    }


def _loss(t_out: torch.Tensor, y: torch.Tensor, c: ExactTimeConfig) -> torch.Tensor:
    lc = c.loss
    return exact_time_loss(t_out, y, lc.xi, lc.alpha, lc.beta, lc.silent_target_loss)


def _make_optim(net: ExactTimeNet, c: ExactTimeConfig) -> tuple[torch.optim.Optimizer, Any]:
    t = c.train
    if t.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=t.lr)
    else:
        opt = torch.optim.SGD(net.parameters(), lr=t.lr, momentum=t.momentum)
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=t.lr_step, gamma=t.lr_gamma)


def _epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7 + stream) % (2**63))


def _checkpoint(net, opt, sched, bumper, epoch, best_acc, best_epoch, resolved) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "model": net.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "bumper": bumper.state_dict(),
        "best_val_acc": best_acc,
        "best_epoch": best_epoch,
        "config": resolved,
    }


# ------------------------------------------------------------------------------------------ train
def train(cfg: dict[str, Any], run: RunDir, resume: bool = False, resume_epoch: int | None = None) -> dict[str, Any]:
    """Train (or resume: from ``last.pt``, or from savepoint ``epoch_<resume_epoch>.pt``) and test.

    Returns the final metrics: last epoch's validation accuracy and test accuracy of the final and
    the best-validation weights.
    """
    c = parse_config(cfg)
    resolved = resolved_config(cfg, c)
    t = c.train
    if t.threads is not None:
        torch.set_num_threads(t.threads)
    device = _device(c)
    x_tr, y_tr, _ = _load(c, "train")
    x_va, y_va, _ = _load(c, "val")
    net = build_network(c, x_tr.shape[1]).to(device)
    opt, sched = _make_optim(net, c)
    bumper = WeightBumper(t.max_silent_fraction, t.bump_value, t.bump_exponential, t.bump_targeted)
    start, best_acc, best_epoch = 0, -1.0, 0
    if resume or resume_epoch is not None:
        name = "last.pt" if resume_epoch is None else f"epoch_{resume_epoch}.pt"
        ck = run.load_checkpoint(name, map_location="cpu")  # load_state_dict moves tensors to the device
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        bumper.load_state_dict(ck["bumper"])
        start, best_acc, best_epoch = int(ck["epoch"]), float(ck["best_val_acc"]), int(ck["best_epoch"])
        run.log({"event": "resume", "checkpoint": name, "epoch": start})
    run.write_config(resolved)
    if start == 0:
        run.save_checkpoint(_checkpoint(net, opt, sched, bumper, 0, best_acc, best_epoch, resolved), "epoch_0.pt")

    t0 = time.time()
    bar = tqdm(range(start, t.epochs), desc=f"exact_time {c.data.name}", unit="epoch", file=sys.stderr)
    last_record: dict[str, Any] = {}
    for epoch in bar:
        net.train()
        order = torch.randperm(x_tr.shape[0], generator=_epoch_generator(t.seed, epoch, 0))
        noise_gen = _epoch_generator(t.seed, epoch, 1)
        losses, correct, shown, bumps = [], 0, 0, 0
        e0 = time.time()
        for idx in _batches(x_tr.shape[0], t.batch_size, order):
            xb = x_tr[idx]
            if t.input_noise_std > 0:
                xb = (xb + t.input_noise_std * torch.randn(xb.shape, generator=noise_gen, dtype=xb.dtype)).abs()
            xb, yb = xb.to(device), y_tr[idx].to(device)
            opt.zero_grad(set_to_none=True)
            t_out, hidden = net(xb)
            if bumper(net.layers, [*hidden, t_out]) >= 0:
                bumps += 1
            else:
                loss = _loss(t_out, yb, c)
                loss.backward()
                opt.step()
                losses.append(loss.item())
            correct += int((predict(t_out.detach()) == yb).sum())
            shown += idx.numel()
        with warnings.catch_warnings():  # an epoch of only weight bumps has no optimiser step: fine here
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            sched.step()
        val = evaluate_split(net, x_va, y_va, c, device)
        done = epoch + 1
        record = {
            "event": "epoch", "epoch": done,
            "train_loss": sum(losses) / len(losses) if losses else math.nan,
            "train_acc": correct / shown, "val_loss": val["loss"], "val_acc": val["acc"],
            "val_silent_label_fraction": val["silent_label_fraction"],
            "val_silent_hidden_fraction": val["silent_hidden_fraction"],
            "bumps": bumps, "lr": opt.param_groups[0]["lr"], "epoch_seconds": time.time() - e0,
        }
        run.log(record)
        last_record = record
        if val["acc"] > best_acc:
            best_acc, best_epoch = val["acc"], done
            run.save_checkpoint(_checkpoint(net, opt, sched, bumper, done, best_acc, best_epoch, resolved), "best.pt")
        ck = _checkpoint(net, opt, sched, bumper, done, best_acc, best_epoch, resolved)
        run.save_checkpoint(ck, "last.pt")
        if t.save_every and done % t.save_every == 0:
            run.save_checkpoint(ck, f"epoch_{done}.pt")
        bar.set_postfix(train=f"{record['train_acc']:.3f}", val=f"{val['acc']:.3f}", bumps=bumps)
    bar.close()

    x_te, y_te, _ = _load(c, "test")
    final = evaluate_split(net, x_te, y_te, c, device)
    summary: dict[str, Any] = {
        "event": "train_end", "epochs": t.epochs, "train_seconds": time.time() - t0,
        "val_acc": last_record.get("val_acc"), "test_acc_final": final["acc"], "test_loss_final": final["loss"],
        "best_epoch": best_epoch, "best_val_acc": best_acc,
    }
    if (run.checkpoints / "best.pt").is_file():
        best_net = build_network(c, x_tr.shape[1]).to(device)
        best_net.load_state_dict(run.load_checkpoint("best.pt", map_location=device)["model"])
        summary["test_acc_best"] = evaluate_split(best_net, x_te, y_te, c, device)["acc"]
    run.log(summary)
    if t.plots:
        _plots(run, net, final["t_out"], y_te, "final")
    return summary


# --------------------------------------------------------------------------------------- evaluate
def _plots(run: RunDir, net: ExactTimeNet, t_out: torch.Tensor, labels: torch.Tensor, tag: str) -> list[str]:
    paths = [
        plot_spike_time_histograms(t_out, labels, run.plots / f"spike_times_per_class_{tag}.png"),
        plot_accuracy_curves(run.read_log(), run.plots / "accuracy_curves.png"),
        plot_weight_histograms([layer.weight for layer in net.layers], run.plots / f"weights_{tag}.png"),
    ]
    return [str(p) for p in paths]


def _load_checkpoint(run: RunDir, checkpoint: str, device: torch.device) -> tuple[dict[str, Any], str]:
    """``checkpoint`` is a file path, a name in ``checkpoints/`` (``best.pt``) or ``best`` / ``last`` / ``epoch_K``."""
    path = Path(checkpoint)
    if path.suffix == ".pt" and path.is_file() and path.parent != Path("."):
        try:
            return torch.load(path, map_location=device, weights_only=False), path.stem
        except Exception as exc:  # corrupt / truncated file
            raise RuntimeError(f"checkpoint {path} could not be read ({exc})") from exc
    name = checkpoint if checkpoint.endswith(".pt") else f"{checkpoint}.pt"
    return run.load_checkpoint(name, map_location=device), Path(name).stem


def evaluate(cfg: dict[str, Any], run: RunDir, checkpoint: str = "best", plots: bool = True) -> dict[str, Any]:
    """Validation and test accuracy of ``checkpoint`` of a saved run; with ``plots`` also the figures.

    ``checkpoint``: ``best`` | ``last`` | ``epoch_K`` (``.pt`` optional) in the run's ``checkpoints/``,
    or a path to a checkpoint file. Logs an ``event: test`` record to ``metrics.jsonl``, writes
    ``reports/exact_time_<checkpoint>.json`` and returns the report (``metrics.acc_fs`` is the test
    accuracy in %: the prediction is the first label spike; ``table`` a printable summary).
    """
    c = parse_config(cfg)
    device = _device(c)
    if c.train.threads is not None:
        torch.set_num_threads(c.train.threads)
    ck, tag = _load_checkpoint(run, checkpoint, device)
    x_va, y_va, _ = _load(c, "val")
    x_te, y_te, _ = _load(c, "test")
    net = build_network(c, x_te.shape[1]).to(device)
    try:
        net.load_state_dict(ck["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {checkpoint} does not fit the config's network: {exc}") from exc
    val = evaluate_split(net, x_va, y_va, c, device)
    test = evaluate_split(net, x_te, y_te, c, device)
    report: dict[str, Any] = {
        "event": "test", "checkpoint": tag, "epoch": ck.get("epoch"),
        "val_acc": val["acc"], "val_loss": val["loss"], "test_acc": test["acc"], "test_loss": test["loss"],
        "test_silent_label_fraction": test["silent_label_fraction"],
        "test_silent_hidden_fraction": test["silent_hidden_fraction"],
        "metrics": {"acc_fs": 100.0 * test["acc"], "acc_fr": None},
    }
    report["table"] = (
        f"exact_time {c.data.name}, checkpoint {tag} (epoch {ck.get('epoch')})\n"
        f"  validation accuracy {100 * val['acc']:.2f} %   loss {val['loss']:.4f}\n"
        f"  test accuracy       {100 * test['acc']:.2f} %   loss {test['loss']:.4f}\n"
        f"  silent label neurons (test) {100 * test['silent_label_fraction']:.2f} %"
    )
    if plots:
        report["plots"] = _plots(run, net, test["t_out"], y_te, tag)
    run.log({k: v for k, v in report.items() if k != "table"})
    reports = run.path / "reports"
    reports.mkdir(exist_ok=True)
    (reports / f"exact_time_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# -------------------------------------------------------------------------------------------- CLI
def _overrides(cfg: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """Apply ``--section.key value`` overrides (e.g. ``--exact_time.train.epochs 5``) to ``cfg``."""
    from sjframe.methods.surrogate.config import apply_overrides, parse_cli

    parsed = parse_cli(extra, flags={})
    if parsed.positional:
        raise ConfigError(f"unexpected arguments {parsed.positional}")
    return apply_overrides(cfg, parsed.overrides, typed=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m sjframe.methods.exact_time.method {train,inference,eval,continue} ...`` (see module docstring)."""
    import yaml

    p = argparse.ArgumentParser(prog="python -m sjframe.methods.exact_time.method", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    p_tr = sub.add_parser("train", help="train a new run from a config file")
    p_tr.add_argument("config")
    p_tr.add_argument("--runs-root", default=None, help="folder of run directories (default: config's runs_root or runs)")
    for verb in ("inference", "eval"):
        sp = sub.add_parser(verb, help="test accuracy of a saved run" + (" and plots" if verb == "eval" else ""))
        sp.add_argument("run_dir")
        sp.add_argument("--checkpoint", default="best", help="best | last | epoch_K | path to a .pt file")
    p_co = sub.add_parser("continue", help="resume a run from last.pt or a savepoint")
    p_co.add_argument("run_dir")
    p_co.add_argument("--epoch", type=int, default=None, help="resume from savepoint epoch_K.pt")
    args, extra = p.parse_known_args(argv)
    if args.verb == "train":
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        cfg = _overrides(yaml.safe_load(path.read_text()) or {}, extra)
        parse_config(cfg)  # fail before creating a run directory
        run = RunDir.create(cfg.get("name") or path.stem, args.runs_root or cfg.get("runs_root", "runs"))
        print(f"run directory: {run.path}", file=sys.stderr)
        result = train(cfg, run)
    else:
        run = RunDir.open(args.run_dir)
        cfg = _overrides(run.read_config(), extra)
        if args.verb == "continue":
            result = train(cfg, run, resume=True, resume_epoch=args.epoch)
        else:
            result = evaluate(cfg, run, args.checkpoint, plots=args.verb == "eval")
    if "table" in result:
        print(result["table"])
    print(json.dumps({k: v for k, v in result.items() if k not in ("plots", "table")}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
