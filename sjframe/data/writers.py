"""Writers of every supported file format, and small random files in them.

Used by the N-MNIST converter (SHD layout), by tests (hand-made files in the real formats) and
by benchmarks. The ``random_*`` helpers write a whole small data set (train and test files) into
a folder so that ``build_dataset(name, split, root=folder)`` reads it; they are meant for tests
and smoke runs of other parts of sjframe (no real data on the machine).
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from sjframe.data.h5io import write_ragged

__all__ = [
    "random_dataset_files",
    "write_dvs_file",
    "write_idx",
    "write_mnist_files",
    "write_nmnist_bin",
    "write_ntidigits_file",
    "write_shd_file",
]


def write_shd_file(
    path: Path, times: Sequence[np.ndarray], units: Sequence[np.ndarray], labels: Sequence[int], times_dtype: str = "float32"
) -> Path:
    """SHD layout: ``spikes/times`` (s) and ``spikes/units`` as variable-length arrays, ``labels``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        spikes = f.create_group("spikes")
        write_ragged(spikes, "times", list(times), times_dtype)
        write_ragged(spikes, "units", list(units), "uint16")
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint8 if max(labels, default=0) < 256 else np.int64))
    return path


def write_ntidigits_file(
    path: Path,
    train: dict[str, tuple[np.ndarray, np.ndarray, str]],
    test: dict[str, tuple[np.ndarray, np.ndarray, str]],
) -> Path:
    """N-TIDIGITS layout: ``data/<key>/{times uint32 us, addrs uint8, labels}`` and ``extra`` with
    attrs ``Ntrain``/``Ntest`` and data sets ``train_keys``/``test_keys``.

    ``train`` / ``test`` map a key to ``(times_us, addrs, label string)``, e.g. ``"o"`` or ``"3"``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for key, (times, addrs, label) in {**train, **test}.items():
            g = data.create_group(key)
            g.create_dataset("times", data=np.asarray(times, dtype=np.uint32))
            g.create_dataset("addrs", data=np.asarray(addrs, dtype=np.uint8))
            g.create_dataset("labels", data=np.bytes_(label))
        extra = f.create_group("extra")
        extra.attrs["Ntrain"] = len(train)
        extra.attrs["Ntest"] = len(test)
        extra.create_dataset("train_keys", data=np.array([k.encode() for k in train], dtype="S"))
        extra.create_dataset("test_keys", data=np.array([k.encode() for k in test], dtype="S"))
    return path


def write_dvs_file(
    path: Path,
    samples: Sequence[tuple[np.ndarray, np.ndarray, int]],
    group: str | None,
    data_dtype: str = "uint8",
) -> Path:
    """DVSGesture / DVSPlane layout: ``[<group>/]<idx>/{time uint32 us, data [E, 3] = (x, y, p), labels}``.

    ``samples`` holds ``(time_us [E], data [E, 3], label)`` with the label as stored in the file
    (DVSGesture: 1-based). ``group`` is ``train`` / ``test`` for DVSGesture, ``None`` for DVSPlane.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        parent = f.create_group(group) if group else f
        for i, (times, data, label) in enumerate(samples):
            g = parent.create_group(str(i))
            g.create_dataset("time", data=np.asarray(times, dtype=np.uint32))
            g.create_dataset("data", data=np.asarray(data, dtype=data_dtype).reshape(-1, 3))
            g.create_dataset("labels", data=np.int64(label))
    return path


