"""DVS camera data sets: DVSGesture (10 classes) and DVSPlane (4 classes).

Files (HDF5, first-spike-coding spec section 5):

* DVSGesture ``<root>/DVS-Gesture-{train,test}10.hdf5``: group ``train`` / ``test`` ->
  ``<idx>/time`` (uint32, us), ``<idx>/data`` (uint8 ``[E, 3]`` = ``(x, y, p)``, 128 x 128
  sensor), ``<idx>/labels`` (1-based; class = label - 1; label 11, "other", if present, is
  dropped and counted in ``skipped``).
* DVSPlane ``<root>/DVSPlane-{train,test}.hdf5``: ``<idx>/{time, data uint16 [E, 3], labels}`` at
  the top level, 240 (y) x 304 (x) sensor, labels ``0..3`` as stored.

Binning: times shifted to the sample's first event, the first ``T * dt`` ms kept,
``bin = floor(t / (1000 dt))``; spatial ``factor x factor`` pooling (``downsample``, default 4):
``frame[bin, p, y // f, x // f] += 1``, giving ``[T + T_empty, 2, 32, 32]`` (DVSGesture) or
``[T + T_empty, 2, 60, 76]`` (DVSPlane). Only the events inside the window are read from the file.
Defaults: DVSGesture ``dt = 10`` ms, ``T = 120`` (the paper trains on 1.2 s with ``T_empty = 40``
and tests on 2.5 s: ``T = 250``); DVSPlane ``dt = 2`` ms, ``T = 100`` (tests on ``T = 120``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from sjframe.data.binning import SparseFrames, bin_events, concat_samples, downsample_dvs_units
from sjframe.data.common import require_int
from sjframe.data.frames import FrameDataset, build_event_dataset
from sjframe.data.h5io import h5_get, label_of, open_h5

__all__ = ["DVSGESTURE", "DVSPLANE", "DvsFormat", "build_dvs", "build_dvsgesture", "build_dvsplane", "read_dvs_frames"]

_CHUNK_EVENTS = 4_000_000  # events binned together (bounds the memory of one binning pass)


def _sample_keys(group: h5py.Group) -> list[str]:
    keys = [k for k in group.keys() if isinstance(group[k], h5py.Group)]
    return sorted(keys, key=lambda k: (0, int(k), k) if k.isdigit() else (1, 0, k))


def read_dvs_frames(
    path: Path,
    group: str | None,
    T: int,
    dt: float,
    width: int,
    height: int,
    downsample: int,
    label_offset: int,
    num_classes: int,
    drop_labels: tuple[int, ...] = (),
    progress: bool = True,
) -> tuple[SparseFrames, np.ndarray, tuple[int, int, int], int]:
    """Read and bin a DVS file. Returns ``(frames, classes [n], frame shape (2, H', W'), skipped)``.

    ``class = stored label - label_offset``; samples whose stored label is in ``drop_labels`` are
    skipped. Events are binned in chunks of whole samples (one vectorised pass per chunk).
    """
    path = Path(path)
    window_us = T * dt * 1000.0
    parts: list[SparseFrames] = []
    classes: list[int] = []
    skipped = 0
    shape: tuple[int, int, int] = (2, -(-height // downsample), -(-width // downsample))
    num_units = int(np.prod(shape))
    chunk: list[tuple[np.ndarray, np.ndarray, str]] = []
    chunk_events = 0

    def flush() -> None:
        nonlocal chunk, chunk_events
        if not chunk:
            return
        offsets = np.zeros(len(chunk) + 1, dtype=np.int64)
        np.cumsum([len(t) for t, _, _ in chunk], out=offsets[1:])
        names = [name for _, _, name in chunk]
        parts.append(
            bin_events(
                np.concatenate([t for t, _, _ in chunk]),
                np.concatenate([u for _, u, _ in chunk]),
                offsets,
                num_units=num_units,
                T=T,
                dt_ms=dt,
                time_unit="us",
                shift_to_first=True,
                source=str(path),
                sample_name=lambda i: repr(names[i]),
            )
        )
        chunk, chunk_events = [], 0

    with open_h5(path) as f:
        parent = h5_get(f, group, path) if group else f
        keys = _sample_keys(parent)
        for key in tqdm(keys, desc=f"reading {path.name}", disable=not progress or len(keys) < 100, leave=False):
            g = parent[key]
            where = f"{path}: sample {key!r}"
            label = label_of(h5_get(g, "labels", path)[()], where)
            if not np.issubdtype(np.asarray(label).dtype, np.integer):
                raise ValueError(f"{where}: label {label!r} is not an integer")
            if int(label) in drop_labels:
                skipped += 1
                continue
            cls = int(label) - label_offset
            if not 0 <= cls < num_classes:
                valid = f"{label_offset}..{label_offset + num_classes - 1}"
                raise ValueError(f"{where}: label {int(label)} out of range (valid stored labels {valid})")
            times = np.asarray(h5_get(g, "time", path)[()]).reshape(-1)
            data_ds = h5_get(g, "data", path)
            if data_ds.ndim != 2 or data_ds.shape[1] != 3 or data_ds.shape[0] != len(times):
                raise ValueError(f"{where}: data must have shape [{len(times)}, 3] (x, y, p), got {data_ds.shape}")
            if len(times) > 1:
                back = np.flatnonzero(np.diff(times.astype(np.int64)) < 0)
                if len(back):
                    i = int(back[0])
                    raise ValueError(f"{where}: times not sorted (event {i + 1} at {times[i + 1]} comes after {times[i]})")
            if len(times):
                if np.issubdtype(times.dtype, np.floating) and not np.isfinite(times).all():
                    raise ValueError(f"{where}: non-finite time")
                if times[0] < 0:
                    raise ValueError(f"{where}: negative time {times[0]}")
                # generous bound: bin_events drops the events with bin >= T exactly
                stop = int(np.searchsorted(times.astype(np.float64) - float(times[0]), window_us * (1 + 1e-9) + 1.0))
            else:
                stop = 0
            data = np.asarray(data_ds[:stop]) if stop else np.zeros((0, 3), dtype=np.int64)
            units, _ = downsample_dvs_units(data[:, 0], data[:, 1], data[:, 2], width, height, downsample, source=where)
            chunk.append((times[:stop], units, key))
            chunk_events += stop
            classes.append(cls)
            if chunk_events >= _CHUNK_EVENTS:
                flush()
    flush()
    if not parts:
        no_events = np.zeros(0, dtype=np.int32)
        empty = SparseFrames(np.zeros(1, dtype=np.int64), no_events, no_events.astype(np.float32), T, num_units)
        return empty, np.zeros(0, dtype=np.int64), shape, skipped
    return concat_samples(parts), np.asarray(classes, dtype=np.int64), shape, skipped


@dataclass(frozen=True)
class DvsFormat:
    """What tells the DVS data sets apart: file names, layout, sensor size, labels, default binning.

    ``file_name`` takes ``{split}`` (``train`` | ``test``); ``grouped``: the samples sit under an HDF5
    group named like the split (else at the top level); ``class = stored label - label_offset``,
    stored labels in ``drop_labels`` are skipped.
    """

    name: str
    file_name: str
    grouped: bool
    width: int
    height: int
    label_offset: int
    num_classes: int
    drop_labels: tuple[int, ...]
    T: int
    dt: float


DVSGESTURE = DvsFormat("dvsgesture", "DVS-Gesture-{split}10.hdf5", True, 128, 128, 1, 10, (11,), 120, 10.0)
DVSPLANE = DvsFormat("dvsplane", "DVSPlane-{split}.hdf5", False, 304, 240, 0, 4, (), 100, 2.0)


def build_dvs(fmt: DvsFormat, split: str, options: dict[str, Any]) -> FrameDataset:
    """The frame data set of ``fmt``: ``[T + T_empty, 2, ceil(height / d), ceil(width / d)]`` (d = ``downsample``).

    Options: the common ones of :func:`~sjframe.data.frames.build_event_dataset` (``T`` and ``dt``
    defaulting to ``fmt.T`` / ``fmt.dt``) and ``downsample`` (4).
    """

    def factor(extra: dict[str, Any]) -> int:
        return require_int("downsample", extra["downsample"], minimum=1)

    def read(file_split: str, path: Path, T: int, dt: float, extra: dict[str, Any]) -> tuple[SparseFrames, np.ndarray]:
        group = file_split if fmt.grouped else None
        frames, classes, _, _ = read_dvs_frames(path, group, T, dt, fmt.width, fmt.height, factor(extra),
                                                fmt.label_offset, fmt.num_classes, drop_labels=fmt.drop_labels)
        return frames, classes

    return build_event_dataset(
        fmt.name,
        split,
        options,
        defaults={"T": fmt.T, "dt": fmt.dt},
        extra_options={"downsample": 4},
        read=read,
        file_for=lambda file_split, root, extra: root / fmt.file_name.format(split=file_split),
        input_shape=lambda extra: (2, -(-fmt.height // factor(extra)), -(-fmt.width // factor(extra))),
        num_classes=lambda extra, labels: fmt.num_classes,
    )


def build_dvsgesture(split: str, **options: Any) -> FrameDataset:
    """Registry builder of ``dvsgesture``: frames ``[T + T_empty, 2, 128 / d, 128 / d]`` (d = ``downsample``), 10 classes.

    Options: the common ones (``root``, ``T`` = 120, ``T_empty`` = 0, ``dt`` = 10 ms, ``clamp``,
    ``val_fraction`` = 0.1, ``val_seed`` = 0, ``cache``, ``cache_dir``) and ``downsample`` (4).
    """
    return build_dvs(DVSGESTURE, split, options)


def build_dvsplane(split: str, **options: Any) -> FrameDataset:
    """Registry builder of ``dvsplane``: frames ``[T + T_empty, 2, 240 / d, 304 / d]`` (d = ``downsample``), 4 classes.

    Options: the common ones (``root``, ``T`` = 100, ``T_empty`` = 0, ``dt`` = 2 ms, ``clamp``,
    ``val_fraction`` = 0.1, ``val_seed`` = 0, ``cache``, ``cache_dir``) and ``downsample`` (4).
    """
    return build_dvs(DVSPLANE, split, options)
