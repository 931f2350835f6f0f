"""N-MNIST: the raw 40-bit event files, their conversion to HDF5 and the frame reader.

Raw format (one ``.bin`` file per sample, ``<split dir>/<digit>/*.bin``, e.g. ``Train/3/00042.bin``):
5 bytes per event, ``x`` (8 bits) | ``y`` (8 bits) | polarity (1 bit) and time (23 bits, us, big
endian): ``t = (b2 & 0x7F) << 16 | b3 << 8 | b4``, ``p = b2 >> 7``. The sensor is 34 x 34.

HDF5 layout (SHD's, as the S3GD code converted it): ``spikes/times`` (seconds, float64),
``spikes/units = x + 34 y + 1156 p`` (``0..2311``), ``labels`` (the digit), plus ``extra/files``
(the source file of each sample, relative to the split folder).

Frames: ``bin = floor(t * 1000 / dt)``, ``bin < T``; ``polarity: fold`` (default, the S3GD input of
1156 units) adds both polarities into one channel (``unit mod 1156``), ``polarity: split`` keeps
two channels; ``flatten: true`` (default) gives ``[T + T_empty, 1156 | 2312]``, ``flatten: false``
gives ``[T + T_empty, 1 | 2, 34, 34]`` (the CSNN's 2-channel input with ``polarity: split``).
Defaults ``dt = 1`` ms, ``T = 300``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from sjframe.data.binning import SparseFrames, bin_events_chunked
from sjframe.data.common import require_bool
from sjframe.data.frames import FrameDataset, build_event_dataset
from sjframe.data.h5io import write_ragged
from sjframe.data.shd import read_shd_events

__all__ = ["NMNIST_SIZE", "build_nmnist", "convert_nmnist", "read_nmnist_bin"]

NMNIST_SIZE = 34
NMNIST_PIXELS = NMNIST_SIZE * NMNIST_SIZE


def read_nmnist_bin(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decode one 40-bit N-MNIST file: ``(x, y, p, t_us)`` int64 arrays ``[E]``.

    Raises ``ValueError`` naming the file when its size is not a multiple of 5 bytes, a coordinate
    is outside the 34 x 34 sensor, or the times decrease.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"{path}: size {raw.size} bytes is not a multiple of 5 (40-bit events)")
    ev = raw.reshape(-1, 5).astype(np.int64)
    x, y = ev[:, 0], ev[:, 1]
    p = ev[:, 2] >> 7
    t = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    bad = np.flatnonzero((x >= NMNIST_SIZE) | (y >= NMNIST_SIZE))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{path}: event {i}: (x, y) = ({x[i]}, {y[i]}) outside the {NMNIST_SIZE}x{NMNIST_SIZE} sensor")
    back = np.flatnonzero(np.diff(t) < 0)
    if len(back):
        i = int(back[0])
        raise ValueError(f"{path}: times not sorted (event {i + 1} at {t[i + 1]} us comes after {t[i]} us)")
    return x, y, p, t


def convert_nmnist(raw_root: Path, out_h5: Path, progress: bool = True) -> Path:
    """Convert one split folder of raw N-MNIST (``raw_root/<digit>/*.bin``, digits ``0..9``) to
    ``out_h5`` in the SHD layout (see the module doc). Files are taken in sorted order per digit.
    """
    raw_root, out_h5 = Path(raw_root), Path(out_h5)
    if not raw_root.is_dir():
        raise FileNotFoundError(f"N-MNIST folder {raw_root} not found (expected <split>/<digit>/*.bin)")
    files: list[tuple[Path, int]] = []
    for digit in range(10):
        files += [(f, digit) for f in sorted((raw_root / str(digit)).glob("*.bin"))]
    if not files:
        raise FileNotFoundError(f"no .bin files under {raw_root}/<digit>/ (expected e.g. {raw_root}/0/00002.bin)")
    times, units, labels, names = [], [], [], []
    for f, digit in tqdm(files, desc=f"converting {raw_root}", disable=not progress):
        x, y, p, t = read_nmnist_bin(f)
        times.append(t / 1e6)
        units.append(x + NMNIST_SIZE * y + NMNIST_PIXELS * p)
        labels.append(digit)
        names.append(str(f.relative_to(raw_root)))
    out_h5.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_h5.with_name(out_h5.name + ".tmp")
    with h5py.File(tmp, "w") as h5:
        spikes = h5.create_group("spikes")
        write_ragged(spikes, "times", times, "float64")
        write_ragged(spikes, "units", units, "uint16")
        h5.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8))
        h5.create_group("extra").create_dataset("files", data=np.array([n.encode() for n in names], dtype="S"))
    tmp.replace(out_h5)
    return out_h5


def _channels(extra: dict[str, Any]) -> int:
    if extra["polarity"] not in ("fold", "split"):
        raise ValueError(f"polarity must be 'fold' or 'split' for nmnist, got {extra['polarity']!r}")
    return 1 if extra["polarity"] == "fold" else 2


def _input_shape(extra: dict[str, Any]) -> tuple[int, ...]:
    channels = _channels(extra)
    if require_bool("flatten", extra["flatten"]):
        return (channels * NMNIST_PIXELS,)
    return (channels, NMNIST_SIZE, NMNIST_SIZE)


def _read(file_split: str, path: Path, T: int, dt: float, extra: dict[str, Any]) -> tuple[SparseFrames, np.ndarray]:
    times, units, offsets, labels = read_shd_events(path)
    num_units = 2 * NMNIST_PIXELS
    bad = np.flatnonzero((units < 0) | (units >= num_units))
    if len(bad):
        sample = int(np.searchsorted(offsets, bad[0], side="right") - 1)
        raise ValueError(f"{path}: sample {sample}: unit id {units[bad[0]]} out of range [0, {num_units})")
    if _channels(extra) == 1:
        units = units % NMNIST_PIXELS
        num_units = NMNIST_PIXELS
    frames = bin_events_chunked(
        times, units, offsets, num_units=num_units, T=T, dt_ms=dt, time_unit="s", source=str(path), progress=True
    )
    return frames, labels


def build_nmnist(split: str, **options: Any) -> FrameDataset:
    """Registry builder of ``nmnist``: files ``<root>/nmnist_{train,test}.h5`` (made by
    ``datasets/convert_nmnist.py``), 10 classes.

    Options: the common ones (``root``, ``T`` = 300, ``T_empty`` = 0, ``dt`` = 1 ms, ``clamp``,
    ``val_fraction`` = 0.1, ``val_seed`` = 0, ``cache``, ``cache_dir``), ``polarity``
    (``fold`` | ``split``) and ``flatten`` (bool).
    """
    return build_event_dataset(
        "nmnist",
        split,
        options,
        defaults={"T": 300, "dt": 1.0},
        extra_options={"polarity": "fold", "flatten": True},
        read=_read,
        file_for=lambda file_split, root, extra: root / f"nmnist_{file_split}.h5",
        input_shape=_input_shape,
        num_classes=lambda extra, labels: 10,
    )