def write_nmnist_bin(path: Path, x: np.ndarray, y: np.ndarray, p: np.ndarray, t_us: np.ndarray) -> Path:
    """One N-MNIST sample in the 40-bit format: per event 5 bytes
    ``x (8 bits) | y (8) | p (1) t (23 bits, us)``, big-endian."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x, y, p, t = (np.asarray(a, dtype=np.int64) for a in (x, y, p, t_us))
    raw = np.zeros((len(x), 5), dtype=np.uint8)
    raw[:, 0] = x
    raw[:, 1] = y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3] = (t >> 8) & 0xFF
    raw[:, 4] = t & 0xFF
    path.write_bytes(raw.tobytes())
    return path


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """An IDX file (MNIST format) of a uint8 array: magic ``0x0000 08 <ndim>``, big-endian sizes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz") if not path.name.endswith(".gz") else path
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def write_mnist_files(
    root: Path, kind: str, images: dict[str, np.ndarray], labels: dict[str, np.ndarray], compress: bool = False
) -> Path:
    """IDX files in torchvision's layout ``<root>/{MNIST,FashionMNIST}/raw/...`` for splits
    ``train`` / ``test`` (``images[split]`` uint8 ``[N, 28, 28]``, ``labels[split]`` ``[N]``)."""
    folder = Path(root) / ("MNIST" if kind == "mnist" else "FashionMNIST") / "raw"
    prefix = {"train": "train", "test": "t10k"}
    for split, imgs in images.items():
        write_idx(folder / f"{prefix[split]}-images-idx3-ubyte", imgs, compress)
        write_idx(folder / f"{prefix[split]}-labels-idx1-ubyte", labels[split], compress)
    return folder


def _random_events(rng: np.random.Generator, n_events: int, t_max: float) -> np.ndarray:
    return np.sort(rng.uniform(0.0, t_max, size=n_events))


def random_dataset_files(
    name: str, root: Path, n_train: int = 12, n_test: int = 6, events: int = 200, seed: int = 0
) -> Path:
    """Write a small random data set ``name`` (any registry name with files) into ``root``.

    Each sample has about ``events`` events spread over the first second (DVS: 1.5 s), labels
    cycle through the classes. Returns ``root``.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    counts = {"train": n_train, "test": n_test}
    if name in ("shd", "spoken_digits"):
        for split, n in counts.items():
            times = [_random_events(rng, events, 1.0) for _ in range(n)]
            units = [rng.integers(0, 700, size=events) for _ in range(n)]
            n_classes = 20 if name == "shd" else 10
            write_shd_file(root / f"{name}_{split}.h5", times, units, [i % n_classes for i in range(n)])
    elif name == "nmnist":
        for split, n in counts.items():
            times = [_random_events(rng, events, 0.3) for _ in range(n)]
            units = [rng.integers(0, 2 * 1156, size=events) for _ in range(n)]
            write_shd_file(root / f"nmnist_{split}.h5", times, units, [i % 10 for i in range(n)])
    elif name == "ntidigits":
        digits = "zo123456789"
        split_samples = {}
        for split, n in counts.items():
            split_samples[split] = {
                f"{split}-s{i}-{digits[i % 11]}": (
                    (_random_events(rng, events, 1.0) * 1e6).astype(np.uint32),
                    rng.integers(0, 64, size=events),
                    digits[i % 11],
                )
                for i in range(n)
            }
        write_ntidigits_file(root / "n-tidigits-single.hdf5", split_samples["train"], split_samples["test"])
    elif name in ("dvsgesture", "dvsplane"):
        height, width = (128, 128) if name == "dvsgesture" else (240, 304)
        for split, n in counts.items():
            samples = []
            for i in range(n):
                t = (_random_events(rng, events, 1.5) * 1e6).astype(np.uint32) + 5000
                data = np.stack(
                    [rng.integers(0, width, events), rng.integers(0, height, events), rng.integers(0, 2, events)], axis=1
                )
                label = (i % 10) + 1 if name == "dvsgesture" else i % 4
                samples.append((t, data, label))
            if name == "dvsgesture":
                write_dvs_file(root / f"DVS-Gesture-{split}10.hdf5", samples, group=split)
            else:
                write_dvs_file(root / f"DVSPlane-{split}.hdf5", samples, group=None, data_dtype="uint16")
    elif name in ("mnist", "fashion_mnist"):
        images = {s: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8) for s, n in counts.items()}
        labels = {s: np.arange(n) % 10 for s, n in counts.items()}
        write_mnist_files(root, "mnist" if name == "mnist" else "fashion", images, labels)
    else:
        raise ValueError(
            f"no files to write for data set {name!r}; valid: "
            "['dvsgesture', 'dvsplane', 'fashion_mnist', 'mnist', 'nmnist', 'ntidigits', 'shd', 'spoken_digits']"
        )
    return root
