"""Bad input gives a clear error naming the file, the sample and the problem."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sjframe.data import build_dataset, time_major_collate
from sjframe.data.mnist import load_mnist_arrays
from sjframe.data.nmnist import convert_nmnist, read_nmnist_bin
from sjframe.data.writers import (
    random_dataset_files,
    write_dvs_file,
    write_idx,
    write_mnist_files,
    write_nmnist_bin,
    write_ntidigits_file,
    write_shd_file,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shd(root: Path, times: list[list[float]], units: list[list[int]], labels: list[int]) -> Path:
    return write_shd_file(root / "shd_train.h5", [np.array(t) for t in times], [np.array(u) for u in units], labels,
                          times_dtype="float64")


def test_missing_file_says_where_it_goes(tmp_path: Path) -> None:
    for name, fname in [("shd", "shd_train.h5"), ("ntidigits", "n-tidigits-single.hdf5"),
                        ("dvsgesture", "DVS-Gesture-train10.hdf5"), ("dvsplane", "DVSPlane-train.hdf5"),
                        ("nmnist", "nmnist_train.h5")]:
        with pytest.raises(FileNotFoundError, match=f"{name}: file .*{fname} not found .*datasets/README.md"):
            build_dataset(name, "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"put the IDX files in .*MNIST/raw .*download=True"):
        build_dataset("mnist", "test", root=tmp_path)


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    (tmp_path / "shd_train.h5").write_bytes(b"this is not hdf5")
    with pytest.raises(ValueError, match=r"shd_train.h5: not a readable HDF5 file"):
        build_dataset("shd", "train", root=tmp_path)


def test_missing_key(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "shd_train.h5", "w") as f:
        f.create_dataset("labels", data=np.zeros(2, dtype=np.uint8))
        f.create_group("spikes").create_dataset("times", data=np.zeros(2))
    with pytest.raises(ValueError, match=r"shd_train.h5: missing key 'spikes/units'"):
        build_dataset("shd", "train", root=tmp_path)


@pytest.mark.parametrize(
    "times, units, labels, match",
    [
        ([[0.1], [0.1, 0.2]], [[1], [3, 700]], [0, 1], r"sample 1: unit id 700 out of range \[0, 700\)"),
        ([[0.1], [-0.1, 0.2]], [[1], [3, 4]], [0, 1], "sample 1: negative time -0.1"),
        ([[0.1, 0.05], [0.1]], [[1, 2], [3]], [0, 1], "sample 0: times not sorted"),
        ([[0.1], [np.nan]], [[1], [3]], [0, 1], "sample 1: non-finite time"),
        ([[0.1], [0.2, 0.3]], [[1], [3]], [0, 1], "sample 1: 2 times but 1 units"),
        ([[0.1], [0.2]], [[1], [3]], [0, 20], r"sample 1: label 20 out of range \[0, 20\)"),
    ],
)
def test_bad_shd_samples(tmp_path: Path, times: list, units: list, labels: list, match: str) -> None:
    _shd(tmp_path, times, units, labels)
    with pytest.raises(ValueError, match=f"shd_train.h5: {match}"):
        build_dataset("shd", "train", root=tmp_path)


def test_sample_count_mismatch(tmp_path: Path) -> None:
    _shd(tmp_path, [[0.1], [0.2]], [[1], [2]], [0])
    with pytest.raises(ValueError, match="spikes/times has 2 samples, spikes/units 2, labels 1"):
        build_dataset("shd", "train", root=tmp_path)


def test_ntidigits_errors(tmp_path: Path) -> None:
    path = tmp_path / "n-tidigits-single.hdf5"
    write_ntidigits_file(path, {"a-1": (np.array([5, 3]), np.array([0, 1]), "1")}, {})
    with pytest.raises(ValueError, match=r"n-tidigits-single.hdf5: sample 'a-1': times not sorted"):
        build_dataset("ntidigits", "train", root=tmp_path)
    write_ntidigits_file(path, {"a-1": (np.array([1, 3]), np.array([0, 64]), "1")}, {})
    with pytest.raises(ValueError, match=r"sample 'a-1': unit id 64 out of range \[0, 64\)"):
        build_dataset("ntidigits", "train", root=tmp_path)
    with h5py.File(path, "a") as f:
        del f["extra/test_keys"]
    with pytest.raises(ValueError, match="missing key 'extra/test_keys'"):
        build_dataset("ntidigits", "test", root=tmp_path)
    with h5py.File(path, "a") as f:
        del f["data/a-1"]
    with pytest.raises(ValueError, match="missing key 'data/a-1'"):
        build_dataset("ntidigits", "train", root=tmp_path)


def test_dvs_errors(tmp_path: Path) -> None:
    path = tmp_path / "DVS-Gesture-train10.hdf5"
    write_dvs_file(path, [(np.array([0, 10]), np.array([[1, 1, 0], [128, 1, 0]]), 1)], group="train")
    with pytest.raises(ValueError, match=r"DVS-Gesture-train10.hdf5: sample '0': event 1: x = 128 out of range \[0, 128\)"):
        build_dataset("dvsgesture", "train", root=tmp_path)
    write_dvs_file(path, [(np.array([0, 10]), np.array([[1, 1, 0], [1, 1, 0]]), 0)], group="train")
    with pytest.raises(ValueError, match=r"sample '0': label 0 out of range"):
        build_dataset("dvsgesture", "train", root=tmp_path)
    write_dvs_file(path, [(np.array([20, 10]), np.array([[1, 1, 0], [1, 1, 0]]), 1)], group="train")
    with pytest.raises(ValueError, match=r"sample '0': times not sorted"):
        build_dataset("dvsgesture", "train", root=tmp_path)
    write_dvs_file(path, [(np.array([0]), np.array([[1, 1, 0]]), 1)], group="test")  # wrong group
    with pytest.raises(ValueError, match="missing key 'train'"):
        build_dataset("dvsgesture", "train", root=tmp_path)
    with h5py.File(tmp_path / "DVSPlane-test.hdf5", "w") as f:
        g = f.create_group("0")
        g.create_dataset("time", data=np.array([0, 1], dtype=np.uint32))
        g.create_dataset("data", data=np.zeros((2, 2), dtype=np.uint16))
        g.create_dataset("labels", data=1)
    with pytest.raises(ValueError, match=r"DVSPlane-test.hdf5: sample '0': data must have shape \[2, 3\]"):
        build_dataset("dvsplane", "test", root=tmp_path)


def test_nmnist_raw_errors(tmp_path: Path) -> None:
    bad = tmp_path / "Train" / "1" / "00001.bin"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match=r"00001.bin: size 7 bytes is not a multiple of 5"):
        read_nmnist_bin(bad)
    write_nmnist_bin(bad, np.array([34]), np.array([0]), np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match=r"00001.bin: event 0: \(x, y\) = \(34, 0\) outside the 34x34 sensor"):
        convert_nmnist(tmp_path / "Train", tmp_path / "out.h5", progress=False)
    write_nmnist_bin(bad, np.array([1, 1]), np.array([0, 0]), np.array([0, 0]), np.array([9, 3]))
    with pytest.raises(ValueError, match=r"00001.bin: times not sorted"):
        read_nmnist_bin(bad)
    with pytest.raises(FileNotFoundError, match="no .bin files"):
        convert_nmnist(tmp_path / "Train" / "1", tmp_path / "out.h5", progress=False)
    with pytest.raises(FileNotFoundError, match="N-MNIST folder"):
        convert_nmnist(tmp_path / "Test", tmp_path / "out.h5", progress=False)
    write_shd_file(tmp_path / "nmnist_test.h5", [np.array([0.0])], [np.array([2312])], [1])
    with pytest.raises(ValueError, match=r"nmnist_test.h5: sample 0: unit id 2312 out of range \[0, 2312\)"):
        build_dataset("nmnist", "test", root=tmp_path)


def test_idx_errors(tmp_path: Path) -> None:
    folder = write_mnist_files(tmp_path, "mnist", {"test": np.zeros((2, 28, 28), np.uint8)}, {"test": np.array([1, 12])})
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte: sample 1: label 12 out of range"):
        load_mnist_arrays(tmp_path, "test")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x08\x01\x00\x00")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: not an IDX file"):
        load_mnist_arrays(tmp_path, "test")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="expected 2 labels"):
        load_mnist_arrays(tmp_path, "test")
    data = (folder / "t10k-images-idx3-ubyte").read_bytes()
    (folder / "t10k-images-idx3-ubyte").write_bytes(data[:-5])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte: .* data bytes, expected 1568"):
        load_mnist_arrays(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        load_mnist_arrays(tmp_path, "val")
    with pytest.raises(ValueError, match="kind must be"):
        load_mnist_arrays(tmp_path, "test", kind="emnist")


def test_bad_options(tmp_path: Path) -> None:
    random_dataset_files("shd", tmp_path, n_train=4, n_test=2, events=5)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['window'\] for data set 'shd'; valid: \[.*'T_empty'"):
        build_dataset("shd", "train", root=tmp_path, window=3)
    for kwargs, match in [
        ({"T": 2.5}, "T must be an int"),
        ({"T": 0}, "T must be >= 1"),
        ({"T_empty": -1}, "T_empty must be >= 0"),
        ({"dt": 0}, "dt must be > 0"),
        ({"clamp": "yes"}, "clamp must be true or false"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"val_fraction": 0.0, "split": "val"}, "the validation split is empty"),
    ]:
        split = kwargs.pop("split", "train")
        with pytest.raises(ValueError, match=match):
            build_dataset("shd", split, root=tmp_path, **kwargs)
    with pytest.raises(ValueError, match="val_fraction"):
        build_dataset("shd", "test", root=tmp_path, val_fraction=2.0)
    with pytest.raises(ValueError, match="polarity must be"):
        random_dataset_files("nmnist", tmp_path, n_train=2, n_test=1, events=3)
        build_dataset("nmnist", "test", root=tmp_path, polarity="both")
    with pytest.raises(ValueError, match="encoding must be"):
        build_dataset("mnist", "test", root=tmp_path, encoding="rate")
    with pytest.raises(ValueError, match="no files to write"):
        random_dataset_files("yinyang", tmp_path)


def test_collate_errors() -> None:
    with pytest.raises(ValueError, match="batch is empty"):
        time_major_collate([])
    with pytest.raises(ValueError, match=r"batch item 1 has x of shape \(3, 2\)"):
        time_major_collate([(torch.zeros(3, 1), 0), (torch.zeros(3, 2), 1)])
