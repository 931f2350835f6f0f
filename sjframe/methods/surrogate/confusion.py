"""Confusion matrices with a *silent* column: as JSON, and as a PNG figure.

A matrix here is the count array ``[C, C + 1]`` that :class:`sjframe.methods.surrogate.metrics.EvalAccumulator`
returns as ``confusion_fs`` (decision by the first output spike) and ``confusion_fr`` (decision by
the spike counts): row = target class, column = predicted class, the last column ``C`` = samples of
that class whose output never spiked (silent; see :mod:`sjframe.coding.decode`).

Both writers are atomic (:func:`sjframe.core.rundir.atomic_write_bytes`: temporary file + rename), so
an interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sjframe.core.rundir import atomic_write_bytes  # noqa: E402

__all__ = ["confusion_summary", "plot_confusion", "write_confusion_json"]


def _matrix(matrix: Any) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] != m.shape[0] + 1:
        raise ValueError(f"a confusion matrix must be [C, C + 1] (last column: silent), got shape {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any() or (m != np.round(m)).any():
        raise ValueError("a confusion matrix must hold non-negative integer counts")
    return m.astype(np.int64)


def _names(class_names: Sequence[str] | None, C: int) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(C)]
    names = [str(n) for n in class_names]
    if len(names) != C:
        raise ValueError(f"{len(names)} class names for {C} classes")
    return names


def confusion_summary(matrix: Any, decoder: str = "fs", class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-able description of ``matrix`` ``[C, C + 1]``.

    Keys: ``decoder``, ``classes`` (names), ``columns`` (the class names and ``"silent"``),
    ``counts`` (the matrix, ints), ``per_class`` (per target class: ``n``, ``correct``, ``silent``,
    ``accuracy`` and ``silent_fraction``, ``None`` for a class without samples), ``n_samples``,
    ``accuracy`` (percent, silent = wrong) and ``silent_fraction`` (fraction in ``[0, 1]``).
    """
    m = _matrix(matrix)
    C = m.shape[0]
    names = _names(class_names, C)
    rows = m.sum(axis=1)
    diag = np.diag(m[:, :C])
    per_class = [
        {"class": names[c], "n": int(rows[c]), "correct": int(diag[c]), "silent": int(m[c, C]),
         "accuracy": 100.0 * diag[c] / rows[c] if rows[c] else None,
         "silent_fraction": m[c, C] / rows[c] if rows[c] else None}
        for c in range(C)
    ]
    total = int(rows.sum())
    return {
        "decoder": decoder,
        "classes": names,
        "columns": names + ["silent"],
        "counts": m.tolist(),
        "per_class": [{k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()} for row in per_class],
        "n_samples": total,
        "accuracy": 100.0 * float(diag.sum()) / total if total else None,
        "silent_fraction": float(m[:, C].sum()) / total if total else None,
    }


def write_confusion_json(matrix: Any, path: str | Path, decoder: str = "fs",
                         class_names: Sequence[str] | None = None) -> Path:
    """Write :func:`confusion_summary` of ``matrix`` to ``path`` (JSON, atomically); returns the path."""
    path = Path(path)
    summary = confusion_summary(matrix, decoder, class_names)
    atomic_write_bytes(path, (json.dumps(summary, indent=2) + "\n").encode())
    return path


def plot_confusion(matrix: Any, path: str | Path, title: str | None = None,
                   class_names: Sequence[str] | None = None, normalise: bool = True) -> Path:
    """The matrix ``[C, C + 1]`` as a heat map (PNG, written atomically); returns the path.

    Rows are target classes, columns predicted classes and, last, ``silent``. With ``normalise``
    the colours are the share of each row (a class without samples stays 0); the cells are annotated
    with the counts when ``C <= 25``.
    """
    m = _matrix(matrix)
    C = m.shape[0]
    names = _names(class_names, C)
    rows = m.sum(axis=1, keepdims=True)
    shown = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0) if normalise else m.astype(np.float64)
    size = 2.5 + 0.35 * C
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalise else None, aspect="auto")
    fig.colorbar(image, ax=ax, label="share of the class" if normalise else "samples")
    ax.axvline(C - 0.5, color="tab:red", linewidth=1.0)  # separates the silent column
    ax.set_xticks(range(C + 1), names + ["silent"], rotation=90 if C > 10 else 0)
    ax.set_yticks(range(C), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("target")
    if C <= 25:
        peak = shown.max() if shown.size else 0.0
        for i in range(C):
            for j in range(C + 1):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if shown[i, j] > 0.6 * peak else "black")
    total = int(m.sum())
    acc = 100.0 * float(np.trace(m[:, :C])) / total if total else 0.0
    silent = 100.0 * float(m[:, C].sum()) / total if total else 0.0
    ax.set_title(title or f"confusion: accuracy {acc:.1f} %, silent {silent:.1f} % of {total}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
