"""Evaluation of the ``surrogate`` method: the batch loss, metrics over a loader, the test report of a run.

* :func:`compute_loss`: the training loss of one batch (``loss.mode``: ``first_time``
  ``fs_loss(first_spike_times(S, h), y)`` with the treg term, ``firing_rate`` ``fr_loss``,
  ``rate_ce`` (seed 002), ``logits_nll`` (non-spiking readouts); plus
  ``spike_count_lambda * |N_s - target|`` and ``regularizer_weight * model.regularizer(output)``);
* :func:`evaluate_model`: FS / FR accuracy, N_s, td50 / td90 through
  :class:`~sjframe.methods.surrogate.metrics.EvalAccumulator` (sums all-reduced across processes);
* :func:`evaluate_run`: ``test.py``'s report of a checkpoint on the test window, with rasters and
  first-spike plots.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from spikingjelly.activation_based import functional
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sjframe.coding import fs as fs_mod
from sjframe.coding import losses
from sjframe.core.distributed import DistContext
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import load_weights, select_device, set_seed, torch_threads
from sjframe.methods.surrogate import metrics as metrics_mod
from sjframe.methods.surrogate.config import SurrogateConfig, resolve_config
from sjframe.methods.surrogate.confusion import write_confusion_json
from sjframe.methods.surrogate.sharding import eval_loader
from sjframe.models import build_model
from sjframe.models.base import ModelOutput

__all__ = [
    "PAPER_LABEL",
    "bar_disabled",
    "compute_loss",
    "evaluate_model",
    "evaluate_run",
    "format_report",
    "primary_coding",
    "protocol_label",
]

PAPER_LABEL = "protocol: paper (no validation; last epoch; not comparable to validated numbers)"
VALIDATED_LABEL = ("protocol: validated (checkpoint chosen on a validation split of the training file; "
                   "test set unused for choices)")


def protocol_label(protocol: str) -> str:
    """The line every report carries for ``train.protocol`` (``validated`` | ``paper``)."""
    return PAPER_LABEL if protocol == "paper" else VALIDATED_LABEL


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


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable``: off when asked, else shown on a terminal only (None: tqdm hides it on non-TTY)."""
    return True if not progress else None


def primary_coding(mode: str) -> str:
    """The coding the accuracy of ``loss.mode`` is read in: ``fs`` for ``first_time``, else ``fr``."""
    return "fs" if mode == "first_time" else "fr"


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
    acc = metrics_mod.EvalAccumulator(primary=primary_coding(cfg.loss.mode), dt_ms=dt_ms)
    collected: dict[str, Any] = {"t_F": [], "labels": [], "rasters": {}}
    have = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=bar_disabled(progress), dynamic_ncols=True)
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


def format_report(report: dict[str, Any]) -> str:
    """A readable table of a test report."""

    def fmt(v: Any, unit: str = "") -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.2f}{unit}"
        return f"{v}{unit}"

    m = report["metrics"]
    silent = m.get("silent_fraction")
    rows = [
        ("protocol", report.get("protocol_label") or protocol_label(report.get("protocol", "validated"))),
        ("checkpoint", f"{report['checkpoint']} (epoch {report.get('epoch')})"),
        ("data / split", f"{report['data']} / test, {m['n_samples']} samples"),
        ("window", f"T = {report['T']}, T_empty = {report['T_empty']} (T_in = {m['T']}), "
                   f"dt = {fmt(report['dt_ms'], ' ms')}"),
        ("FS accuracy (paper's rule)", fmt(m["acc_fs"], " %")),
        ("FS accuracy (first spike only)", fmt(m.get("acc_fs_spike"), " %")),
        ("FR accuracy", fmt(m["acc_fr"], " %")),
        ("silent outputs", "n/a" if silent is None else
         f"{100.0 * silent:.2f} % ({round(silent * m['n_samples'])} of {m['n_samples']} samples: no output spike)"),
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
                 ctx: DistContext | None = None) -> dict[str, Any]:
    """Evaluate a run's checkpoint on the test split with the config's **test window**; write the report.

    Writes ``reports/test-<checkpoint>-T<T>-E<T_empty>.{json,txt}``, a ``test`` record in
    ``metrics.jsonl``, spike rasters of the first ``eval.raster_samples`` test samples and the
    per-class first-spike patterns under ``plots/``; returns the report.

    ``ctx`` (this process's :class:`~sjframe.core.distributed.DistContext`; None: one process on the
    config's device): under torchrun each process evaluates its shard of the test set, the metrics are
    all-reduced, the collected outputs gathered on rank 0, which alone writes files; every rank returns
    the metrics of the whole test set.
    """
    cfg = cfg_raw if isinstance(cfg_raw, SurrogateConfig) else resolve_config(cfg_raw)
    ctx = ctx if ctx is not None else DistContext(device=select_device(cfg.device))
    if ctx.is_distributed and ctx.device.type == "cuda":
        torch.cuda.set_device(ctx.device)
    with torch_threads(cfg.threads):
        report = _evaluate_run(cfg, run, checkpoint, ctx)
    ctx.barrier()
    return report


