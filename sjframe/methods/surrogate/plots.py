"""Figures of a run (matplotlib, Agg backend: no display needed). Every function writes one PNG.

* :func:`plot_training_curves`: loss and accuracy per epoch from the ``metrics.jsonl`` records;
* :func:`plot_raster`: spike raster ``[T, N]`` of one sample;
* :func:`plot_first_spike_patterns`: per-class first-spike times ``t_F [S, N]`` of the output
  neurons across trials;
* :func:`plot_first_spike_histograms`: per class, histogram of the target neuron's first-spike time;
* :func:`plot_weight_histograms`: histograms of weight tensors;
* :func:`plot_accuracy_vs_time`: the accuracy-versus-time curve with td50 / td90 marked.

Times on the axes are 0-based steps (``t_F - 1`` for first-spike times), or ms when ``dt_ms`` is given.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402

__all__ = [
    "plot_accuracy_vs_time",
    "plot_first_spike_histograms",
    "plot_first_spike_patterns",
    "plot_raster",
    "plot_training_curves",
    "plot_weight_histograms",
]


def _array(name: str, x: Tensor | np.ndarray | Sequence, ndim: int) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN values")
    return arr


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Render ``fig`` to PNG and write it atomically (a full disk names the file and leaves no partial PNG)."""
    from sjframe.core.rundir import atomic_write_bytes

    path = Path(path)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _time_axis(T: int, dt_ms: float | None) -> tuple[np.ndarray, str]:
    steps = np.arange(T, dtype=np.float64)
    return (steps * dt_ms, "time (ms)") if dt_ms else (steps, "time step")


def plot_training_curves(records: Sequence[Mapping], path: str | Path, title: str | None = None) -> Path:
    """Loss and accuracy per epoch from metrics records (dicts with an ``epoch`` key).

    Every numeric key whose name contains ``loss`` goes on the left panel, every one containing
    ``acc`` on the right (e.g. ``train_loss``, ``val_loss``, ``val_acc_fs``); records without an
    ``epoch`` (test reports, ...) are skipped. ``title``: a line above both panels (e.g. the protocol).
    """
    epochs = [r for r in records if isinstance(r, Mapping) and isinstance(r.get("epoch"), (int, float))]
    if not epochs:
        raise ValueError("records hold no epoch record (a dict with an 'epoch' key)")
    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in epochs:
        for key, value in r.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(value) or ("loss" not in key and "acc" not in key):
                continue
            xs, ys = series.setdefault(key, ([], []))
            xs.append(float(r["epoch"]))
            ys.append(float(value))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, (xs, ys) in sorted(series.items()):
        ax = ax_loss if "loss" in key else ax_acc
        ax.plot(xs, ys, marker="o", markersize=3, label=key)
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_raster(spikes: Tensor | np.ndarray, path: str | Path, dt_ms: float | None = None,
                title: str | None = None) -> Path:
    """Raster of one sample's spikes ``[T, N]`` (a dot per spike: time on x, neuron on y)."""
    arr = _array("spikes", spikes, 2)
    times, label = _time_axis(arr.shape[0], dt_ms)
    t_idx, n_idx = np.nonzero(arr > 0)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.scatter(times[t_idx], n_idx, s=4, marker="|", color="k")
    ax.set_xlim(times[0] - 0.5 * (dt_ms or 1), times[-1] + 0.5 * (dt_ms or 1))
    ax.set_ylim(-0.5, arr.shape[1] - 0.5)
    ax.set_xlabel(label)
    ax.set_ylabel("neuron")
    ax.set_title(title or f"spike raster ({len(t_idx)} spikes)")
    return _save(fig, path)


def _classes(labels: Tensor | np.ndarray | Sequence, n: int) -> np.ndarray:
    lab = labels.detach().cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    if lab.shape != (n,):
        raise ValueError(f"labels must be [S] = [{n}], got shape {lab.shape}")
    return lab.astype(np.int64)


