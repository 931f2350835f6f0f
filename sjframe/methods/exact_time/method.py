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
    continue   python train.py --resume <run_dir> [--resume_epoch K]       (from last.pt / epoch_K.pt)

Every command takes ``--exact_time.<section>.<key> value`` overrides, typed by the settings
(:mod:`.settings`); the method is the :class:`ExactTimeMethod` object ``METHOD``.

A run directory holds ``config.yaml`` (resolved), ``metrics.jsonl`` (one ``event: epoch`` record per
epoch, ``event: test`` records), ``checkpoints/last.pt`` (every epoch), ``best.pt`` (best validation
accuracy), ``epoch_K.pt`` savepoints every ``save_every`` epochs, and ``plots/``. Resuming restores
weights, optimiser, scheduler and bumping state; the data order and input noise of epoch ``e`` come
from generators seeded by ``(seed, e)`` (:func:`sjframe.core.runtime.epoch_generator`), so a resumed
run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from typing import Any

import torch
from tqdm import tqdm

from sjframe.core.config import ConfigError
from sjframe.core.distributed import DistContext
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import epoch_generator, load_weights
from sjframe.methods.base import Capabilities, Method
from sjframe.methods.exact_time.encoding import load_split
from sjframe.methods.exact_time.loss import WeightBumper, exact_time_loss, predict
from sjframe.methods.exact_time.network import ExactTimeNet
from sjframe.methods.exact_time.plots import plot_accuracy_curves, plot_spike_time_histograms, plot_weight_histograms
from sjframe.methods.exact_time.settings import ExactTimeConfig

__all__ = ["METHOD", "ExactTimeMethod", "build_network", "evaluate_split"]


# --------------------------------------------------------------------------------------- building
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def build_network(c: ExactTimeConfig, n_inputs: int) -> ExactTimeNet:
    """The network of config ``c`` for ``n_inputs`` inputs, weights drawn with ``c.train.seed``."""
    n = c.net
    return ExactTimeNet(n_inputs, n.layer_sizes, n.bias_times, n.weight_mean, n.weight_std, n.neuron,
                        n.threshold, c.train.max_dw_norm, _DTYPES[n.dtype], c.train.seed)


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
def _train(c: ExactTimeConfig, resolved: dict[str, Any], run: RunDir, device: torch.device, resume: bool,
           resume_epoch: int | None) -> dict[str, Any]:
    """Train (or resume: from ``last.pt``, or from savepoint ``epoch_<resume_epoch>.pt``) and test.

    Returns the final metrics: last epoch's validation accuracy and test accuracy of the final and
    the best-validation weights.
    """
    t = c.train
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
        order = torch.randperm(x_tr.shape[0], generator=epoch_generator(t.seed, 7 * epoch))
        noise_gen = epoch_generator(t.seed, 7 * epoch + 1)
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


def _evaluate(c: ExactTimeConfig, run: RunDir, device: torch.device, checkpoint: str, plots: bool) -> dict[str, Any]:
    """Validation and test accuracy of ``checkpoint`` of a saved run; with ``plots`` also the figures.

    ``checkpoint``: ``best`` | ``last`` | ``epoch_K`` (``.pt`` optional) in the run's ``checkpoints/``,
    or a path to a checkpoint file. Logs an ``event: test`` record to ``metrics.jsonl``, writes
    ``reports/exact_time_<checkpoint>.json`` and returns the report (``metrics.acc_fs`` is the test
    accuracy in %: the prediction is the first label spike; ``table`` a printable summary).
    """
    ck, path = run.read_checkpoint(checkpoint, map_location=device)
    tag = path.stem
    x_va, y_va, _ = _load(c, "val")
    x_te, y_te, _ = _load(c, "test")
    net = build_network(c, x_te.shape[1]).to(device)
    load_weights(net, ck["model"], f"checkpoint {checkpoint} (exact_time.net)")
    val = evaluate_split(net, x_va, y_va, c, device)
    test = evaluate_split(net, x_te, y_te, c, device)
    report: dict[str, Any] = {
        "event": "test", "checkpoint": tag, "epoch": ck.get("epoch"),
        "val_acc": val["acc"], "val_loss": val["loss"], "test_acc": test["acc"], "test_loss": test["loss"],
        "test_silent_label_fraction": test["silent_label_fraction"],
        "test_silent_hidden_fraction": test["silent_hidden_fraction"],
        "metrics": {"acc_fs": 100.0 * test["acc"], "acc_fr": None},
    }
    table = (
        f"exact_time {c.data.name}, checkpoint {tag} (epoch {ck.get('epoch')})\n"
        f"  validation accuracy {100 * val['acc']:.2f} %   loss {val['loss']:.4f}\n"
        f"  test accuracy       {100 * test['acc']:.2f} %   loss {test['loss']:.4f}\n"
        f"  silent label neurons (test) {100 * test['silent_label_fraction']:.2f} %"
    )
    if plots:
        report["plots"] = _plots(run, net, test["t_out"], y_te, tag)
    return run.write_report(f"exact_time_{tag}", report, table, log=report)


class ExactTimeMethod(Method):
    """Exact first-spike-time learning; resumable from ``last.pt`` or a savepoint ``epoch_K.pt``."""

    name = "exact_time"
    settings = ExactTimeConfig
    section = "exact_time"
    capabilities = Capabilities(supports_resume=True, keeps_savepoints=True, supports_distributed=False)

    def device_spec(self, settings: ExactTimeConfig) -> str:
        return settings.train.device

    def device_key(self) -> str:
        return "exact_time.train.device"

    def threads(self, settings: ExactTimeConfig) -> int | None:
        return settings.train.threads

    def fit(self, settings: ExactTimeConfig, raw: dict[str, Any], run: RunDir, ctx: DistContext, resume: bool,
            resume_epoch: int | None) -> dict[str, Any]:
        return _train(settings, self.resolved(raw, settings), run, ctx.device, resume, resume_epoch)

    def test(self, settings: ExactTimeConfig, raw: dict[str, Any], run: RunDir, ctx: DistContext, checkpoint: str,
             plots: bool = True, **options: Any) -> dict[str, Any]:
        """Validation and test accuracy of ``checkpoint``; with ``plots`` also the figures.

        ``checkpoint``: ``best`` | ``last`` | ``epoch_K`` (``.pt`` optional) in the run's ``checkpoints/``,
        or a path to a checkpoint file. Logs an ``event: test`` record to ``metrics.jsonl``, writes
        ``reports/exact_time_<checkpoint>.{json,md}`` and returns the report (``metrics.acc_fs`` is the test
        accuracy in %: the prediction is the first label spike; ``table`` a printable summary).
        """
        return _evaluate(settings, run, ctx.device, checkpoint, plots)


METHOD = ExactTimeMethod()
