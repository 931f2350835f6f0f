"""The frame data set shared by every event reader, its on-disk cache and the common options.

Every event data set is built the same way: the reader turns its file into
:class:`~sjframe.data.binning.SparseFrames` (binned counts, ``T`` steps of ``dt`` ms) and labels,
optionally through the cache; the training file is split into ``train`` / ``val``
(``val_split``, or the older ``val_fraction`` / ``val_seed``: :func:`~sjframe.data.common.split_indices`,
by whole speakers where the reader gives speaker ids); :class:`FrameDataset` serves
``x`` float32 ``[T + T_empty, *input_shape]`` and ``y`` int.

Cache (``cache: true``): the binned counts of a whole file are saved as ``.npz`` in ``cache_dir``
(default ``<root>/cache``) under a name hashed from the binning parameters (data set, ``T``,
``dt``, reader options) and the file's identity (absolute path, size, modification time), so a
changed file or other parameters never reuse a stale cache. ``T_empty``, ``clamp``, the
validation split and ``augment`` are applied after the cache.

Augmentation (``augment: {channel_shift: k, time_shift: m}``, the ``train`` split only; ``val`` and ``test``
ignore it): each time an item is read, its frames ``[T + T_empty, C]`` are shifted by an integer ``s`` drawn
uniformly from ``[-k, k]`` along the channels (one-dimensional inputs only, e.g. the 700 cochlear channels of
SHD / the spoken digits: a speaker's pitch moves the pattern along them) and by ``r`` from ``[-m, m]`` along
time, zero-filled (what leaves the window is dropped). Draws come from torch's global generator (seeded by the
run, saved with its checkpoints), so with ``num_workers: 0`` a run and its resume see the same shifts.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sjframe.data.binning import SparseFrames
from sjframe.data.common import (
    check_options,
    require_bool,
    require_int,
    require_number,
    resolve_val_split,
    split_indices,
)

__all__ = ["COMMON_OPTIONS", "FrameDataset", "build_event_dataset", "cached_frames", "require_file"]

# options every event data set accepts (defaults are per data set)
COMMON_OPTIONS = ("root", "T", "T_empty", "dt", "clamp", "val_split", "val_fraction", "val_seed", "cache", "cache_dir",
                  "augment")
AUGMENT_KEYS = ("channel_shift", "time_shift")

_CACHE_VERSION = 1


class FrameDataset(Dataset):
    """Binned event samples: item ``i`` is ``(x float32 [T + T_empty, *input_shape], y int)``.

    ``x`` holds the event counts of ``T`` bins of ``dt_ms`` ms (clamped to 1 if ``clamp``)
    followed by ``T_empty`` all-zero steps; with ``channel_shift`` / ``time_shift`` > 0 each read is
    shifted at random (see the module docstring, ``augment``).
    """

    def __init__(
        self,
        frames: SparseFrames,
        labels: np.ndarray,
        input_shape: tuple[int, ...],
        num_classes: int,
        dt_ms: float | None,
        T_empty: int = 0,
        clamp: bool = False,
        name: str = "",
        channel_shift: int = 0,
        time_shift: int = 0,
    ) -> None:
        if int(np.prod(input_shape)) != frames.num_units:
            raise ValueError(f"input_shape {input_shape} does not match {frames.num_units} units")
        if len(labels) != len(frames):
            raise ValueError(f"{len(labels)} labels for {len(frames)} samples")
        self.frames = frames
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.dt_ms = dt_ms
        self.T = frames.T
        self.T_empty = int(T_empty)
        self.clamp = bool(clamp)
        self.name = name
        self.time_major = True
        self.channel_shift = require_int("augment.channel_shift", channel_shift, minimum=0)
        self.time_shift = require_int("augment.time_shift", time_shift, minimum=0)
        if self.channel_shift and len(self.input_shape) != 1:
            raise ValueError(f"augment.channel_shift needs one-dimensional inputs, got input_shape {self.input_shape}")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        x = self.frames.dense(index, self.T_empty, self.clamp)
        if self.channel_shift:
            x = _shift(x, int(torch.randint(-self.channel_shift, self.channel_shift + 1, ()).item()), dim=1)
        if self.time_shift:
            x = _shift(x, int(torch.randint(-self.time_shift, self.time_shift + 1, ()).item()), dim=0)
        return x.view(self.T + self.T_empty, *self.input_shape), int(self.labels[index])

    def event_counts(self) -> np.ndarray:
        """Binned events (inside the window) per sample, float64 ``[n]``."""
        return self.frames.sample_counts()


def _shift(x: torch.Tensor, s: int, dim: int) -> torch.Tensor:
    """``x`` moved by ``s`` places along ``dim`` (``out[i] = x[i - s]``), zero-filled; what leaves is dropped."""
    n = x.shape[dim]
    if s == 0:
        return x
    out = torch.zeros_like(x)
    if abs(s) >= n:
        return out
    if s > 0:
        out.narrow(dim, s, n - s).copy_(x.narrow(dim, 0, n - s))
    else:
        out.narrow(dim, 0, n + s).copy_(x.narrow(dim, -s, n + s))
    return out


def parse_augment(value: Any) -> dict[str, int]:
    """The ``augment`` option as ``{channel_shift, time_shift}`` ints >= 0 (None: no augmentation)."""
    if value is None:
        return {"channel_shift": 0, "time_shift": 0}
    if not isinstance(value, Mapping):
        raise ValueError(f"augment must be a mapping with keys among {list(AUGMENT_KEYS)}, got {value!r}")
    unknown = sorted(set(value) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"unknown augment key(s) {unknown}; valid: {list(AUGMENT_KEYS)}")
    return {k: require_int(f"augment.{k}", value.get(k, 0), minimum=0) for k in AUGMENT_KEYS}


def require_file(path: Path, dataset: str, hint: str = "see datasets/README.md") -> Path:
    """``path`` if it is an existing file, else ``FileNotFoundError`` saying where it should be."""
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: file {path} not found ({hint})")
    return path


def _file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def cached_frames(
    cache_dir: Path | None,
    key: Mapping[str, Any],
    source: Path,
    build: Callable[[], tuple[SparseFrames, np.ndarray]],
) -> tuple[SparseFrames, np.ndarray]:
    """``build()`` (binned frames and labels of ``source``), through an ``.npz`` cache in
    ``cache_dir`` when it is not ``None``. ``key`` holds the binning parameters (JSON-able)."""
    if cache_dir is None:
        return build()
    full_key = {"version": _CACHE_VERSION, "params": dict(key), "file": _file_identity(source)}
    text = json.dumps(full_key, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{source.stem}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["key"]) == text:
                    frames = SparseFrames(
                        z["offsets"], z["positions"], z["counts"], int(z["T"]), int(z["num_units"])
                    )
                    return frames, z["labels"]
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign cache file: rebuild and overwrite it
    frames, labels = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                key=np.array(text),
                offsets=frames.offsets,
                positions=frames.positions,
                counts=frames.counts,
                T=np.array(frames.T),
                num_units=np.array(frames.num_units),
                labels=np.asarray(labels, dtype=np.int64),
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return frames, labels


def build_event_dataset(
    name: str,
    split: str,
    options: Mapping[str, Any],
    defaults: Mapping[str, Any],
    extra_options: Mapping[str, Any],
    read: Callable[[str, Path, int, float, dict[str, Any]], tuple[SparseFrames, np.ndarray]],
    file_for: Callable[[str, Path, dict[str, Any]], Path],
    input_shape: Callable[[dict[str, Any]], tuple[int, ...]],
    num_classes: Callable[[dict[str, Any], np.ndarray], int],
    speakers: Callable[[Path], np.ndarray | None] | None = None,
) -> FrameDataset:
    """Common assembly of an event data set.

    Args:
        name: the registry name (for messages).
        split: ``train | val | test``.
        options: the user's options (checked against ``COMMON_OPTIONS`` and ``extra_options``).
        defaults: defaults of the common options for this data set (``T``, ``dt``, ...).
        extra_options: this data set's own options and their defaults.
        read: ``read(file_split, path, T, dt, extra) -> (frames, labels)`` for the whole file
            (``file_split`` is ``train`` for both ``train`` and ``val``).
        file_for: ``file_for(file_split, root, extra) -> path``.
        input_shape: ``input_shape(extra) -> shape`` of one step.
        num_classes: ``num_classes(extra, labels) -> int``.
        speakers: ``speakers(path) -> ids [n] | None``, the per-sample speaker ids of a file
            (``None``: the file has none); ``None`` for a data set without speakers. The
            validation split (``val_split``) holds out whole speakers where there are ids.
    """
    check_options(name, options, list(COMMON_OPTIONS) + list(extra_options))
    opts = {
        "root": "datasets",
        "T_empty": 0,
        "clamp": False,
        "cache": False,
        "cache_dir": None,
        "augment": None,
        **defaults,
    }
    opts.update({k: v for k, v in options.items() if k in COMMON_OPTIONS})
    val = resolve_val_split(opts)  # checked for every split, so a bad value never passes silently
    extra = dict(extra_options)
    extra.update({k: v for k, v in options.items() if k in extra_options})
    T = require_int("T", opts["T"], minimum=1)
    T_empty = require_int("T_empty", opts["T_empty"], minimum=0)
    dt = require_number("dt", opts["dt"], positive=True)
    clamp = require_bool("clamp", opts["clamp"])
    augment = parse_augment(opts["augment"])  # checked for every split, applied to the train split only
    use_cache = require_bool("cache", opts["cache"])
    if not isinstance(opts["root"], (str, os.PathLike)):
        raise ValueError(f"root must be a path, got {opts['root']!r}")
    root = Path(opts["root"])
    cache_dir = None
    if opts["cache_dir"] is not None and not isinstance(opts["cache_dir"], (str, os.PathLike)):
        raise ValueError(f"cache_dir must be a path, got {opts['cache_dir']!r}")
    if use_cache:
        cache_dir = Path(opts["cache_dir"]) if opts["cache_dir"] is not None else root / "cache"
    file_split = "test" if split == "test" else "train"
    path = file_for(file_split, root, extra)
    require_file(path, name)
    key = {"dataset": name, "file_split": file_split, "T": T, "dt": dt, "extra": extra}
    frames, labels = cached_frames(cache_dir, key, path, lambda: read(file_split, path, T, dt, extra))
    n_classes = num_classes(extra, labels)
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        bad = int(np.flatnonzero((labels < 0) | (labels >= n_classes))[0])
        raise ValueError(f"{path}: sample {bad}: label {int(labels[bad])} out of range [0, {n_classes})")
    if split != "test":
        ids = speakers(path) if speakers is not None and val.by != "random" else None
        keep = split_indices(split, len(labels), val, ids, str(path))
        frames, labels = frames.select(keep), labels[keep]
    shifts = augment if split == "train" else {}
    return FrameDataset(frames, labels, input_shape(extra), n_classes, dt, T_empty, clamp, name=f"{name}/{split}",
                        **shifts)
