"""Figures of an exact-time run (matplotlib, Agg backend): spike-time histograms, curves, weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

__all__ = ["plot_spike_time_histograms", "plot_accuracy_curves", "plot_weight_histograms"]


def plot_spike_time_histograms(t_out: torch.Tensor, labels: torch.Tensor, path: str | Path,
                               class_names: Sequence[str] | None = None) -> Path:
    """One panel per true class: histograms of every label neuron's first-spike time ``t_out [B, C]``.

    Silent neurons (``inf``) are counted in the panel title, not drawn.
    """
    t = t_out.detach().cpu().double().numpy()
    y = labels.detach().cpu().numpy()
    n_cls = t.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(n_cls)]
    finite = np.isfinite(t)
    lo, hi = (t[finite].min(), t[finite].max()) if finite.any() else (0.0, 1.0)
    bins = np.linspace(lo, hi + 1e-9, 40)
    cols = min(n_cls, 5)
    rows = (n_cls + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    for c in range(rows * cols):
        ax = axes[c // cols][c % cols]
        if c >= n_cls:
            ax.axis("off")
            continue
        sel = y == c
        for k in range(n_cls):
            vals = t[sel, k]
            vals = vals[np.isfinite(vals)]
            own = k == c
            ax.hist(vals, bins=bins, alpha=0.9 if own else 0.55, label=names[k], histtype="stepfilled" if own else "step")
        silent = int((~np.isfinite(t[sel])).sum())
        ax.set_title(f"class {names[c]} (n={int(sel.sum())}, silent={silent})", fontsize=9)
        ax.set_xlabel("first-spike time [tau_s]")
    axes[0][0].legend(fontsize=7, title="label neuron", title_fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracy_curves(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Train / validation accuracy and loss per epoch from ``metrics.jsonl`` epoch records."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for r in records:
        if r.get("event") == "epoch":
            by_epoch[int(r["epoch"])] = r  # a resumed run overwrites earlier records of the same epoch
    epochs = sorted(by_epoch)
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, style in (("train_acc", "-"), ("val_acc", "--")):
        ax_acc.plot(epochs, [100 * float(by_epoch[e].get(key, np.nan)) for e in epochs], style, label=key)
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        ax_loss.plot(epochs, [float(by_epoch[e].get(key, np.nan)) for e in epochs], style, label=key)
    ax_acc.set_ylabel("accuracy [%]")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_weight_histograms(weights: Sequence[torch.Tensor], path: str | Path) -> Path:
    """One histogram per layer of its weights (bias rows included)."""
    fig, axes = plt.subplots(1, len(weights), figsize=(4 * len(weights), 3), squeeze=False)
    for i, w in enumerate(weights):
        ax = axes[0][i]
        ax.hist(w.detach().cpu().double().numpy().ravel(), bins=60)
        ax.set_title(f"layer {i}: {tuple(w.shape)}", fontsize=9)
        ax.set_xlabel("weight")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
