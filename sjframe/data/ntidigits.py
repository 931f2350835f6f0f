"""N-TIDIGITS (single digits): cochlea events of spoken digits, 64 channels, 11 classes.

File ``<root>/n-tidigits-single.hdf5``: ``data/<key>/times`` (uint32, us), ``data/<key>/addrs``
(uint8 channel ``0..63``), ``data/<key>/labels`` (the spoken digit as a string: ``z`` zero,
``o`` oh, ``1``..``9``; an array of equal entries is accepted); ``extra`` holds the attrs
``Ntrain`` / ``Ntest`` and the data sets ``train_keys`` / ``test_keys``.

Classes: ``z`` -> 0, ``1``..``9`` -> 1..9, ``o`` -> 10. Samples whose label is not a single digit
(multi-digit utterances) are skipped, and their number is kept in ``skipped``. Binning
(first-spike-coding spec, section 5): times shifted to the sample's first event,
``bin = floor(t / (1000 dt))``, events with ``bin < T`` (``t < T dt`` ms) counted into ``[T, 64]``.
Defaults: ``dt = 5`` ms, ``T = 250``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sjframe.data.binning import SparseFrames, bin_events
from sjframe.data.frames import FrameDataset, build_event_dataset
from sjframe.data.h5io import h5_get, label_of, open_h5

__all__ = ["NTIDIGITS_CLASSES", "build_ntidigits", "digit_class", "read_ntidigits_events"]

NTIDIGITS_CHANNELS = 64
NTIDIGITS_CLASSES = 11
_DIGITS = {"z": 0, "o": 10, **{str(d): d for d in range(1, 10)}}


def _text(value: Any) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", errors="replace")
    return str(value)


def digit_class(label: Any) -> int | None:
    """Class of a single-digit label (``'z'`` -> 0, ``'1'``..``'9'`` -> 1..9, ``'o'`` -> 10);
    ``None`` if the label is not a single digit. Integer labels in ``0..10`` are taken as classes."""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label) if 0 <= int(label) < NTIDIGITS_CLASSES else None
    text = _text(label).strip().lower()
    return _DIGITS.get(text)


def read_ntidigits_events(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], int]:
    """Events of the ``split`` (``train`` | ``test``) samples listed in ``extra/<split>_keys``.

    Returns ``(times us [E], addrs [E], offsets [n+1], classes [n], keys [n], skipped)``.
    """
    path = Path(path)
    times_list, addrs_list, classes, keys = [], [], [], []
    skipped = 0
    with open_h5(path) as f:
        data = h5_get(f, "data", path)
        key_list = [_text(k) for k in np.asarray(h5_get(f, f"extra/{split}_keys", path)[()]).reshape(-1)]
        for key in key_list:
            g = h5_get(data, key, path)
            times = np.asarray(h5_get(g, "times", path)[()]).reshape(-1)
            addrs = np.asarray(h5_get(g, "addrs", path)[()]).reshape(-1)
            label = label_of(h5_get(g, "labels", path)[()], f"{path}: sample {key!r}")
            cls = digit_class(label)
            if cls is None:
                skipped += 1
                continue
            if times.shape != addrs.shape:
                raise ValueError(f"{path}: sample {key!r}: {len(times)} times but {len(addrs)} addrs")
            times_list.append(times)
            addrs_list.append(addrs)
            classes.append(cls)
            keys.append(key)
    offsets = np.zeros(len(times_list) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in times_list], out=offsets[1:])
    times = np.concatenate(times_list) if times_list else np.zeros(0)
    addrs = np.concatenate(addrs_list) if addrs_list else np.zeros(0, dtype=np.int64)
    return times, addrs, offsets, np.asarray(classes, dtype=np.int64), keys, skipped


def _read(file_split: str, path: Path, T: int, dt: float, extra: dict[str, Any]) -> tuple[SparseFrames, np.ndarray]:
    times, addrs, offsets, classes, keys, _ = read_ntidigits_events(path, file_split)
    frames = bin_events(
        times, addrs, offsets, num_units=NTIDIGITS_CHANNELS, T=T, dt_ms=dt, time_unit="us",
        shift_to_first=True, source=str(path), sample_name=lambda i: repr(keys[i]),
    )
    return frames, classes


def build_ntidigits(split: str, **options: Any) -> FrameDataset:
    """Registry builder of ``ntidigits``: frames ``[T + T_empty, 64]``, 11 classes.

    Options: the common ones (``root``, ``T`` = 250, ``T_empty`` = 0, ``dt`` = 5 ms, ``clamp``,
    ``val_fraction`` = 0.1, ``val_seed`` = 0, ``cache``, ``cache_dir``).
    """
    return build_event_dataset(
        "ntidigits",
        split,
        options,
        defaults={"T": 250, "dt": 5.0},
        extra_options={},
        read=_read,
        file_for=lambda file_split, root, extra: root / "n-tidigits-single.hdf5",
        input_shape=lambda extra: (NTIDIGITS_CHANNELS,),
        num_classes=lambda extra, labels: NTIDIGITS_CLASSES,
    )
