"""Spiking Heidelberg Digits (SHD) and data sets in its layout (``spoken_digits``, N-MNIST h5).

File layout (HDF5): ``spikes/times`` (per-sample variable-length arrays, seconds, sorted),
``spikes/units`` (per-sample arrays of channel ids, ``0..num_units-1``), ``labels`` (``[n]`` ints).
Binning (first-spike-coding spec, section 5): ``bin = floor(t * 1000 / dt)``, events with
``bin < T`` counted into frames ``[T, num_units]`` (+ ``T_empty`` zero steps); times are not
shifted. Defaults: ``dt = 10`` ms, ``T = 100`` (1 s, the paper's test window; its training window
is ``T = 80, T_empty = 20``; the S3GD setup uses ``dt = 2, T = 500``).

Speakers: SHD (and SSC) files and the spoken-digit files hold the speaker of each sample in
``extra/speaker`` (``[n]`` ints). Where it is present the validation split holds out whole
speakers by default (``val_split: {fraction: 0.1, by: speaker}``; see :mod:`sjframe.data.common`);
a file without it is split at random.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sjframe.data.binning import SparseFrames, bin_events_chunked
from sjframe.data.common import require_int
from sjframe.data.frames import FrameDataset, build_event_dataset
from sjframe.data.h5io import h5_get, open_h5, ragged_to_flat

__all__ = ["build_shd", "build_spoken_digits", "read_shd_events", "read_shd_frames", "read_shd_speakers"]

SHD_UNITS = 700
SHD_CLASSES = 20


def read_shd_events(path: Path, num_units: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read an SHD-layout file: ``(times float64 [E] s, units int64 [E], offsets int64 [n+1], labels int64 [n])``.

    Checks that every sample has as many units as times and that there is one label per sample;
    ``num_units`` (if given) bounds the unit ids (checked again when binning).
    """
    path = Path(path)
    with open_h5(path) as f:
        times_ds = h5_get(f, "spikes/times", path)
        units_ds = h5_get(f, "spikes/units", path)
        labels = np.asarray(h5_get(f, "labels", path)[()])
        times, t_offsets = ragged_to_flat(times_ds[()], "spikes/times", path)
        units, u_offsets = ragged_to_flat(units_ds[()], "spikes/units", path)
    if labels.ndim != 1:
        raise ValueError(f"{path}: labels must be 1-d, got shape {labels.shape}")
    n = len(t_offsets) - 1
    if len(u_offsets) - 1 != n or len(labels) != n:
        raise ValueError(
            f"{path}: spikes/times has {n} samples, spikes/units {len(u_offsets) - 1}, labels {len(labels)}"
        )
    if not np.array_equal(t_offsets, u_offsets):
        bad = int(np.flatnonzero(np.diff(t_offsets) != np.diff(u_offsets))[0])
        raise ValueError(
            f"{path}: sample {bad}: {t_offsets[bad + 1] - t_offsets[bad]} times but "
            f"{u_offsets[bad + 1] - u_offsets[bad]} units"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    if np.issubdtype(units.dtype, np.floating) and len(units) and (units != np.floor(units)).any():
        raise ValueError(f"{path}: spikes/units holds non-integral values")
    return times.astype(np.float64), units.astype(np.int64), t_offsets, labels.astype(np.int64)


def read_shd_speakers(path: Path) -> np.ndarray | None:
    """The per-sample speaker ids ``[n]`` (int64) of an SHD-layout file's ``extra/speaker``; ``None`` if absent.

    Checks that there is one integer id per label.
    """
    path = Path(path)
    with open_h5(path) as f:
        if not isinstance(f.get("extra"), h5py.Group) or "speaker" not in f["extra"]:
            return None
        speakers = np.asarray(f["extra/speaker"][()])
        n = len(h5_get(f, "labels", path))
    if speakers.ndim != 1 or len(speakers) != n:
        raise ValueError(f"{path}: extra/speaker must hold one id per sample ({n}), got shape {speakers.shape}")
    if not np.issubdtype(speakers.dtype, np.integer):
        raise ValueError(f"{path}: extra/speaker must hold integer ids, got dtype {speakers.dtype}")
    return speakers.astype(np.int64)


def read_shd_frames(path: Path, T: int, dt: float, num_units: int = SHD_UNITS) -> tuple[SparseFrames, np.ndarray]:
    """Read and bin an SHD-layout file (``time_unit = s``, no shift)."""
    times, units, offsets, labels = read_shd_events(path)
    frames = bin_events_chunked(
        times, units, offsets, num_units=num_units, T=T, dt_ms=dt, time_unit="s", source=str(path), progress=True
    )
    return frames, labels


def _read(file_split: str, path: Path, T: int, dt: float, extra: dict[str, Any]) -> tuple[SparseFrames, np.ndarray]:
    return read_shd_frames(path, T, dt, require_int("num_units", extra.get("num_units", SHD_UNITS), minimum=1))


def build_shd(split: str, **options: Any) -> FrameDataset:
    """Registry builder of ``shd``: files ``<root>/shd_{train,test}.h5``; frames ``[T + T_empty, 700]``, 20 classes.

    Options: the common ones (``root``, ``T`` = 100, ``T_empty`` = 0, ``dt`` = 10 ms, ``clamp``,
    ``val_split`` = ``{fraction: 0.1, by: speaker, seed: 0}`` (``by: random`` for a file without
    ``extra/speaker``) or the older random form ``val_fraction`` / ``val_seed``, ``cache``,
    ``cache_dir``).
    """
    return build_event_dataset(
        "shd",
        split,
        options,
        defaults={"T": 100, "dt": 10.0},
        extra_options={},
        read=_read,
        file_for=lambda file_split, root, extra: root / f"shd_{file_split}.h5",
        input_shape=lambda extra: (SHD_UNITS,),
        num_classes=lambda extra, labels: SHD_CLASSES,
        speakers=read_shd_speakers,
    )


def _spoken_digits_classes(extra: dict[str, Any], labels: np.ndarray) -> int:
    if extra["num_classes"] is not None:
        return require_int("num_classes", extra["num_classes"], minimum=1)
    return int(labels.max()) + 1 if len(labels) else 1


def build_spoken_digits(split: str, **options: Any) -> FrameDataset:
    """Registry builder of ``spoken_digits``: the SHD reader on files generated in SHD's layout.

    Files ``<root>/spoken_digits_{train,test}.h5`` (``variant: full``, default),
    ``<root>/spoken_digits_small_{train,test}.h5`` (``variant: small``, the version shipped in the
    repository) or ``<root>/spoken_digits_<variant>_{train,test}.h5`` for any other variant name
    (letters, digits, ``_``, ``-``; e.g. ``noisy`` for the files the generator writes with
    ``--name spoken_digits_noisy``). Extra options: ``num_units`` (default 700), ``num_classes`` (default: the
    largest label of the file + 1; set it, e.g. 10 or 20, so train and test agree). The generated
    files carry ``extra/speaker``: the validation split holds out whole speakers by default
    (``val_split``, see :func:`build_shd`).
    """
    def file_for(file_split: str, root: Path, extra: dict[str, Any]) -> Path:
        variant = extra["variant"]
        if not isinstance(variant, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", variant):
            raise ValueError(
                "variant must be 'full', 'small' or the name of a generated version (letters, digits, '_', '-'; "
                f"files spoken_digits_<variant>_{{train,test}}.h5) for spoken_digits, got {variant!r}"
            )
        infix = "" if variant == "full" else f"_{variant}"
        return root / f"spoken_digits{infix}_{file_split}.h5"

    return build_event_dataset(
        "spoken_digits",
        split,
        options,
        defaults={"T": 100, "dt": 10.0},
        extra_options={"variant": "full", "num_units": SHD_UNITS, "num_classes": None},
        read=_read,
        file_for=file_for,
        input_shape=lambda extra: (require_int("num_units", extra["num_units"], minimum=1),),
        num_classes=_spoken_digits_classes,
        speakers=read_shd_speakers,
    )
