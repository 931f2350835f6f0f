"""MNIST and Fashion-MNIST from their IDX files (torchvision's folder layout), and their frame codes.

Files: ``<root>/MNIST/raw/`` or ``<root>/FashionMNIST/raw/`` holding
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte`` (each raw or ``.gz``). ``download=True`` fetches them through
torchvision (network needed); otherwise a missing file is an error saying where to put it.

Encodings of the data set (``build_dataset("mnist" | "fashion_mnist", split, encoding=...)``):

* ``latency`` (the S3GD / LocalZO code): ``x = pixel / 255``; a pixel with ``x > threshold``
  fires once, at step ``floor(tau_eff * ln(x / (x - threshold)))`` (bright = early), kept if
  ``< T``; frames ``[T + T_empty, 784]`` (``flatten: false``: ``[.., 1, 28, 28]``). Defaults
  ``tau_eff = 20``, ``threshold = 0.2``, ``T = 100``, ``dt = 1`` ms.
* ``static`` (the CSNN): the image ``x = pixel / 255`` fed as a constant current at every one of
  ``T`` steps: ``[T + T_empty, 1, 28, 28]`` (``flatten: true``: ``[.., 784]``); ``T = 50``;
  ``dt_ms`` is ``None``.
* ``raw``: ``x`` float32 ``[1, 28, 28]`` (or ``[784]``) in ``[0, 1]``, not time-major
  (``time_major = False``), for methods with their own encoding (exact-time, STDP, conversion).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sjframe.data.common import (
    check_options,
    require_bool,
    require_int,
    require_number,
    val_split_indices,
)

__all__ = ["MnistDataset", "build_fashion_mnist", "build_mnist", "latency_steps", "load_mnist_arrays", "read_idx"]

_FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST"}
_PREFIX = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (raw or gzip): header ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian
    uint32 sizes, then the data. Errors name the file."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: {len(data) - header} data bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_mnist_arrays(
    root: str | Path = "datasets", split: str = "train", kind: str = "mnist", download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``[N, 28, 28]`` and labels int64 ``[N]`` of the ``train`` or ``test`` file.

    ``kind`` is ``mnist`` or ``fashion``. With ``download=True`` missing files are fetched by
    torchvision into the same layout. (``split`` is the file: a validation split is carved from
    ``train`` by the data set, see :func:`sjframe.data.common.val_split_indices`.)
    """
    if kind not in _FOLDERS:
        raise ValueError(f"kind must be one of {sorted(_FOLDERS)}, got {kind!r}")
    if split not in _PREFIX:
        raise ValueError(f"split must be 'train' or 'test' (the IDX files), got {split!r}")
    folder = Path(root) / _FOLDERS[kind] / "raw"
    stems = (f"{_PREFIX[split]}-images-idx3-ubyte", f"{_PREFIX[split]}-labels-idx1-ubyte")
    paths = [_find(folder, s) for s in stems]
    if any(p is None for p in paths) and download:
        import torchvision

        cls = torchvision.datasets.MNIST if kind == "mnist" else torchvision.datasets.FashionMNIST
        try:
            cls(str(root), train=(split == "train"), download=True)
        except Exception as e:  # no network, server down, ...: say what to do instead
            raise RuntimeError(
                f"downloading {kind} into {folder} failed ({type(e).__name__}: {e}); put the IDX files there by hand"
            ) from e
        paths = [_find(folder, s) for s in stems]
    for stem, p in zip(stems, paths):
        if p is None:
            raise FileNotFoundError(
                f"{kind} {split} file {folder / stem}[.gz] not found: put the IDX files in {folder} "
                f"(torchvision's layout) or pass download=True (needs network)"
            )
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(f"{paths[0]}: expected uint8 images [N, 28, 28], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{paths[1]}: expected {len(images)} labels, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        bad = int(np.flatnonzero((labels < 0) | (labels > 9))[0])
        raise ValueError(f"{paths[1]}: sample {bad}: label {labels[bad]} out of range [0, 10)")
    return images, labels.astype(np.int64)


def latency_steps(x: torch.Tensor, tau_eff: float = 20.0, threshold: float = 0.2) -> torch.Tensor:
    """Spike step of every intensity ``x`` in ``[0, 1]``: ``floor(tau_eff ln(x / (x - threshold)))``
    for ``x > threshold``, ``-1`` (no spike) otherwise. Same shape as ``x``, int64. The comparison
    is made in ``x``'s dtype, the logarithm in float64."""
    above = x > threshold
    xd = x.double()
    safe = torch.where(above, xd, torch.ones_like(xd))
    steps = torch.floor(tau_eff * torch.log(safe / (safe - threshold))).long()
    return torch.where(above, steps, torch.full_like(steps, -1))


class MnistDataset(Dataset):
    """MNIST / Fashion-MNIST images coded as frames (see the module doc)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        encoding: str,
        T: int,
        T_empty: int,
        dt: float,
        tau_eff: float,
        threshold: float,
        flatten: bool,
    ) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.encoding = encoding
        self.T, self.T_empty = T, T_empty
        self.tau_eff, self.threshold = tau_eff, threshold
        self.num_classes = 10
        self.input_shape: tuple[int, ...] = (784,) if flatten else (1, 28, 28)
        self.dt_ms = dt if encoding == "latency" else None
        self.time_major = encoding != "raw"

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = self.images[index].reshape(784)
        x = pixels.float().div_(255.0)
        label = int(self.labels[index])
        if self.encoding == "raw":
            return x.view(self.input_shape), label
        total = self.T + self.T_empty
        # numpy (single-threaded) for the fill, see SparseFrames.dense
        frames = np.zeros((total, 784), dtype=np.float32)
        if self.encoding == "static":
            frames[: self.T] = x.numpy()
        else:
            steps = latency_steps(pixels.double() / 255.0, self.tau_eff, self.threshold).numpy()
            fire = (steps >= 0) & (steps < self.T)
            frames[steps[fire], np.flatnonzero(fire)] = 1.0
        return torch.from_numpy(frames).view(total, *self.input_shape), label


_MNIST_OPTIONS = (
    "root", "encoding", "T", "T_empty", "dt", "tau_eff", "threshold", "flatten", "val_fraction", "val_seed", "download",
)


def _build(name: str, kind: str, split: str, options: dict[str, Any]) -> MnistDataset:
    check_options(name, options, _MNIST_OPTIONS)
    encoding = options.get("encoding", "latency")
    if encoding not in ("latency", "static", "raw"):
        raise ValueError(f"encoding must be 'latency', 'static' or 'raw' for {name}, got {encoding!r}")
    T = require_int("T", options.get("T", 100 if encoding == "latency" else 50), minimum=1)
    T_empty = require_int("T_empty", options.get("T_empty", 0), minimum=0)
    dt = require_number("dt", options.get("dt", 1.0), positive=True)
    tau_eff = require_number("tau_eff", options.get("tau_eff", 20.0), positive=True)
    threshold = require_number("threshold", options.get("threshold", 0.2))
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    flatten = options.get("flatten")
    flatten = encoding == "latency" if flatten is None else require_bool("flatten", flatten)
    download = require_bool("download", options.get("download", False))
    val_fraction = options.get("val_fraction", 0.1)
    val_seed = options.get("val_seed", 0)
    root = options.get("root", "datasets")
    if not isinstance(root, (str, Path)):
        raise ValueError(f"root must be a path, got {root!r}")
    images, labels = load_mnist_arrays(root, "test" if split == "test" else "train", kind, download)
    if split == "test":
        val_split_indices(len(labels), "train", val_fraction, val_seed)  # validate the options anyway
    else:
        keep = val_split_indices(len(labels), split, val_fraction, val_seed)
        images, labels = images[keep], labels[keep]
    if encoding == "latency" and math.floor(tau_eff * math.log(1.0 / (1.0 - threshold))) >= T:
        raise ValueError(f"T={T} is too short: even a white pixel fires after step T-1 (tau_eff={tau_eff})")
    return MnistDataset(images, labels, encoding, T, T_empty, dt, tau_eff, threshold, flatten)


def build_mnist(split: str, **options: Any) -> MnistDataset:
    """Registry builder of ``mnist``. Options: ``root``, ``encoding`` (``latency`` | ``static`` |
    ``raw``), ``T``, ``T_empty``, ``dt``, ``tau_eff``, ``threshold``, ``flatten``, ``val_fraction``
    (0.1), ``val_seed`` (0), ``download`` (false)."""
    return _build("mnist", "mnist", split, options)


def build_fashion_mnist(split: str, **options: Any) -> MnistDataset:
    """Registry builder of ``fashion_mnist`` (same options as ``mnist``)."""
    return _build("fashion_mnist", "fashion", split, options)