def _evaluate_run(cfg: SurrogateConfig, run: RunDir, checkpoint: str, ctx: DistContext) -> dict[str, Any]:
    from sjframe.data import build_dataset

    device = ctx.device
    set_seed(cfg.seed)
    if cfg.train.protocol == "paper" and Path(checkpoint).name in ("best", "best.pt") and not Path(checkpoint).is_file():
        # no validation split, no best.pt: the paper's protocol reports the last epoch; say so rather than swap silently
        if ctx.is_main:
            print(f"test.py: note: {run.path} was trained with protocol: paper (no validation, no best.pt); "
                  f"evaluating last.pt instead of {checkpoint!r}", file=sys.stderr)
        checkpoint = "last.pt"
    state, ckpt_path = run.read_checkpoint(checkpoint)
    options = cfg.data.dataset_options("test")
    ds = build_dataset(cfg.data.name, "test", **options)
    T, T_empty = cfg.data.window("test")
    T_empty = 0 if T_empty is None else T_empty  # unset: every data set's builder appends no empty bins
    model = build_model(cfg.model.name, cfg.model.options, tuple(ds.input_shape), int(ds.num_classes)).to(device)
    load_weights(model, state["model"], f"checkpoint {ckpt_path}")
    loader = eval_loader(ctx, ds, cfg.train.test_batch_size, cfg.data.num_workers)
    dt_ms = getattr(ds, "dt_ms", None)
    metrics, collected = evaluate_model(model, cfg, loader, device, dt_ms, desc="test",
                                        progress=cfg.train.progress and ctx.is_main,
                                        collect=max(cfg.eval.raster_samples, 1), reduce=ctx.reduce_accumulator)
    collected = ctx.gather_collected(collected, max(cfg.eval.raster_samples, 1))
    if not ctx.is_main:
        return {"event": "test", "checkpoint": str(ckpt_path), "metrics": metrics}
    tag = f"test-{ckpt_path.stem}-T{T}-E{T_empty}"
    report = {"event": "test", "checkpoint": str(ckpt_path), "epoch": state.get("epoch"), "data": cfg.data.name,
              "T": T, "T_empty": T_empty, "dt_ms": dt_ms, "loss_mode": cfg.loss.mode,
              "protocol": cfg.train.protocol, "protocol_label": protocol_label(cfg.train.protocol), "metrics": metrics}
    reports = run.path / "reports"
    class_names = getattr(ds, "class_names", None)
    confusion = {}
    for kind in ("fs", "fr"):
        if metrics.get(f"confusion_{kind}") is not None:
            path = reports / f"{tag}-confusion_{kind}.json"
            confusion[kind] = str(write_confusion_json(metrics[f"confusion_{kind}"], path,
                                                       "first spike" if kind == "fs" else "spike count", class_names))
    report["confusion"] = confusion
    table = format_report(report)
    run.write_report(tag, report, table, table_suffix=".txt",
                     log={k: v for k, v in report.items() if k not in ("metrics", "confusion")}
                     | {k: v for k, v in metrics.items() if not k.startswith(("curve_", "confusion_"))})
    if cfg.eval.plots:
        report["plots"] = _test_plots(run, tag, collected, cfg, metrics, dt_ms, class_names)
    report["table"] = table
    return report


def _test_plots(run: RunDir, tag: str, collected: dict[str, Any], cfg: SurrogateConfig, metrics: dict[str, Any],
                dt_ms: float | None, class_names: Any = None) -> list[str]:
    from sjframe.methods.surrogate import plots
    from sjframe.methods.surrogate.confusion import plot_confusion

    out: list[str] = []
    folder = run.plots / tag
    folder.mkdir(parents=True, exist_ok=True)
    paper = cfg.train.protocol == "paper"
    note = f"\n{PAPER_LABEL}" if paper else ""
    for name, spikes in collected["rasters"].items():
        for j in range(min(cfg.eval.raster_samples, spikes.shape[1])):
            label = int(collected["labels"][j])
            path = folder / f"raster-{name}-sample{j}.png"
            out.append(str(plots.plot_raster(spikes[:, j].reshape(spikes.shape[0], -1), path, dt_ms=dt_ms,
                                             title=f"{name}, test sample {j} (class {label}){note}")))
    if collected["t_F"] is not None:
        T_in = metrics["T"]
        out.append(str(plots.plot_first_spike_patterns(collected["t_F"], collected["labels"],
                                                       folder / "first_spike_patterns.png", T_in=T_in, dt_ms=dt_ms,
                                                       title=PAPER_LABEL if paper else None)))
        out.append(str(plots.plot_first_spike_histograms(collected["t_F"], collected["labels"],
                                                         folder / "first_spike_histograms.png", T_in=T_in, dt_ms=dt_ms,
                                                         title=PAPER_LABEL if paper else None)))
    curve_key = f"curve_{metrics.get('td_curve')}"
    if metrics.get(curve_key):
        label = "FS (first spike) accuracy" if metrics["td_curve"] == "fs" else "FR accuracy"
        out.append(str(plots.plot_accuracy_vs_time(metrics[curve_key], folder / "accuracy_vs_time.png",
                                                   td50=metrics["td50"], td90=metrics["td90"], dt_ms=dt_ms,
                                                   label=label, title=PAPER_LABEL if paper else None)))
    for kind, what in (("fs", "first-spike decision"), ("fr", "spike-count decision")):
        matrix = metrics.get(f"confusion_{kind}")
        if matrix is not None:
            total = sum(map(sum, matrix))
            right = sum(matrix[c][c] for c in range(len(matrix)))
            silent = sum(row[-1] for row in matrix)
            title = (f"{what}: accuracy {100.0 * right / max(total, 1):.1f} %, silent {100.0 * silent / max(total, 1):.1f} %"
                     f" of {total}" + (f"\n{PAPER_LABEL}" if paper else ""))
            out.append(str(plot_confusion(matrix, folder / f"confusion_{kind}.png", title=title,
                                          class_names=class_names)))
    return out
