"""Training and evaluation engine of the ``surrogate`` method (BPTT with surrogate gradients, FS / FR coding).

One :class:`Trainer` per run, everything per instance (no module state):

* data: ``sjframe.data.build_dataset`` for ``train`` / ``val`` (training window) and ``test`` (the
  test window), batches ``x [T, B, *input_shape]`` through ``time_major_collate``; the training
  order of epoch ``e`` comes from a generator seeded by ``(seed, e)``, so it does not depend on
  anything else that ran before;
* model: ``sjframe.models.build_model``; Adam (amsgrad, weight decay), gradients zeroed every step,
  gradient-norm clipping, optional cosine / multi-step schedule stepped per epoch,
  ``functional.reset_net`` after every batch, the model's ``post_step()`` (e.g. decay clamping)
  after every optimiser step;
* loss (``loss.mode``): ``first_time`` ``fs_loss(first_spike_times(S, h), y)`` with the treg term,
  ``firing_rate`` ``fr_loss``, ``rate_ce`` (seed 002), ``logits_nll`` (non-spiking readouts); plus
  ``spike_count_lambda * |N_s - target|`` and ``regularizer_weight * model.regularizer(output)``
  when the model has one;
* every epoch: validation (FS and FR accuracy, N_s, td50/td90 through
  :class:`sjframe.methods.surrogate.metrics.EvalAccumulator`), a record in ``metrics.jsonl``, ``best.pt`` when the
  validation metric improves (never the test set), ``last.pt`` always; both written atomically
  and holding model, optimizer, scheduler, RNG states, epoch, best-so-far and history, so that
  :meth:`Trainer.fit` with ``resume=True`` continues exactly as an uninterrupted run would;
* a NaN / inf model output (potentials, logits, spikes of any layer), loss or gradient norm stops
  training with :class:`NonFiniteLossError` before the optimiser step, naming the epoch, the batch and
  the last good checkpoint (an event in ``metrics.jsonl``); the checkpoints of the last good epoch are
  left as they were.

Rank-aware-ready: metric reduction goes through the accumulator's tensors (:meth:`Trainer._reduce`)
and every file write through :meth:`Trainer._save_checkpoint` / :meth:`Trainer._log` (rank 0 only).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sjframe.coding import fs as fs_mod
from sjframe.coding import losses
from sjframe.core.cli_errors import CheckpointError, DiskFullError, UserError
from sjframe.core.rundir import RunDir, atomic_write_bytes, read_checkpoint
from sjframe.methods.surrogate import metrics as metrics_mod
from sjframe.methods.surrogate.config import SurrogateConfig, config_to_dict, resolve_config
from sjframe.models import build_model
from sjframe.models.base import ModelOutput

__all__ = [
    "EpochCallback",
    "NonFiniteLossError",
    "Trainer",
    "compute_loss",
    "evaluate_run",
    "load_weights",
    "select_device",
    "set_seed",
]

EpochCallback = Callable[[int, dict[str, Any]], None]


class NonFiniteLossError(UserError, RuntimeError):
    """The model output, the loss or the gradient norm became NaN / inf; training stopped before the optimiser step."""


# --------------------------------------------------------------------------------------------- helpers
def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: unchanged), restoring the previous count after."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def select_device(spec: str) -> torch.device:
    """``auto`` -> CUDA if available else CPU; ``cuda`` without a GPU is a clear error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {spec!r} requested but CUDA is not available here (no GPU or no driver); "
                        "use --device cpu or auto", status=2)
    return torch.device(spec)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    # only when this process uses CUDA: reading the states initialises CUDA (a context on the GPU), which a
    # CPU run on a GPU machine should not do; a CUDA RNG never initialised was never drawn from either
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # a checkpoint may hold the states of more (or fewer) visible GPUs than this process sees:
        # restore those of the devices both have
        saved = state["cuda"]
        for index in range(min(len(saved), torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved[index], index)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(int(seed) * 1_000_003 + int(epoch))
    return gen


def default_select_metric(mode: str) -> str:
    """The validation metric choosing ``best.pt`` for a loss mode."""
    return {"first_time": "acc_fs", "logits_nll": "acc"}.get(mode, "acc_fr")


def compute_loss(
    cfg: SurrogateConfig, model: nn.Module, output: ModelOutput, target: torch.Tensor, need_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The training loss of one batch and the first-spike times ``t_F [B, C]`` (None for non-spiking readouts).

    ``t_F`` comes from the differentiable FS encoder for ``first_time`` (its Gaussian-window
    backward carries the gradient to the spikes), else from the no-grad encoder (for metrics).
    """
    lc = cfg.loss
    mode = lc.mode
    spiking = output.spikes is not None and output.h is not None
    if mode in ("first_time", "firing_rate", "rate_ce") and output.spikes is None:
        raise ValueError(f"loss.mode {mode!r} needs output spikes, but model {cfg.model.name!r} returns none")
    if mode == "first_time" and output.h is None:
        raise ValueError(f"loss.mode 'first_time' needs the output potentials (ModelOutput.h) of model {cfg.model.name!r}")
    if mode == "logits_nll" and output.logits is None:
        raise ValueError(f"loss.mode 'logits_nll' needs logits, but model {cfg.model.name!r} returns none")
    t_F = None
    if mode == "first_time":
        if need_grad:
            t_F = fs_mod.first_spike_times(output.spikes, output.h, lc.D, lc.A, lc.window)
        else:
            t_F = fs_mod.first_spike_times_nograd(output.spikes, output.h)
        loss = losses.fs_loss(t_F, target, lc.alpha0, treg=(lc.treg_lambda, lc.treg_beta0), T_in=output.spikes.shape[0])
        t_F = t_F.detach()
    else:
        if mode == "firing_rate":
            loss = losses.fr_loss(output.spikes, target, lc.alpha1)
        elif mode == "rate_ce":
            loss = losses.rate_ce_loss(output.spikes, target)
        else:
            loss = losses.logits_nll_loss(output.logits, target)
        if spiking:
            t_F = fs_mod.first_spike_times_nograd(output.spikes.detach(), output.h.detach())
    if lc.spike_count_lambda > 0 and output.layer_spikes:
        n_s = metrics_mod.spike_count(output.layer_spikes)
        loss = loss + losses.spike_count_loss(n_s, lc.spike_count_target, lc.spike_count_lambda)
    regularizer = getattr(model, "regularizer", None)
    if callable(regularizer) and lc.regularizer_weight > 0:
        loss = loss + lc.regularizer_weight * regularizer(output)
    return loss, t_F


def _bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable``: off when asked, else shown on a terminal only (None: tqdm hides it on non-TTY)."""
    return True if not progress else None


def _primary(mode: str) -> str:
    return "fs" if mode == "first_time" else "fr"


def _better(metric: str, value: float | None, best: float | None) -> bool:
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


def _round(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in record.items()}


@dataclass
class _Data:
    train: Dataset
    val: Dataset


# --------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Trains one model of the ``surrogate`` method into a run directory.

    Args:
        cfg: the resolved config.
        run: the run directory (``None``: nothing is written; for programmatic use).
        callbacks: ``f(epoch, record)`` called after each epoch's checkpoint (tests use it to interrupt).
        rank, world_size: distributed position (single process: 0, 1); only rank 0 writes files.
    """

    def __init__(
        self,
        cfg: SurrogateConfig,
        run: RunDir | None,
        callbacks: list[EpochCallback] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg = cfg
        self.run = run
        self.callbacks = list(callbacks or [])
        self.rank = rank
        self.world_size = world_size
        self.device = select_device(cfg.device)
        set_seed(cfg.seed)
        self.data = self._build_data()
        self.input_shape = tuple(self.data.train.input_shape)
        self.num_classes = int(self.data.train.num_classes)
        self.dt_ms = getattr(self.data.train, "dt_ms", None)
        self.model = build_model(cfg.model.name, cfg.model.options, self.input_shape, self.num_classes).to(self.device)
        if cfg.train.init_checkpoint:
            load_weights(self.model, load_model_state(cfg.train.init_checkpoint),
                         f"train.init_checkpoint (--load_pt_file) {cfg.train.init_checkpoint}")
        # the module called for the training forward: the model itself, or its DistributedDataParallel /
        # torch.compile wrapper (set by sjframe.methods.surrogate.distributed.make_trainer); evaluation calls self.model
        self.forward_module: nn.Module = self.model
        # NaN / inf inside the training forward: every submodule's output is checked (one device sync per batch)
        self._activation_flags: list[tuple[str, torch.Tensor]] = []
        self._watching = False
        if not cfg.train.compile:
            for name, module in self.model.named_modules():
                if name:
                    module.register_forward_hook(self._activation_hook(name))
        tc = cfg.train
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, amsgrad=tc.amsgrad
        )
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None
        if tc.scheduler == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.optimizer, T_max=tc.cosine_t_max, eta_min=tc.cosine_eta_min
            )
        elif tc.scheduler == "multistep":
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=tc.milestones, gamma=tc.gamma)
        else:
            self.scheduler = None
        self.select_metric = tc.select_metric or default_select_metric(cfg.loss.mode)
        self.epoch = 0  # epochs completed
        self.best: dict[str, Any] = {"metric": self.select_metric, "value": None, "epoch": None}
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------ data
    def _build_data(self) -> _Data:
        from sjframe.data import build_dataset

        dc = self.cfg.data
        out = {}
        for split in ("train", "val"):
            ds = build_dataset(dc.name, split, **dc.dataset_options(split))
            if getattr(ds, "time_major", True) is False:
                raise ValueError(
                    f"data set {dc.name!r} gives items that are not time-major frames (e.g. encoding: raw); "
                    "the surrogate method needs [T, ...] frames"
                )
            out[split] = ds
        return _Data(**out)

    def _loader(self, ds: Dataset, train: bool, epoch: int = 0) -> DataLoader:
        from sjframe.data import time_major_collate

        tc = self.cfg.train
        return DataLoader(
            ds,
            batch_size=tc.batch_size if train else tc.test_batch_size,
            shuffle=train,
            generator=_epoch_generator(self.cfg.seed, epoch) if train else None,
            collate_fn=time_major_collate,
            num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    # ------------------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer, scheduler, RNGs, epoch, best, history."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": _rng_state(),
            "best": dict(self.best),
            "history": list(self.history),
            "config": config_to_dict(self.cfg),
            "model_name": self.cfg.model.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state` (the RNG states last, so the next epoch draws what it would have)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            if state.get("scheduler") is None:
                raise ValueError("the checkpoint has no scheduler state but train.scheduler is set")
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.best = dict(state["best"])
        self.history = list(state["history"])
        _set_rng_state(state["rng"])

    def _save_checkpoint(self, name: str) -> Path | None:
        """The one place checkpoints are written (rank 0 only, atomically)."""
        if self.run is None or self.rank != 0:
            return None
        return self.run.save_checkpoint(self.state(), name)

    def _log(self, record: dict[str, Any]) -> None:
        if self.run is not None and self.rank == 0:
            self.run.log(record)

    def _reduce(self, acc: metrics_mod.EvalAccumulator) -> None:
        """All-reduce the accumulator's sums across processes (a no-op in a single process)."""
        if self.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            for tensor in acc.state_tensors().values():
                torch.distributed.all_reduce(tensor)

    def _loss_finite(self, loss: torch.Tensor) -> bool:
        """Whether the batch loss is finite (distributed: on every process, so that all stop together)."""
        return self._all_ok(bool(torch.isfinite(loss)))

    def _all_ok(self, flag: bool) -> bool:
        """``flag`` of this process (distributed: the AND over every process, so that all stop together)."""
        return flag

    def _activation_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if self._watching:
                for t in _tensors(output):
                    if t.is_floating_point():
                        self._activation_flags.append((name, torch.isfinite(t).all()))
        return hook

    def _non_finite(self, output: ModelOutput) -> list[str]:
        """Names of the activations (submodule outputs) and model outputs of the last forward holding NaN / inf."""
        named = self._activation_flags + [(n, torch.isfinite(t).all()) for n, t in _output_tensors(output)]
        self._activation_flags = []
        if not named or bool(torch.stack([flag.to(named[0][1].device) for _, flag in named]).all()):
            return []
        return list(dict.fromkeys(name for name, flag in named if not bool(flag)))

    def _stop_non_finite(self, event: str, what: str, epoch: int, batch: int, **extra: Any) -> None:
        """Log the event and raise :class:`NonFiniteLossError` (the optimiser has not stepped on this batch)."""
        self._log({"event": event, "epoch": epoch, "batch": batch, **extra})
        raise NonFiniteLossError(
            f"{what} at epoch {epoch}, batch {batch}; training stopped before the optimiser step. "
            f"{self._last_good()}. Lower train.lr or check the data / loss settings "
            f"(event {event!r} in metrics.jsonl)."
        )

    def _last_good(self) -> str:
        if self.run is None:
            return "no run directory"
        path = self.run.checkpoints / "last.pt"
        return f"Last good checkpoint: {path} (epoch {self.epoch})" if path.exists() else "No checkpoint was written yet"

    # ------------------------------------------------------------------------------ loops
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch over the training split; returns ``train_*`` metrics."""
        cfg, model = self.cfg, self.model
        model.train()
        acc = metrics_mod.EvalAccumulator(primary=_primary(cfg.loss.mode), dt_ms=self.dt_ms)
        loader = self._loader(self.data.train, train=True, epoch=epoch)
        total = len(loader) if cfg.train.max_batches is None else min(len(loader), cfg.train.max_batches)
        bar = tqdm(total=total, desc=f"epoch {epoch}/{cfg.train.epochs}", leave=False,
                   disable=_bar_disabled(cfg.train.progress and self.rank == 0), dynamic_ncols=True)
        running, seen = 0.0, 0
        try:
            for i, (x, y) in enumerate(loader):
                if i >= total:
                    break
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                self.optimizer.zero_grad(set_to_none=True)
                functional.reset_net(model)
                self._watching, self._activation_flags = True, []
                try:
                    output = self.forward_module(x)
                finally:
                    self._watching = False
                bad = self._non_finite(output)
                if not self._all_ok(not bad):
                    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                    self._stop_non_finite("non_finite_activation",
                                          f"NaN / inf in the forward pass ({shown or 'on another process'})",
                                          epoch, i, tensors=bad)
                loss, t_F = compute_loss(cfg, model, output, y)
                if not self._loss_finite(loss):
                    self._stop_non_finite("non_finite_loss", f"non-finite loss ({float(loss.detach())})", epoch, i,
                                          loss=float(loss.detach()))
                loss.backward()
                if cfg.train.grad_clip is not None:
                    norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                    if not torch.isfinite(norm):
                        self._stop_non_finite("non_finite_grad", "non-finite gradient norm", epoch, i)
                self.optimizer.step()
                post_step = getattr(model, "post_step", None)
                if callable(post_step):
                    post_step()
                acc.update(output, y, t_F=t_F, loss=loss.detach())
                functional.reset_net(model)
                running += float(loss.detach()) * y.shape[0]
                seen += y.shape[0]
                bar.update(1)
                if (i + 1) % cfg.train.log_interval == 0 or i + 1 == total:
                    bar.set_postfix(loss=f"{running / seen:.4f}")
        finally:
            bar.close()
            functional.reset_net(model)
        self._reduce(acc)
        m = acc.compute()
        return {"train_loss": m["loss"], "train_acc_fs": m["acc_fs"], "train_acc_fr": m["acc_fr"],
                "train_acc": m["acc"], "train_n_s": m["n_s"]}

    @torch.no_grad()
    def evaluate(self, ds: Dataset, desc: str = "eval") -> dict[str, Any]:
        """Metrics of the model on ``ds`` (loss with the training loss, FS / FR accuracy, N_s, td50/td90)."""
        m, _ = evaluate_model(self.model, self.cfg, self._loader(ds, train=False), self.device, self.dt_ms,
                              desc=desc, progress=self.cfg.train.progress and self.rank == 0, reduce=self._reduce)
        return m

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train for ``train.epochs`` epochs (continuing from ``last.pt`` when ``resume``); returns the summary."""
        with torch_threads(self.cfg.threads):
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict[str, Any]:
        cfg = self.cfg
        if resume:
            if self.run is None:
                raise ValueError("resume needs a run directory")
            # onto the CPU: the RNG states must stay CPU ByteTensors (torch.set_rng_state and
            # torch.cuda.set_rng_state reject others); load_state_dict moves weights and optimizer state
            self.load_state(self.run.load_checkpoint("last.pt", map_location="cpu"))
            self._trim_log()
        if self.run is not None and self.rank == 0:
            self.run.write_config(config_to_dict(cfg))
        epochs = tqdm(range(self.epoch + 1, cfg.train.epochs + 1), desc="training", initial=self.epoch,
                      total=cfg.train.epochs, disable=_bar_disabled(cfg.train.progress and self.rank == 0),
                      dynamic_ncols=True)
        try:
            self._epochs(epochs)
        except BaseException:
            epochs.close()
            self._plot_curves(strict=False)  # also after an error or an interrupt: the curves of the epochs done
            raise
        epochs.close()
        self._plot_curves(strict=True)
        summary = {"epochs": self.epoch, "best": dict(self.best),
                   "last": self.history[-1] if self.history else None,
                   "run_dir": None if self.run is None else str(self.run.path)}
        return summary

    def _epochs(self, epochs: Any) -> None:
        """Train, validate and checkpoint each epoch of ``epochs`` (a tqdm iterator)."""
        cfg = self.cfg
        for epoch in epochs:
            record: dict[str, Any] = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]}
            record.update(self.train_epoch(epoch))
            if self.scheduler is not None:
                self.scheduler.step()
            val = self.evaluate(self.data.val, desc=f"val {epoch}")
            record.update({f"val_{k}": val[k] for k in ("loss", "acc", "acc_fs", "acc_fr", "n_s", "td50", "td90")})
            record["val_n_s_per_layer"] = val["n_s_per_layer"]
            record = _round(record)
            self.epoch = epoch
            value = record.get(f"val_{self.select_metric}")
            if value is None:
                raise ValueError(
                    f"validation metric {self.select_metric!r} (train.select_metric) is not available for model "
                    f"{cfg.model.name!r} with loss.mode {cfg.loss.mode!r}; choose one of acc, acc_fs, acc_fr, loss"
                )
            if _better(self.select_metric, value, self.best["value"]):
                self.best = {"metric": self.select_metric, "value": value, "epoch": epoch}
                record["best"] = True
            self.history.append(record)
            if record.get("best"):
                self._save_checkpoint("best.pt")
            self._save_checkpoint("last.pt")
            self._log(record)
            epochs.set_postfix(val=f"{value}", best=f"{self.best['value']}@{self.best['epoch']}")
            if self.rank == 0:
                print(json.dumps({k: record[k] for k in ("epoch", "train_loss", "val_loss", "val_acc_fs", "val_acc_fr")
                                  if k in record}), file=sys.stderr, flush=True)
            for callback in self.callbacks:
                callback(epoch, record)

    def _trim_log(self) -> None:
        """On resume, drop epoch records logged after the checkpoint (a crash between log and save)."""
        if self.run is None or self.rank != 0 or not self.run.metrics_path.exists():
            return
        kept = [r for r in self.run.read_log() if not (isinstance(r.get("epoch"), int) and r["epoch"] > self.epoch
                                                      and "event" not in r)]
        logged = {r["epoch"] for r in kept if isinstance(r.get("epoch"), int) and "event" not in r}
        kept.extend(r for r in self.history if r["epoch"] not in logged)
        kept.sort(key=lambda r: (r.get("epoch") or 0))
        atomic_write_bytes(self.run.metrics_path, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def _plot_curves(self, strict: bool = True) -> None:
        """Plot the training curves; a failure is a warning, except a full disk when ``strict`` (the end of a run)."""
        if self.run is None or self.rank != 0 or not self.history:
            return
        from sjframe.methods.surrogate.plots import plot_training_curves

        keep = ("epoch", "train_loss", "val_loss", "train_acc_fs", "train_acc_fr", "val_acc_fs", "val_acc_fr")
        try:
            plot_training_curves([{k: r.get(k) for k in keep} for r in self.history],
                                 self.run.plots / "training_curves.png")
        except DiskFullError:
            if strict:
                raise
            print("[sjframe] warning: could not plot the training curves: no space left on device", file=sys.stderr)
        except Exception as exc:  # a figure must never stop training
            print(f"[sjframe] warning: could not plot the training curves: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    cfg: SurrogateConfig,
    loader: DataLoader,
    device: torch.device,
    dt_ms: float | None,
    desc: str = "eval",
    progress: bool = True,
    collect: int = 0,
    reduce: Callable[[metrics_mod.EvalAccumulator], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate ``model`` on ``loader``: the accumulator's metrics, and collected outputs.

    With ``collect > 0`` the second value holds ``t_F [S, C]`` and ``labels [S]`` of every sample
    and the layer spikes ``{layer: [T, collect, ...]}`` of the first ``collect`` samples (rasters).
    """
    model.eval()
    acc = metrics_mod.EvalAccumulator(primary=_primary(cfg.loss.mode), dt_ms=dt_ms)
    collected: dict[str, Any] = {"t_F": [], "labels": [], "rasters": {}}
    have = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=_bar_disabled(progress), dynamic_ncols=True)
    try:
        for x, y in bar:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            functional.reset_net(model)
            output = model(x)
            loss, t_F = compute_loss(cfg, model, output, y, need_grad=False)
            acc.update(output, y, t_F=t_F, loss=loss)
            functional.reset_net(model)
            if collect:
                if t_F is not None:
                    collected["t_F"].append(t_F.cpu())
                collected["labels"].append(y.cpu())
                if have < collect:
                    for name, s in output.layer_spikes.items():
                        collected["rasters"].setdefault(name, []).append(s[:, : collect - have].cpu())
                    have += min(collect - have, y.shape[0])
    finally:
        bar.close()
        functional.reset_net(model)
    if reduce is not None:
        reduce(acc)
    if collect:
        collected["t_F"] = torch.cat(collected["t_F"]) if collected["t_F"] else None
        collected["labels"] = torch.cat(collected["labels"])
        collected["rasters"] = {k: torch.cat(v, dim=1) for k, v in collected["rasters"].items()}
    return acc.compute(), collected


def load_model_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from a checkpoint file, or from a run directory's ``best.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    state = read_checkpoint(path)
    if isinstance(state, dict) and "model" in state:
        return state["model"]
    if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state
    raise CheckpointError(f"checkpoint {path} holds no model state (expected a dict with a 'model' key)")


def load_weights(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """``model.load_state_dict(state)``; a checkpoint of another architecture is a :class:`CheckpointError`
    naming ``source`` and the first tensor that does not fit, with both shapes (or the missing / extra keys)."""
    own = model.state_dict()
    for key, value in state.items():
        if key in own and hasattr(value, "shape") and tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(f"{source} does not fit the model: tensor {key!r} has shape {list(value.shape)} "
                                  f"in the checkpoint but {list(own[key].shape)} in the model")
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(f"{source} does not fit the model: tensors missing from the checkpoint {missing[:4]}"
                              f"{' ...' if len(missing) > 4 else ''}, not in the model {extra[:4]}"
                              f"{' ...' if len(extra) > 4 else ''}")
    model.load_state_dict(state)


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a module output (a tensor, or a tuple / list of them, one level deep)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _output_tensors(output: ModelOutput) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of a model output's floating tensors (``h``, ``logits``, ``spikes``, ``layer_spikes[...]``)."""
    named = [("output h", output.h), ("output logits", output.logits), ("output spikes", output.spikes)]
    named += [(f"layer_spikes[{k}]", v) for k, v in (output.layer_spikes or {}).items()]
    return [(n, t) for n, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _resolve_checkpoint(run: RunDir, checkpoint: str) -> Path:
    path = Path(checkpoint)
    if path.is_file():
        return path
    name = checkpoint if checkpoint.endswith(".pt") else f"{checkpoint}.pt"
    candidate = run.checkpoints / name
    if not candidate.is_file():
        have = sorted(p.name for p in run.checkpoints.glob("*.pt")) if run.checkpoints.is_dir() else []
        raise FileNotFoundError(f"checkpoint {candidate} does not exist (the run has {have or 'no checkpoints'})")
    return candidate


def format_report(report: dict[str, Any]) -> str:
    """A readable table of a test report."""

    def fmt(v: Any, unit: str = "") -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.2f}{unit}"
        return f"{v}{unit}"

    m = report["metrics"]
    rows = [
        ("checkpoint", f"{report['checkpoint']} (epoch {report.get('epoch')})"),
        ("data / split", f"{report['data']} / test, {m['n_samples']} samples"),
        ("window", f"T = {report['T']}, T_empty = {report['T_empty']} (T_in = {m['T']}), "
                   f"dt = {fmt(report['dt_ms'], ' ms')}"),
        ("FS accuracy", fmt(m["acc_fs"], " %")),
        ("FR accuracy", fmt(m["acc_fr"], " %")),
    ]
    if m.get("acc_logits") is not None:
        rows.append(("logits accuracy", fmt(m["acc_logits"], " %")))
    rows.append(("N_s (total)", fmt(m["n_s"])))
    for name, value in (m.get("n_s_per_layer") or {}).items():
        rows.append((f"  N_s {name}", fmt(value)))
    rows += [
        (f"td50 / td90 ({m.get('td_curve')} curve)", f"{fmt(m['td50'])} / {fmt(m['td90'])} steps, "
                                                      f"{fmt(m['td50_ms'])} / {fmt(m['td90_ms'])} ms"),
        ("rate predicted / others", f"{fmt(m['rate_pred'])} / {fmt(m['rate_others'])} spikes/step"
         + (f" ({fmt(m['rate_pred_hz'])} / {fmt(m['rate_others_hz'])} Hz)" if m.get("rate_pred_hz") is not None else "")),
        ("test loss", fmt(m["loss"])),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def evaluate_run(cfg_raw: dict[str, Any] | SurrogateConfig, run: RunDir, checkpoint: str = "best.pt",
                 dist: Any = None) -> dict[str, Any]:
    """Evaluate a run's checkpoint on the test split with the config's **test window**; write the report.

    Writes ``reports/test-<checkpoint>-T<T>-E<T_empty>.{json,txt}``, a ``test`` record in
    ``metrics.jsonl``, spike rasters of the first ``eval.raster_samples`` test samples and the
    per-class first-spike patterns under ``plots/``; returns the report.

    ``dist`` (a :class:`sjframe.methods.surrogate.distributed.DistContext`; use :func:`.distributed.evaluate_run`):
    under torchrun each process evaluates its shard of the test set, the metrics are all-reduced, the
    collected outputs gathered on rank 0, which alone writes files; the other ranks return the metrics.
    """
    cfg = cfg_raw if isinstance(cfg_raw, SurrogateConfig) else resolve_config(cfg_raw)
    device = select_device(cfg.device) if dist is None else dist.device
    with torch_threads(cfg.threads):
        return _evaluate_run(cfg, run, checkpoint, device, dist)


def _evaluate_run(cfg: SurrogateConfig, run: RunDir, checkpoint: str, device: torch.device, dist: Any) -> dict[str, Any]:
    from sjframe.data import build_dataset, time_major_collate

    set_seed(cfg.seed)
    ckpt_path = _resolve_checkpoint(run, checkpoint)
    state = read_checkpoint(ckpt_path)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"checkpoint {ckpt_path} holds no model state")
    options = cfg.data.dataset_options("test")
    ds = build_dataset(cfg.data.name, "test", **options)
    T, T_empty = cfg.data.window("test")
    model = build_model(cfg.model.name, cfg.model.options, tuple(ds.input_shape), int(ds.num_classes)).to(device)
    load_weights(model, state["model"], f"checkpoint {ckpt_path}")
    if dist is None:
        loader = DataLoader(ds, batch_size=cfg.train.test_batch_size, shuffle=False, collate_fn=time_major_collate,
                            num_workers=cfg.data.num_workers)
    else:
        loader = dist.eval_loader(ds, cfg.train.test_batch_size, cfg.data.num_workers)
    dt_ms = getattr(ds, "dt_ms", None)
    metrics, collected = evaluate_model(model, cfg, loader, device, dt_ms, desc="test",
                                        progress=cfg.train.progress and (dist is None or dist.is_main),
                                        collect=max(cfg.eval.raster_samples, 1),
                                        reduce=None if dist is None else dist.reduce_accumulator)
    if dist is not None:
        collected = dist.gather_collected(collected, max(cfg.eval.raster_samples, 1))
        if not dist.is_main:
            return {"event": "test", "checkpoint": str(ckpt_path), "metrics": metrics}
    tag = f"test-{ckpt_path.stem}-T{T}-E{T_empty}"
    report = {"event": "test", "checkpoint": str(ckpt_path), "epoch": state.get("epoch"), "data": cfg.data.name,
              "T": T, "T_empty": T_empty, "dt_ms": dt_ms, "loss_mode": cfg.loss.mode, "metrics": metrics}
    reports = run.path / "reports"
    atomic_write_bytes(reports / f"{tag}.json", json.dumps(report, indent=2).encode())
    table = format_report(report)
    atomic_write_bytes(reports / f"{tag}.txt", (table + "\n").encode())
    run.log({k: v for k, v in report.items() if k != "metrics"}
            | {k: v for k, v in metrics.items() if not k.startswith("curve_")})
    if cfg.eval.plots:
        report["plots"] = _test_plots(run, tag, collected, cfg, metrics, dt_ms)
    report["table"] = table
    return report


def _test_plots(run: RunDir, tag: str, collected: dict[str, Any], cfg: SurrogateConfig, metrics: dict[str, Any],
                dt_ms: float | None) -> list[str]:
    from sjframe.methods.surrogate import plots

    out: list[str] = []
    folder = run.plots / tag
    folder.mkdir(parents=True, exist_ok=True)
    for name, spikes in collected["rasters"].items():
        for j in range(min(cfg.eval.raster_samples, spikes.shape[1])):
            label = int(collected["labels"][j])
            path = folder / f"raster-{name}-sample{j}.png"
            out.append(str(plots.plot_raster(spikes[:, j].reshape(spikes.shape[0], -1), path, dt_ms=dt_ms,
                                             title=f"{name}, test sample {j} (class {label})")))
    if collected["t_F"] is not None:
        T_in = metrics["T"]
        out.append(str(plots.plot_first_spike_patterns(collected["t_F"], collected["labels"],
                                                       folder / "first_spike_patterns.png", T_in=T_in, dt_ms=dt_ms)))
        out.append(str(plots.plot_first_spike_histograms(collected["t_F"], collected["labels"],
                                                         folder / "first_spike_histograms.png", T_in=T_in, dt_ms=dt_ms)))
    curve_key = f"curve_{metrics.get('td_curve')}"
    if metrics.get(curve_key):
        out.append(str(plots.plot_accuracy_vs_time(metrics[curve_key], folder / "accuracy_vs_time.png",
                                                   td50=metrics["td50"], td90=metrics["td90"], dt_ms=dt_ms,
                                                   label=f"{metrics['td_curve'].upper()} accuracy")))
    return out