def _finish_class_panels(fig: plt.Figure, axes: np.ndarray, used: int, dt_ms: float | None, ylabel: str, title: str | None,
                         path: str | Path) -> Path:
    """The end of a one-panel-per-class figure of first-spike times: unused panels off, the shared axis labels
    (ms when ``dt_ms`` is given, else steps ``t_F - 1``), the optional ``title`` above; saved to ``path``."""
    for ax in axes.flat[used:]:
        ax.axis("off")
    fig.supxlabel("first-spike time (ms)" if dt_ms else "first-spike step (t_F - 1)", y=-0.04)
    fig.supylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_first_spike_patterns(t_F: Tensor | np.ndarray, labels: Tensor | np.ndarray | Sequence, path: str | Path,
                              T_in: int | None = None, max_trials: int = 50, dt_ms: float | None = None,
                              title: str | None = None) -> Path:
    """Per-class first-spike patterns: one panel per class, the output neurons' first spikes across trials.

    ``t_F [S, N]`` (1-based, from the FS encoder), ``labels [S]``. In the panel of class ``c``, trial
    ``j`` of that class draws a dot at ``(t_F[j, n] - 1, n + offset_j)`` for every neuron that spiked
    (``t_F <= T_in``; all entries when ``T_in`` is None); the row of neuron ``c`` is shaded. ``title``: a
    line above the panels (e.g. the protocol).
    """
    arr = _array("t_F", t_F, 2)
    S, N = arr.shape
    lab = _classes(labels, S)
    classes = np.unique(lab)
    if classes.size == 0:
        raise ValueError("t_F holds no sample")
    cols = min(5, classes.size)
    rows = math.ceil(classes.size / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharex=True, sharey=True)
    scale = dt_ms or 1.0
    for ax, c in zip(axes.flat, classes):
        trials = arr[lab == c][:max_trials]
        if 0 <= c < N:
            ax.axhspan(c - 0.5, c + 0.5, color="tab:orange", alpha=0.2)
        for j, row in enumerate(trials):
            fired = row <= T_in if T_in is not None else np.ones_like(row, dtype=bool)
            offset = (j + 0.5) / max(len(trials), 1) * 0.8 - 0.4
            ax.scatter((row[fired] - 1) * scale, np.nonzero(fired)[0] + offset, s=5, color="k")
        ax.set_title(f"class {c} ({len(trials)} trials)", fontsize=9)
        ax.set_ylim(-0.5, N - 0.5)
    return _finish_class_panels(fig, axes, classes.size, dt_ms, "output neuron", title, path)


def plot_first_spike_histograms(t_F: Tensor | np.ndarray, labels: Tensor | np.ndarray | Sequence, path: str | Path,
                                T_in: int | None = None, dt_ms: float | None = None, title: str | None = None) -> Path:
    """Per class, the histogram of the target neuron's first-spike time ``t_F[j, c] - 1`` (silent ones counted apart);
    ``title``: a line above the panels (e.g. the protocol)."""
    arr = _array("t_F", t_F, 2)
    S, N = arr.shape
    lab = _classes(labels, S)
    classes = np.unique(lab)
    if classes.size == 0:
        raise ValueError("t_F holds no sample")
    if classes.min() < 0 or classes.max() >= N:
        raise ValueError(f"labels must be in [0, {N}), got [{classes.min()}, {classes.max()}]")
    cols = min(5, classes.size)
    rows = math.ceil(classes.size / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    scale = dt_ms or 1.0
    for ax, c in zip(axes.flat, classes):
        times = arr[lab == c, c]
        fired = times <= T_in if T_in is not None else np.ones_like(times, dtype=bool)
        if fired.any():
            ax.hist((times[fired] - 1) * scale, bins=20, color="tab:blue")
        ax.set_title(f"class {c}: {int((~fired).sum())} silent", fontsize=9)
    return _finish_class_panels(fig, axes, classes.size, dt_ms, "samples", title, path)


def plot_weight_histograms(weights: Mapping[str, Tensor | np.ndarray], path: str | Path, bins: int = 50) -> Path:
    """One histogram per named weight tensor (e.g. ``dict(model.named_parameters())``)."""
    items = [(k, _array(k, w.reshape(-1) if isinstance(w, Tensor) else np.ravel(w), 1)) for k, w in weights.items()]
    if not items:
        raise ValueError("weights is empty")
    cols = min(4, len(items))
    rows = math.ceil(len(items) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, (name, values) in zip(axes.flat, items):
        ax.hist(values, bins=bins, color="tab:green")
        ax.set_title(f"{name} ({values.size})", fontsize=8)
    for ax in axes.flat[len(items):]:
        ax.axis("off")
    return _save(fig, path)


def plot_accuracy_vs_time(curve: Tensor | np.ndarray | Sequence[float], path: str | Path, td50: int | None = None,
                          td90: int | None = None, dt_ms: float | None = None, label: str = "accuracy",
                          title: str | None = None) -> Path:
    """The accuracy-versus-time curve (percent per 0-based step) with td50 / td90 (steps) marked; ``title``
    above it (e.g. the protocol)."""
    arr = _array("curve", curve, 1)
    if arr.size == 0:
        raise ValueError("curve is empty")
    times, xlabel = _time_axis(arr.size, dt_ms)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(times, arr, color="k", label=label)
    scale = dt_ms or 1.0
    for name, value, color in (("td50", td50, "tab:blue"), ("td90", td90, "tab:red")):
        if value is not None:
            unit = "ms" if dt_ms else "steps"
            ax.axvline(value * scale, color=color, linestyle="--", label=f"{name} = {value * scale:g} {unit}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy (%)")
    if title:
        ax.set_title(title, fontsize=8)
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)
