"""Training loop of the ``surrogate`` method (BPTT with surrogate gradients, FS / FR coding).

One :class:`Trainer` per run, everything per instance (no module state):

* data: ``sjframe.data.build_dataset`` for ``train`` / ``val`` (training window) and ``test`` (the
  test window), batches ``x [T, B, *input_shape]`` through ``time_major_collate``; the training
  order of epoch ``e`` comes from a generator seeded by ``(seed, e)``, so it does not depend on
  anything else that ran before;
* model: ``sjframe.models.build_model``; Adam (amsgrad, weight decay), gradients zeroed every step,
  gradient-norm clipping, optional cosine / multi-step schedule stepped per epoch,
  ``functional.reset_net`` after every batch, the model's ``post_step()`` (e.g. decay clamping)
  after every optimiser step;
* loss: :func:`~sjframe.methods.surrogate.evaluation.compute_loss` (``loss.mode``);
* every epoch: validation (FS and FR accuracy, N_s, td50/td90 through
  :class:`sjframe.methods.surrogate.metrics.EvalAccumulator`), a record in ``metrics.jsonl``, ``best.pt`` when the
  validation metric improves (never the test set), ``last.pt`` always; both written atomically
  and holding model, optimizer, scheduler, RNG states, epoch, best-so-far and history, so that
  :meth:`Trainer.fit` with ``resume=True`` continues exactly as an uninterrupted run would;
* ``train.protocol: paper`` (seed 003's protocol): the whole training file, no validation, no ``best.pt``;
  the last epoch is tested and every report carries :func:`~.evaluation.protocol_label`;
* ``train.tensorboard: true``: the epoch records also go to TensorBoard event files under
  ``<run_dir>/tensorboard/`` (rank 0; a resume appends, dropping events after the checkpoint's epoch);
* a NaN / inf model output (potentials, logits, output spikes), loss or gradient stops training with
  :class:`NonFiniteLossError` before the optimiser step, naming the epoch, the batch, the submodules whose
  outputs hold NaN / inf (found by running the model on the batch again, only then: checking every
  submodule's output every batch cost more than the neurons) and the last good checkpoint (an event in
  ``metrics.jsonl``); the checkpoints of the last good epoch are left as they were.

Rank-aware: the trainer holds this process's :class:`~sjframe.core.distributed.DistContext` (one
process: a context whose collectives are no-ops); metric reduction goes through
``ctx.reduce_accumulator`` and every file write through :meth:`Trainer._save_checkpoint` /
:meth:`Trainer._log` (rank 0 only). Evaluation and the test report: :mod:`.evaluation`.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from sjframe.core.cli_errors import DiskFullError, UserError
from sjframe.core.distributed import DistContext
from sjframe.core.rundir import RunDir, atomic_write_bytes
from sjframe.core.runtime import (
    epoch_generator,
    load_weights,
    read_model_state,
    rng_state,
    select_device,
    set_rng_state,
    set_seed,
    torch_threads,
)
from sjframe.methods.surrogate import metrics as metrics_mod
from sjframe.methods.surrogate.config import SurrogateConfig, config_to_dict
from sjframe.methods.surrogate.evaluation import (
    PAPER_LABEL,
    as_frames,
    bar_disabled,
    compute_loss,
    evaluate_model,
    primary_coding,
)
from sjframe.methods.surrogate.sharding import eval_loader
from sjframe.models import build_model
from sjframe.models.base import ModelOutput

__all__ = ["EpochCallback", "NonFiniteLossError", "Trainer", "default_select_metric"]

EpochCallback = Callable[[int, dict[str, Any]], None]


class NonFiniteLossError(UserError, RuntimeError):
    """The model output, the loss or the gradient norm became NaN / inf; training stopped before the optimiser step."""


# --------------------------------------------------------------------------------------------- helpers
def default_select_metric(mode: str) -> str:
    """The validation metric choosing ``best.pt`` for a loss mode."""
    return {"first_time": "acc_fs", "logits_nll": "acc"}.get(mode, "acc_fr")


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
    val: Dataset | None  # None under train.protocol paper (no validation split)


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a module output (a tensor, or a tuple / list of them, one level deep)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [v for v in value if isinstance(v, torch.Tensor)]
    return []


def _output_tensors(output: ModelOutput, layers: bool = True) -> list[tuple[str, torch.Tensor]]:
    """``(name, tensor)`` of a model output's floating tensors (``h``, ``logits``, ``spikes`` and, if ``layers``,
    ``layer_spikes[...]``)."""
    named = [("output h", output.h), ("output logits", output.logits), ("output spikes", output.spikes)]
    if layers:
        named += [(f"layer_spikes[{k}]", v) for k, v in (output.layer_spikes or {}).items()]
    return [(n, t) for n, t in named if isinstance(t, torch.Tensor) and t.is_floating_point()]



# --------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Trains one model of the ``surrogate`` method into a run directory.

    Args:
        cfg: the resolved config.
        run: the run directory (``None``: nothing is written; for programmatic use).
        callbacks: ``f(epoch, record)`` called after each epoch's checkpoint (tests use it to interrupt).
        ctx: this process's distributed context (None: one process on ``cfg.device``); only rank 0 writes files.
    """

    def __init__(
        self,
        cfg: SurrogateConfig,
        run: RunDir | None,
        callbacks: list[EpochCallback] | None = None,
        ctx: DistContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.run = run
        self.callbacks = list(callbacks or [])
        self.ctx = ctx if ctx is not None else DistContext(device=select_device(cfg.device))
        self.rank = self.ctx.rank
        self.world_size = self.ctx.world_size
        self.device = self.ctx.device
        set_seed(cfg.seed)
        self.paper = cfg.train.protocol == "paper"  # seed 003's protocol: no validation split, the last epoch
        self.data = self._build_data()
        self.input_shape = tuple(self.data.train.input_shape)
        self.num_classes = int(self.data.train.num_classes)
        self.dt_ms = getattr(self.data.train, "dt_ms", None)
        self.model = build_model(cfg.model.name, cfg.model.options, self.input_shape, self.num_classes).to(self.device)
        if cfg.train.init_checkpoint:
            load_weights(self.model, read_model_state(cfg.train.init_checkpoint),
                         f"train.init_checkpoint (--load_pt_file) {cfg.train.init_checkpoint}")
        # the module called for the training forward: the model itself, or its DistributedDataParallel /
        # torch.compile wrapper (set by sjframe.methods.surrogate.distributed.make_trainer); evaluation calls self.model
        self.forward_module: nn.Module = self.model
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
        if self.paper:
            self.best = {"metric": "last epoch (protocol: paper)", "value": None, "epoch": None}
        self._tb: Any = None  # the TensorBoard SummaryWriter while fit() runs (train.tensorboard, rank 0)

    # ------------------------------------------------------------------------------ data
    def _build_data(self) -> _Data:
        from sjframe.data import build_dataset, whole_training_options

        dc = self.cfg.data
        out: dict[str, Any] = {"val": None}
        for split in ("train",) if self.paper else ("train", "val"):
            options = dc.dataset_options(split)
            if self.paper:  # the whole training file: nothing held out
                options = whole_training_options(dc.name, options)
            out[split] = as_frames(build_dataset(dc.name, split, **options), self.cfg)
        return _Data(**out)

    def _loader(self, ds: Dataset, train: bool, epoch: int = 0) -> DataLoader:
        from sjframe.data import time_major_collate

        if not train:
            return eval_loader(self.ctx, ds, self.cfg.train.test_batch_size, self.cfg.data.num_workers)
        return DataLoader(
            ds,
            batch_size=self.cfg.train.batch_size,
            shuffle=True,
            generator=epoch_generator(self.cfg.seed, epoch),
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
            "rng": rng_state(),
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
        set_rng_state(state["rng"])

    def _save_checkpoint(self, name: str) -> Path | None:
        """The one place checkpoints are written (rank 0 only, atomically)."""
        if self.run is None or self.rank != 0:
            return None
        return self.run.save_checkpoint(self.state(), name)

    def _log(self, record: dict[str, Any]) -> None:
        if self.run is not None and self.rank == 0:
            self.run.log(record)

    def _reduce(self, acc: metrics_mod.EvalAccumulator) -> None:
        """Sum the accumulator over the processes (a no-op in a single process)."""
        self.ctx.reduce_accumulator(acc)

    def _loss_finite(self, loss: torch.Tensor) -> bool:
        """Whether the batch loss is finite (distributed: on every process, so that all stop together)."""
        return self._all_ok(bool(torch.isfinite(loss)))

    def _all_ok(self, flag: bool) -> bool:
        """``flag`` of this process (distributed: the AND over every process, so that all stop together)."""
        return self.ctx.all_true(flag)

    def _outputs_finite(self, output: ModelOutput) -> bool:
        """Whether the model's decision outputs (``h``, ``logits``, ``spikes``) are finite: the per-batch check.

        The hidden layers are not checked every batch (that cost more than the neurons on the CPU backend): a
        NaN / inf inside them reaches these outputs, the loss or the gradients, which are checked, and
        :meth:`_diagnose` then names the submodules.
        """
        named = _output_tensors(output, layers=False)
        return not named or bool(torch.stack([torch.isfinite(t).all() for _, t in named]).all())

    def _grads_finite(self, clip_norm: torch.Tensor | None) -> bool:
        """Whether every gradient is finite: the clipping norm when ``train.grad_clip`` computed one, else the
        max-abs norm over the gradients (NaN propagates through the max; unlike a 2-norm it cannot overflow)."""
        if clip_norm is not None:
            return bool(torch.isfinite(clip_norm))
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        return not grads or bool(torch.isfinite(nn.utils.get_total_norm(grads, norm_type=math.inf)))

    @torch.no_grad()
    def _diagnose(self, x: torch.Tensor) -> list[str]:
        """Names of the submodule outputs and model outputs holding NaN / inf when the model runs ``x`` again
        (same mode; the RNG state, the parameters and buffers (BatchNorm statistics) are restored after)."""
        model = self.model
        saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
        flags: list[tuple[str, torch.Tensor]] = []

        def hook_for(name: str) -> Callable[..., None]:
            def hook(module: nn.Module, inputs: Any, output: Any) -> None:
                flags.extend((name, torch.isfinite(t).all()) for t in _tensors(output) if t.is_floating_point())
            return hook

        handles = [module.register_forward_hook(hook_for(name)) for name, module in model.named_modules() if name]
        cuda = [torch.cuda.current_device()] if self.device.type == "cuda" else []
        try:
            functional.reset_net(model)
            with torch.random.fork_rng(devices=cuda):
                output = model(x)
            named = flags + [(n, torch.isfinite(t).all()) for n, t in _output_tensors(output)]
            return list(dict.fromkeys(name for name, flag in named if not bool(flag)))
        finally:
            for handle in handles:
                handle.remove()
            functional.reset_net(model)
            model.load_state_dict(saved)

    def _stop_on_activations(self, x: torch.Tensor, epoch: int, batch: int, fallback: str | None = None) -> None:
        """Raise the ``non_finite_activation`` stop naming the NaN / inf submodule outputs of this batch, if any
        (found by :meth:`_diagnose`); with none found, return, or raise naming ``fallback`` when given."""
        bad = self._diagnose(x)
        if bad or fallback is not None:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            self._stop_non_finite("non_finite_activation",
                                  f"NaN / inf in the forward pass ({shown or fallback})", epoch, batch, tensors=bad)

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
        acc = metrics_mod.EvalAccumulator(primary=primary_coding(cfg.loss.mode), dt_ms=self.dt_ms)
        loader = self._loader(self.data.train, train=True, epoch=epoch)
        total = len(loader) if cfg.train.max_batches is None else min(len(loader), cfg.train.max_batches)
        bar = tqdm(total=total, desc=f"epoch {epoch}/{cfg.train.epochs}", leave=False,
                   disable=bar_disabled(cfg.train.progress and self.rank == 0), dynamic_ncols=True)
        running, seen = 0.0, 0
        try:
            for i, (x, y) in enumerate(loader):
                if i >= total:
                    break
                x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
                self.optimizer.zero_grad(set_to_none=True)
                functional.reset_net(model)
                output = self.forward_module(x)
                if not self._all_ok(self._outputs_finite(output)):
                    self._stop_on_activations(x, epoch, i, fallback="the model's outputs")
                loss, t_F = compute_loss(cfg, model, output, y)
                if not self._loss_finite(loss):
                    self._stop_on_activations(x, epoch, i)
                    self._stop_non_finite("non_finite_loss", f"non-finite loss ({float(loss.detach())})", epoch, i,
                                          loss=float(loss.detach()))
                loss.backward()
                clip_norm = None
                if cfg.train.grad_clip is not None:
                    clip_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                if not self._grads_finite(clip_norm):
                    self._stop_on_activations(x, epoch, i)
                    self._stop_non_finite("non_finite_grad", "non-finite gradient", epoch, i)
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
        return {"train_loss": m["loss"], "train_acc_fs": m["acc_fs"], "train_acc_fs_spike": m["acc_fs_spike"],
                "train_acc_fr": m["acc_fr"], "train_silent_fraction": m["silent_fraction"],
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
                      total=cfg.train.epochs, disable=bar_disabled(cfg.train.progress and self.rank == 0),
                      dynamic_ncols=True)
        self._open_tensorboard(resume)
        try:
            self._epochs(epochs)
        except BaseException:
            epochs.close()
            self._close_tensorboard()
            self._plot_curves(strict=False)  # also after an error or an interrupt: the curves of the epochs done
            raise
        epochs.close()
        self._close_tensorboard()
        self._plot_curves(strict=True)
        summary = {"epochs": self.epoch, "best": dict(self.best), "protocol": cfg.train.protocol,
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
            if self.paper:  # no validation split: the last epoch is the one tested
                record["protocol"] = "paper"
                record = _round(record)
                self.epoch = epoch
                self.best = {"metric": "last epoch (protocol: paper)", "value": None, "epoch": epoch}
                self.history.append(record)
                self._save_checkpoint("last.pt")
                self._log(record)
                self._tensorboard(record)
                epochs.set_postfix(train_loss=f"{record.get('train_loss')}")
                if self.rank == 0:
                    print(json.dumps({k: record[k] for k in ("epoch", "train_loss", "train_acc_fs", "train_acc_fr",
                                                             "protocol") if k in record}), file=sys.stderr, flush=True)
                for callback in self.callbacks:
                    callback(epoch, record)
                continue
            val = self.evaluate(self.data.val, desc=f"val {epoch}")
            record.update({f"val_{k}": val[k] for k in ("loss", "acc", "acc_fs", "acc_fs_spike", "acc_fr",
                                                        "silent_fraction", "n_s", "td50", "td90")})
            record["val_n_s_per_layer"] = val["n_s_per_layer"]
            record = _round(record)
            self.epoch = epoch
            value = record.get(f"val_{self.select_metric}")
            if value is None:
                raise ValueError(
                    f"validation metric {self.select_metric!r} (train.select_metric) is not available for model "
                    f"{cfg.model.name!r} with loss.mode {cfg.loss.mode!r}; choose one of acc, acc_fs, acc_fs_spike, "
                    "acc_fr, loss"
                )
            if _better(self.select_metric, value, self.best["value"]):
                self.best = {"metric": self.select_metric, "value": value, "epoch": epoch}
                record["best"] = True
            self.history.append(record)
            if record.get("best"):
                self._save_checkpoint("best.pt")
            self._save_checkpoint("last.pt")
            self._log(record)
            self._tensorboard(record)
            epochs.set_postfix(val=f"{value}", best=f"{self.best['value']}@{self.best['epoch']}")
            if self.rank == 0:
                logits_only = record.get("val_acc_fs") is None and record.get("val_acc_fr") is None
                shown = ("val_acc",) if logits_only else ("val_acc_fs", "val_acc_fr")
                print(json.dumps({k: record[k] for k in ("epoch", "train_loss", "val_loss", *shown) if k in record}),
                      file=sys.stderr, flush=True)
            for callback in self.callbacks:
                callback(epoch, record)

    def _open_tensorboard(self, resume: bool) -> None:
        """Open the SummaryWriter of ``train.tensorboard`` (rank 0 with a run directory); a resume appends to the
        same folder and drops the events logged after the checkpoint's epoch (``purge_step``)."""
        if not self.cfg.train.tensorboard or self.run is None or self.rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter

        purge = self.epoch + 1 if resume and self.epoch > 0 else None
        self._tb = SummaryWriter(log_dir=str(self.run.path / "tensorboard"), purge_step=purge)

    def _close_tensorboard(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def _tensorboard(self, record: dict[str, Any]) -> None:
        """One epoch record as TensorBoard scalars: ``train/<metric>``, ``val/<metric>`` and ``lr``, step = epoch."""
        if self._tb is None:
            return
        for key, value in record.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            tag = key.replace("_", "/", 1) if key.startswith(("train_", "val_")) else key
            self._tb.add_scalar(tag, value, record["epoch"])
        self._tb.flush()

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

        keep = ("epoch", "train_loss", "val_loss", "train_acc_fs", "train_acc_fr", "val_acc_fs", "val_acc_fs_spike",
                "val_acc_fr")
        last = self.history[-1]
        if last.get("train_acc_fs") is None and last.get("train_acc_fr") is None:  # a logits readout: its accuracy
            keep += ("train_acc", "val_acc")
        try:
            plot_training_curves([{k: r.get(k) for k in keep} for r in self.history],
                                 self.run.plots / "training_curves.png",
                                 title=PAPER_LABEL if self.paper else None)
        except DiskFullError:
            if strict:
                raise
            print("[sjframe] warning: could not plot the training curves: no space left on device", file=sys.stderr)
        except Exception as exc:  # a figure must never stop training
            print(f"[sjframe] warning: could not plot the training curves: {exc}", file=sys.stderr)


