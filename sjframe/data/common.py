"""Helpers shared by the data-set builders: option checking and the validation split."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["check_options", "require_bool", "require_int", "require_number", "val_split_indices"]


def check_options(dataset: str, options: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Raise ``ValueError`` naming every unknown key of ``options`` and listing the valid ones."""
    valid = sorted(valid)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for data set {dataset!r}; valid: {valid}")


def require_int(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an int (bools rejected), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def require_number(name: str, value: Any, positive: bool = False, minimum: float | None = None) -> float:
    """``value`` as a finite float (bools rejected), ``> 0`` if ``positive``, ``>= minimum`` if given."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def require_bool(name: str, value: Any) -> bool:
    """``value`` as a bool (only ``True`` / ``False`` accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def val_split_indices(n: int, split: str, val_fraction: float, val_seed: int) -> np.ndarray:
    """Indices of the training file's samples that form ``split`` (``train`` or ``val``).

    A random permutation of ``range(n)`` drawn with ``numpy.random.RandomState(val_seed)``; its
    first ``round(val_fraction * n)`` entries are the validation split, the rest the training
    split (both returned sorted). ``val_fraction = 0`` keeps every sample in ``train`` and makes
    ``val`` an error.
    """
    val_fraction = require_number("val_fraction", val_fraction)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    val_seed = require_int("val_seed", val_seed)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val' here, got {split!r}")
    n_val = int(round(val_fraction * n))
    if split == "val" and n_val == 0:
        raise ValueError(f"the validation split is empty (val_fraction={val_fraction}, {n} training samples)")
    perm = np.random.RandomState(val_seed).permutation(n)
    chosen = perm[:n_val] if split == "val" else perm[n_val:]
    return np.sort(chosen).astype(np.int64)
