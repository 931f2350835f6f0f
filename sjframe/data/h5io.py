"""Small HDF5 helpers with clear errors (file and key named) for the readers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = ["h5_get", "label_of", "open_h5", "ragged_to_flat", "write_ragged"]


@contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    """Open ``path`` read-only; a missing or non-HDF5 file raises an error naming it."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"file {path} not found")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file ({e})") from e
    try:
        yield f
    finally:
        f.close()


def h5_get(group: h5py.Group, key: str, path: Path) -> Any:
    """``group[key]``; a missing key raises ``ValueError`` naming the file and the full key."""
    try:
        return group[key]
    except KeyError:
        where = f"{group.name.rstrip('/')}/{key}".lstrip("/")
        raise ValueError(f"{path}: missing key {where!r}") from None


def ragged_to_flat(arrays: Any, what: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate a sequence of 1-d arrays (an HDF5 variable-length data set read whole).

    Returns ``(values [E], offsets int64 [n + 1])``.
    """
    arrays = list(arrays)
    lengths = np.fromiter((np.size(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    for i, a in enumerate(arrays):
        if np.ndim(a) != 1:
            raise ValueError(f"{path}: {what} of sample {i} is not a 1-d array (shape {np.shape(a)})")
    values = np.concatenate([np.asarray(a) for a in arrays]) if arrays else np.zeros(0)
    return values, offsets


def label_of(value: Any, where: str) -> Any:
    """The single label stored in ``value`` (a scalar, or an array whose entries are all equal)."""
    arr = np.asarray(value)
    if arr.size == 0:
        raise ValueError(f"{where}: empty label")
    flat = arr.reshape(-1)
    if not (flat == flat[0]).all():
        raise ValueError(f"{where}: label holds several different values {flat[:5].tolist()}")
    return flat[0]


def write_ragged(group: h5py.Group, key: str, arrays: list[np.ndarray], dtype: Any) -> None:
    """Write ``arrays`` as a variable-length data set ``group[key]`` (the SHD layout)."""
    objects = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        objects[i] = np.asarray(a, dtype=dtype).reshape(-1)
    group.create_dataset(key, data=objects, dtype=h5py.vlen_dtype(np.dtype(dtype)))
