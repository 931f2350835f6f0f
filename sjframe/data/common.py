"""Helpers shared by the data-set builders: option checking and the validation split.

Validation split of the training file (:func:`resolve_val_split`, :func:`split_indices`):

* ``val_split: {fraction: 0.1, by: speaker | random, seed: 0}`` -- ``fraction`` of the training
  file's samples held out for validation; ``by: speaker`` holds out whole speakers
  (:func:`speaker_split_indices`: no speaker in both ``train`` and ``val``), ``by: random`` a random
  subset of samples (:func:`val_split_indices`). Without ``by``: ``speaker`` where the file carries
  speaker ids (SHD, SSC and the spoken-digit files: ``/extra/speaker``), ``random`` where it does not.
* The older ``val_fraction`` / ``val_seed`` options are the random form, exactly as before:
  ``val_fraction: f, val_seed: s`` is ``val_split: {fraction: f, by: random, seed: s}`` (either
  may be left out: 0.1 and 0). They cannot be combined with ``val_split``.
* Nothing given: ``val_split: {fraction: 0.1, seed: 0}`` (by speaker where speakers exist).
* Cross-validation: ``val_split: {folds: K, fold: i, by: speaker | random, seed: 0}`` (in place of
  ``fraction``) -- the training file cut into ``K`` folds (:func:`fold_indices`: whole speakers per fold
  with balanced sample counts, or a random partition), fold ``i`` validates and the other ``K - 1``
  train. Running ``i = 0 .. K-1`` validates every training sample once
  (``scripts/cross_validate.py``); the test file is not touched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "VAL_SPLIT_BY",
    "ValSplit",
    "check_options",
    "fold_indices",
    "require_bool",
    "require_int",
    "require_number",
    "resolve_val_split",
    "speaker_split_indices",
    "split_indices",
    "val_split_indices",
]

VAL_SPLIT_BY = ("speaker", "random")
VAL_SPLIT_KEYS = ("fraction", "by", "seed", "folds", "fold")


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


@dataclass(frozen=True)
class ValSplit:
    """A resolved validation split: ``fraction`` in ``[0, 1)``, ``by`` (``speaker`` | ``random`` |
    ``None`` = speaker where the file has speakers, else random) and ``seed``; for cross-validation
    ``folds`` (``K >= 2``, else None) and ``fold`` (``0 .. K-1``), ``fraction`` then unused."""

    fraction: float = 0.1
    by: str | None = None
    seed: int = 0
    folds: int | None = None
    fold: int = 0


def resolve_val_split(options: Mapping[str, Any]) -> ValSplit:
    """The :class:`ValSplit` of a builder's ``options`` (``val_split``, or the older
    ``val_fraction`` / ``val_seed`` as the random form; see the module docstring)."""
    legacy = {k: options[k] for k in ("val_fraction", "val_seed") if options.get(k) is not None}
    raw = options.get("val_split")
    if raw is not None and legacy:
        raise ValueError(f"give either val_split or {sorted(legacy)} (the older random form), not both")
    if legacy:
        fraction = require_number("val_fraction", legacy.get("val_fraction", 0.1))
        seed = require_int("val_seed", legacy.get("val_seed", 0))
        by: str | None = "random"
    else:
        raw = {} if raw is None else raw
        if not isinstance(raw, Mapping):
            raise ValueError(f"val_split must be a mapping {{fraction, by, seed}}, got {raw!r}")
        unknown = sorted(set(raw) - set(VAL_SPLIT_KEYS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in val_split; valid: {list(VAL_SPLIT_KEYS)}")
        fraction = require_number("val_split.fraction", raw.get("fraction", 0.1))
        seed = require_int("val_split.seed", raw.get("seed", 0))
        by = raw.get("by")
        if by is not None and by not in VAL_SPLIT_BY:
            raise ValueError(f"val_split.by must be one of {VAL_SPLIT_BY}, got {by!r}")
        if raw.get("folds") is not None or raw.get("fold") is not None:
            if raw.get("folds") is None:
                raise ValueError("val_split.fold needs val_split.folds (the number of folds)")
            if "fraction" in raw:
                raise ValueError("give either val_split.fraction or val_split.folds / fold (cross-validation), not both")
            folds = require_int("val_split.folds", raw["folds"], minimum=2)
            fold = require_int("val_split.fold", raw.get("fold", 0), minimum=0)
            if fold >= folds:
                raise ValueError(f"val_split.fold must be in 0..{folds - 1} (folds {folds}), got {fold}")
            return ValSplit(1.0 / folds, by, seed, folds, fold)
    if not 0.0 <= fraction < 1.0:
        name = "val_fraction" if legacy else "val_split.fraction"
        raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    return ValSplit(fraction, by, seed)


def speaker_split_indices(speakers: np.ndarray, split: str, fraction: float, seed: int) -> np.ndarray:
    """Indices (sorted) of the samples of ``split`` (``train`` | ``val``) when whole speakers are held out.

    Rule: the distinct speaker ids (sorted) are shuffled with ``numpy.random.RandomState(seed)``;
    the validation split takes the first ``k`` speakers of that order, with ``k`` (from 1 to the
    number of speakers - 1, so that training keeps at least one speaker) the one whose sample count
    comes closest to ``fraction * n`` (on a tie, the smaller ``k``). Every sample of a speaker goes
    to the same split. ``fraction = 0`` keeps every sample in ``train`` and makes ``val`` an error;
    fewer than two speakers cannot be split (``ValueError``).
    """
    speakers = np.asarray(speakers).reshape(-1)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val' here, got {split!r}")
    n = len(speakers)
    ids, inverse, counts = np.unique(speakers, return_inverse=True, return_counts=True)
    if fraction == 0.0:
        if split == "val":
            raise ValueError(f"the validation split is empty (fraction 0, {n} training samples)")
        return np.arange(n, dtype=np.int64)
    if len(ids) < 2:
        raise ValueError(f"a speaker-disjoint validation split needs at least 2 speakers, the file has {len(ids)}")
    order = np.random.RandomState(seed).permutation(len(ids))
    cumulative = np.cumsum(counts[order])[:-1]  # k = 1 .. S - 1 speakers held out
    k = int(np.argmin(np.abs(cumulative - fraction * n))) + 1  # argmin: the first (smaller k) on a tie
    in_val = np.zeros(len(ids), dtype=bool)
    in_val[order[:k]] = True
    chosen = np.flatnonzero(in_val[inverse] if split == "val" else ~in_val[inverse])
    return chosen.astype(np.int64)


def fold_indices(n: int, split: str, folds: int, fold: int, seed: int,
                 speakers: np.ndarray | None = None) -> np.ndarray:
    """Indices (sorted) of ``split`` (``train`` | ``val``) when the training file is cut into ``folds`` folds
    and fold ``fold`` validates.

    With ``speakers`` (per-sample ids): whole speakers per fold. The distinct ids (sorted) are shuffled with
    ``numpy.random.RandomState(seed)`` and dealt one by one, in that order, to the fold with the fewest samples
    so far (the lowest fold number on a tie), so the folds' sizes differ by at most one speaker's samples; no
    speaker is in two folds. Fewer speakers than folds is a ``ValueError``. Without speakers: a permutation of
    ``range(n)`` with the same generator cut into ``folds`` parts of sizes differing by at most one
    (``numpy.array_split``). Every sample is in exactly one fold, so the ``val`` splits of ``fold = 0 .. folds-1``
    partition the file.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val' here, got {split!r}")
    folds = require_int("folds", folds, minimum=2)
    fold = require_int("fold", fold, minimum=0)
    if fold >= folds:
        raise ValueError(f"fold must be in 0..{folds - 1}, got {fold}")
    rng = np.random.RandomState(seed)
    if speakers is None:
        if n < folds:
            raise ValueError(f"{folds} folds need at least {folds} training samples, the file has {n}")
        part = np.array_split(rng.permutation(n), folds)[fold]
        in_val = np.zeros(n, dtype=bool)
        in_val[part] = True
    else:
        speakers = np.asarray(speakers).reshape(-1)
        ids, inverse, counts = np.unique(speakers, return_inverse=True, return_counts=True)
        if len(ids) < folds:
            raise ValueError(f"{folds} speaker-disjoint folds need at least {folds} speakers, the file has {len(ids)}")
        sizes = np.zeros(folds, dtype=np.int64)
        owner = np.empty(len(ids), dtype=np.int64)
        for i in rng.permutation(len(ids)):
            f = int(np.argmin(sizes))  # argmin: the lowest fold number on a tie
            owner[i] = f
            sizes[f] += counts[i]
        in_val = owner[inverse] == fold
    return np.flatnonzero(in_val if split == "val" else ~in_val).astype(np.int64)


def split_indices(split: str, n: int, val: ValSplit, speakers: np.ndarray | None, source: str = "") -> np.ndarray:
    """Indices of the training file's samples in ``split`` (``train`` | ``val``) under ``val``.

    ``speakers``: the file's per-sample speaker ids, ``None`` when it has none. ``by: speaker``
    without speakers is a ``ValueError``; ``by`` unset means speaker where ``speakers`` is given.
    """
    by = val.by if val.by is not None else ("speaker" if speakers is not None else "random")
    where = f"{source}: " if source else ""
    if by == "speaker":
        if speakers is None:
            raise ValueError(f"{where}val_split.by is 'speaker' but the file carries no speaker ids "
                             "(/extra/speaker); use val_split: {by: random}")
        if len(speakers) != n:
            raise ValueError(f"{where}{len(speakers)} speaker ids for {n} samples")
        if val.folds is not None:
            return fold_indices(n, split, val.folds, val.fold, val.seed, speakers)
        return speaker_split_indices(speakers, split, val.fraction, val.seed)
    if val.folds is not None:
        return fold_indices(n, split, val.folds, val.fold, val.seed)
    return val_split_indices(n, split, val.fraction, val.seed)
