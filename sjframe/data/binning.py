"""Events -> dense time-major frames: the one binning path of every event data set.

Events of ``n`` samples are given concatenated: ``times [E]``, ``units [E]`` (flat input index in
``[0, num_units)``, e.g. ``p * H * W + y * W + x`` for DVS data after downsampling) and
``offsets [n + 1]`` (sample ``i`` owns events ``offsets[i]:offsets[i + 1]``). Binning is one
vectorised pass (numpy, no Python loop per event):

    bin_e = floor(t_e [ms] / dt + 1e-6)      (t_e shifted to the sample's first event if asked)
    keep events with bin_e < T
    frame_i[bin, unit] = number of kept events of sample i in (bin, unit)

The result is stored compactly as :class:`SparseFrames` (per sample: flat positions
``bin * num_units + unit`` and their counts); :meth:`SparseFrames.dense` turns one sample into
float32 frames ``[T + T_empty, num_units]`` (the last ``T_empty`` steps all zero), optionally
clamped to 1. Times are in ``s``, ``ms`` or ``us`` (``time_unit``); for ``s`` the bin is
``floor(t * 1000 / dt)`` (the spec's formula), for ``us`` it is ``floor(t / (1000 dt))``. The
``+1e-6`` bin (``EDGE_TOLERANCE``) only matters for a time that is a bin edge in decimal but was
stored as a binary float slightly below it (e.g. 0.01 s in float32): it lands in the bin it
names. No real event time lies that close below an edge (1 ns at ``dt = 1`` ms).

Input checks (vectorised; errors name ``source``, the sample and the problem): times finite,
``>= 0`` and non-decreasing within each sample; units integral and in ``[0, num_units)``. An empty
sample (no events, or none in the window) is valid and gives all-zero frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

__all__ = ["TIME_UNITS", "SparseFrames", "bin_events", "bin_events_chunked", "concat_samples", "downsample_dvs_units"]

TIME_UNITS = ("s", "ms", "us")

# a time within this fraction of a bin below a bin edge counts in the later bin: decimal times
# stored as binary floats (0.01 s as float32 is 0.0099999998 s) land in the bin they name.
EDGE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SparseFrames:
    """Binned counts of ``n`` samples: sample ``i`` has ``counts[offsets[i]:offsets[i+1]]`` at the
    flat positions ``positions[...] = bin * num_units + unit`` (unique and sorted per sample)."""

    offsets: np.ndarray  # int64 [n + 1]
    positions: np.ndarray  # int32 or int64 [nnz]
    counts: np.ndarray  # float32 [nnz]
    T: int
    num_units: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def dense(self, index: int, T_empty: int = 0, clamp: bool = False) -> torch.Tensor:
        """Frames of sample ``index``: float32 ``[T + T_empty, num_units]``, counts clamped to 1 if
        ``clamp``; the last ``T_empty`` steps are zero."""
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        # numpy (single-threaded): small fills stay fast when torch's thread pool is contended
        out = np.zeros((self.T + T_empty) * self.num_units, dtype=np.float32)
        if hi > lo:
            values = self.counts[lo:hi]
            out[self.positions[lo:hi]] = np.minimum(values, 1.0) if clamp else values
        return torch.from_numpy(out).view(self.T + T_empty, self.num_units)

    def sample_counts(self) -> np.ndarray:
        """Number of binned events (sum of counts) of every sample, float64 ``[n]``."""
        sums = np.concatenate([[0.0], np.cumsum(self.counts, dtype=np.float64)])
        return sums[self.offsets[1:]] - sums[self.offsets[:-1]]

    def select(self, indices: np.ndarray | Sequence[int]) -> SparseFrames:
        """The samples ``indices`` (in that order) as a new ``SparseFrames``."""
        indices = np.asarray(indices, dtype=np.int64)
        starts = self.offsets[:-1][indices]
        lengths = self.offsets[1:][indices] - starts
        new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        gather = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1], dtype=np.int64)
        return SparseFrames(new_offsets, self.positions[gather], self.counts[gather], self.T, self.num_units)


def concat_samples(parts: Sequence[SparseFrames]) -> SparseFrames:
    """Concatenate the samples of several ``SparseFrames`` with the same ``T`` and ``num_units``."""
    if not parts:
        raise ValueError("parts is empty")
    T, num_units = parts[0].T, parts[0].num_units
    for part in parts:
        if (part.T, part.num_units) != (T, num_units):
            raise ValueError("parts differ in T or num_units")
    lengths = np.concatenate([np.diff(part.offsets) for part in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    positions = np.concatenate([part.positions for part in parts]).astype(_position_dtype(T, num_units), copy=False)
    counts = np.concatenate([part.counts for part in parts])
    return SparseFrames(offsets, positions, counts, T, num_units)


def _position_dtype(T: int, num_units: int) -> type:
    return np.int32 if T * num_units < 2**31 else np.int64


def _first_bad(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _sample_of(event: int, offsets: np.ndarray) -> int:
    return int(np.searchsorted(offsets, event, side="right") - 1)


def bin_events(
    times: np.ndarray,
    units: np.ndarray,
    offsets: np.ndarray,
    *,
    num_units: int,
    T: int,
    dt_ms: float,
    time_unit: str = "s",
    shift_to_first: bool = False,
    source: str = "events",
    sample_name: Callable[[int], str] | None = None,
) -> SparseFrames:
    """Bin the concatenated events of ``n`` samples into :class:`SparseFrames` (see the module doc).

    Args:
        times: ``[E]`` event times in ``time_unit`` (any real or integer dtype).
        units: ``[E]`` flat unit ids in ``[0, num_units)``.
        offsets: ``[n + 1]`` non-decreasing, ``offsets[0] = 0``, ``offsets[-1] = E``.
        num_units: number of input units (product of the input shape).
        T: number of bins kept (``T * dt_ms`` ms from the start, or from the first event).
        dt_ms: bin width in ms (> 0).
        time_unit: ``s`` | ``ms`` | ``us``.
        shift_to_first: measure times from each sample's first event.
        source: what to name in error messages (e.g. the file path).
        sample_name: maps a sample index to its name in error messages (default ``str(index)``).
    """
    if time_unit not in TIME_UNITS:
        raise ValueError(f"time_unit must be one of {TIME_UNITS}, got {time_unit!r}")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    if isinstance(num_units, bool) or not isinstance(num_units, (int, np.integer)) or num_units < 1:
        raise ValueError(f"num_units must be an int >= 1, got {num_units!r}")
    if not (isinstance(dt_ms, (int, float)) and math.isfinite(dt_ms) and dt_ms > 0):
        raise ValueError(f"dt_ms must be a finite number > 0, got {dt_ms!r}")
    T, num_units = int(T), int(num_units)
    name = sample_name or str
    times = np.asarray(times)
    units = np.asarray(units)
    offsets = np.asarray(offsets, dtype=np.int64)
    if times.ndim != 1 or units.ndim != 1 or times.shape != units.shape:
        raise ValueError(f"{source}: times and units must be 1-d of equal length, got {times.shape} and {units.shape}")
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != len(times):
        raise ValueError(f"{source}: offsets must run from 0 to the number of events ({len(times)})")
    lengths = np.diff(offsets)
    if (lengths < 0).any():
        raise ValueError(f"{source}: offsets must be non-decreasing")
    n = len(lengths)
    sample_id = np.repeat(np.arange(n, dtype=np.int64), lengths)

    # --- checks, all vectorised: the first offending event names its sample ---
    if not np.issubdtype(times.dtype, np.number) or np.issubdtype(times.dtype, np.complexfloating):
        raise ValueError(f"{source}: times must be real numbers, got dtype {times.dtype}")
    t = times.astype(np.float64, copy=False)
    for problem, mask in (("non-finite", ~np.isfinite(t)), ("negative", t < 0)):
        bad = _first_bad(mask)
        if bad is not None:
            s = int(sample_id[bad])
            raise ValueError(f"{source}: sample {name(s)}: {problem} time {t[bad]} (event {bad - offsets[s]})")
    if len(t) > 1:
        step_back = np.diff(t) < 0
        step_back &= sample_id[1:] == sample_id[:-1]  # a new sample may start earlier
        bad = _first_bad(step_back)
        if bad is not None:
            s = int(sample_id[bad])
            raise ValueError(
                f"{source}: sample {name(s)}: times not sorted (event {bad + 1 - offsets[s]} at {t[bad + 1]} "
                f"comes after {t[bad]})"
            )
    if np.issubdtype(units.dtype, np.floating):
        bad = _first_bad(units != np.floor(units))
        if bad is not None:
            raise ValueError(f"{source}: sample {name(int(sample_id[bad]))}: non-integral unit id {units[bad]}")
    elif not np.issubdtype(units.dtype, np.integer):
        raise ValueError(f"{source}: units must be integers, got dtype {units.dtype}")
    u = units.astype(np.int64)
    bad = _first_bad((u < 0) | (u >= num_units))
    if bad is not None:
        raise ValueError(
            f"{source}: sample {name(int(sample_id[bad]))}: unit id {u[bad]} out of range [0, {num_units})"
        )

    # --- binning ---
    if shift_to_first and len(t):
        first = np.zeros(n, dtype=np.float64)
        nonempty = lengths > 0
        first[nonempty] = t[offsets[:-1][nonempty]]
        t = t - first[sample_id]
    if time_unit == "s":
        bins = t * 1000.0 / dt_ms
    elif time_unit == "ms":
        bins = t / dt_ms
    else:
        bins = t / (dt_ms * 1000.0)
    bins = np.floor(bins + EDGE_TOLERANCE)
    keep = bins < T
    frame_size = T * num_units
    keys = sample_id[keep] * frame_size + bins[keep].astype(np.int64) * num_units + u[keep]
    keys = np.sort(keys, kind="stable")
    if len(keys):
        starts = np.concatenate([[True], keys[1:] != keys[:-1]])
        first_idx = np.flatnonzero(starts)
        unique = keys[first_idx]
        counts = np.diff(np.append(first_idx, len(keys))).astype(np.float32)
    else:
        unique = keys
        counts = np.zeros(0, dtype=np.float32)
    owner = unique // frame_size
    new_offsets = np.searchsorted(owner, np.arange(n + 1), side="left").astype(np.int64)
    positions = (unique - owner * frame_size).astype(_position_dtype(T, num_units))
    return SparseFrames(new_offsets, positions, counts, T, num_units)


def bin_events_chunked(
    times: np.ndarray,
    units: np.ndarray,
    offsets: np.ndarray,
    *,
    chunk_events: int = 4_000_000,
    progress: bool = False,
    sample_name: Callable[[int], str] | None = None,
    **kwargs: Any,
) -> SparseFrames:
    """:func:`bin_events` over groups of whole samples of about ``chunk_events`` events each (same
    result, bounded memory for large files); ``kwargs`` are those of :func:`bin_events`."""
    offsets = np.asarray(offsets, dtype=np.int64)
    n = len(offsets) - 1
    if n <= 0 or offsets[-1] <= chunk_events:
        return bin_events(times, units, offsets, sample_name=sample_name, **kwargs)
    # chunk boundaries: the first sample whose start passes each multiple of chunk_events
    marks = np.arange(chunk_events, int(offsets[-1]), chunk_events)
    cuts = np.unique(np.concatenate([[0], np.searchsorted(offsets[:-1], marks, side="right"), [n]]))
    name = sample_name or str
    parts = []
    for a, b in tqdm(list(zip(cuts[:-1], cuts[1:])), desc="binning", disable=not progress, leave=False):
        lo, hi = offsets[a], offsets[b]
        parts.append(
            bin_events(
                times[lo:hi], units[lo:hi], offsets[a : b + 1] - lo,
                sample_name=lambda i, a=int(a): name(a + i), **kwargs,
            )
        )
    return concat_samples(parts)


def downsample_dvs_units(
    x: np.ndarray, y: np.ndarray, p: np.ndarray, width: int, height: int, factor: int, source: str = "events"
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Flat unit ids of DVS events after ``factor x factor`` spatial pooling.

    ``unit = p * (H' W') + (y // factor) * W' + (x // factor)`` with ``H' = ceil(height / factor)``,
    ``W' = ceil(width / factor)``; returns the ids and the frame shape ``(2, H', W')``. Checks
    ``0 <= x < width``, ``0 <= y < height``, ``p in {0, 1}``.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise ValueError(f"downsample must be an int >= 1, got {factor!r}")
    x = np.asarray(x).astype(np.int64)
    y = np.asarray(y).astype(np.int64)
    p = np.asarray(p).astype(np.int64)
    for label, values, limit in (("x", x, width), ("y", y, height), ("polarity", p, 2)):
        bad = _first_bad((values < 0) | (values >= limit))
        if bad is not None:
            raise ValueError(f"{source}: event {bad}: {label} = {values[bad]} out of range [0, {limit})")
    h_out, w_out = -(-height // factor), -(-width // factor)
    units = p * (h_out * w_out) + (y // factor) * w_out + (x // factor)
    return units, (2, h_out, w_out)
