"""Each reader on a hand-made file in its real format: shapes, labels, event counts, windows."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sjframe.data import DATASETS, build_dataset, time_major_collate
from sjframe.data.mnist import latency_steps, load_mnist_arrays
from sjframe.data.nmnist import convert_nmnist, read_nmnist_bin
from sjframe.data.writers import (
    random_dataset_files,
    write_dvs_file,
    write_mnist_files,
    write_nmnist_bin,
    write_ntidigits_file,
    write_shd_file,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _shd_files(root: Path) -> None:
    # train: 3 samples, the last one empty; test: 1 sample. float64 times (seconds)
    write_shd_file(
        root / "shd_train.h5",
        [np.array([0.0, 0.004, 0.0101, 0.79, 0.8, 0.95]), np.array([0.5]), np.array([])],
        [np.array([0, 0, 699, 10, 11, 12]), np.array([5]), np.array([])],
        [4, 19, 0],
        times_dtype="float64",
    )
    write_shd_file(root / "shd_test.h5", [np.array([0.0, 0.999, 1.0])], [np.array([1, 2, 3])], [7], times_dtype="float64")


def test_shd_reader_windows_and_counts(tmp_path: Path) -> None:
    _shd_files(tmp_path)
    # the paper's training window: 0.8 s (T = 80 at 10 ms) + T_empty = 20
    train = build_dataset("shd", "train", root=tmp_path, T=80, T_empty=20, dt=10.0, val_fraction=0.0)
    assert len(train) == 3 and train.input_shape == (700,) and train.num_classes == 20 and train.dt_ms == 10.0
    x, y = train[0]
    assert x.shape == (100, 700) and x.dtype == torch.float32 and y == 4
    assert x[0, 0] == 2 and x[1, 699] == 1 and x[79, 10] == 1
    assert x.sum() == 4  # 0.8 s and 0.95 s are outside the 0.8 s window
    assert torch.count_nonzero(x[80:]) == 0
    assert train.event_counts().tolist() == [4.0, 1.0, 0.0]
    assert train[2][0].sum() == 0 and train[2][1] == 0  # an empty sample: all-zero frames
    # the test window is longer (1 s): the caller passes another T
    test = build_dataset("shd", "test", root=tmp_path, T=100, dt=10.0)
    xt, yt = test[0]
    assert xt.shape == (100, 700) and yt == 7 and xt[99, 2] == 1 and xt.sum() == 2
    # S3GD binning: 2 ms, 500 steps
    fine = build_dataset("shd", "train", root=tmp_path, T=500, dt=2.0, val_fraction=0.0)
    assert fine[0][0].shape == (500, 700) and fine[0][0][2, 0] == 1 and fine[0][0][5, 699] == 1
    assert fine[0][0].sum() == 6


def test_collate_and_dataloader(tmp_path: Path) -> None:
    _shd_files(tmp_path)
    ds = build_dataset("shd", "train", root=tmp_path, T=20, val_fraction=0.0, clamp=True)
    x, y = next(iter(DataLoader(ds, batch_size=3, collate_fn=time_major_collate)))
    assert x.shape == (20, 3, 700) and y.tolist() == [4, 19, 0] and y.dtype == torch.long
    assert x[0, 0, 0] == 1  # clamped
    assert torch.equal(x[:, 1], ds[1][0])


def test_validation_split_is_disjoint_and_seeded(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 40
    times = [np.sort(rng.uniform(0, 0.5, 5)) for _ in range(n)]
    units = [np.full(5, i) for i in range(n)]  # unit id = sample index, to identify samples
    write_shd_file(tmp_path / "shd_train.h5", times, units, [i % 20 for i in range(n)])

    def ids(ds: torch.utils.data.Dataset) -> set[int]:
        return {int(ds[i][0].sum(0).argmax()) for i in range(len(ds))}

    train = build_dataset("shd", "train", root=tmp_path, val_fraction=0.25, val_seed=3)
    val = build_dataset("shd", "val", root=tmp_path, val_fraction=0.25, val_seed=3)
    assert len(train) == 30 and len(val) == 10
    assert ids(train).isdisjoint(ids(val)) and ids(train) | ids(val) == set(range(n))
    assert ids(build_dataset("shd", "val", root=tmp_path, val_fraction=0.25, val_seed=3)) == ids(val)
    assert ids(build_dataset("shd", "val", root=tmp_path, val_fraction=0.25, val_seed=4)) != ids(val)


def test_cache_is_reused_and_keyed_by_binning_parameters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _shd_files(tmp_path)
    first = build_dataset("shd", "train", root=tmp_path, T=50, val_fraction=0.0, cache=True)
    files = sorted((tmp_path / "cache").glob("*.npz"))
    assert len(files) == 1
    # a second build must come from the cache: make the reader fail
    import sjframe.data.shd as shd

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("read the file despite the cache")

    monkeypatch.setattr(shd, "read_shd_frames", fail)
    again = build_dataset("shd", "train", root=tmp_path, T=50, T_empty=3, val_fraction=0.0, cache=True)
    assert torch.equal(again[0][0][:50], first[0][0]) and again[0][0].shape == (53, 700)
    # other binning parameters: another cache entry (so the reader runs)
    with pytest.raises(AssertionError, match="despite the cache"):
        build_dataset("shd", "train", root=tmp_path, T=50, dt=5.0, val_fraction=0.0, cache=True)
    # a corrupt cache file is rebuilt from the data file
    monkeypatch.undo()
    files[0].write_bytes(b"garbage")
    rebuilt = build_dataset("shd", "train", root=tmp_path, T=50, val_fraction=0.0, cache=True, cache_dir=tmp_path / "cache")
    assert torch.equal(rebuilt[0][0], first[0][0]) and files[0].stat().st_size > 100


def test_spoken_digits_uses_the_shd_reader(tmp_path: Path) -> None:
    times, units = [np.array([0.01, 0.02])] * 4, [np.array([1, 2])] * 4
    write_shd_file(tmp_path / "spoken_digits_small_train.h5", times, units, [0, 1, 2, 9])
    write_shd_file(tmp_path / "spoken_digits_small_test.h5", [np.array([0.05])], [np.array([3])], [5])
    ds = build_dataset("spoken_digits", "test", root=tmp_path, variant="small", num_classes=10)
    assert len(ds) == 1 and ds.num_classes == 10 and ds[0][1] == 5 and ds[0][0][5, 3] == 1
    inferred = build_dataset("spoken_digits", "train", root=tmp_path, variant="small", val_fraction=0.0)
    assert inferred.num_classes == 10
    with pytest.raises(FileNotFoundError, match="spoken_digits_test.h5"):
        build_dataset("spoken_digits", "test", root=tmp_path)
    # a generated version with its own name (e.g. the noisy one) is found by its variant name
    write_shd_file(tmp_path / "spoken_digits_noisy_test.h5", [np.array([0.07])], [np.array([4])], [7])
    noisy = build_dataset("spoken_digits", "test", root=tmp_path, variant="noisy", num_classes=10)
    assert len(noisy) == 1 and noisy[0][1] == 7 and noisy[0][0][7, 4] == 1
    with pytest.raises(FileNotFoundError, match="spoken_digits_other_test.h5"):
        build_dataset("spoken_digits", "test", root=tmp_path, variant="other")
    for bad in ("../x", "", "a b", 3):
        with pytest.raises(ValueError, match="variant must be"):
            build_dataset("spoken_digits", "test", root=tmp_path, variant=bad)


def test_ntidigits_reader(tmp_path: Path) -> None:
    train = {
        "man-a-o": (np.array([1_000_000, 1_004_999, 1_005_000, 2_300_000], dtype=np.uint32), np.array([0, 0, 63, 5]), "o"),
        "man-a-z": (np.array([500, 900]), np.array([7, 8]), "z"),
        "man-a-1o": (np.array([10, 20]), np.array([1, 1]), "1o"),  # two digits: skipped
        "man-b-7": (np.array([], dtype=np.uint32), np.array([], dtype=np.uint8), "7"),
    }
    test = {"woman-c-3": (np.array([0, 10_000]), np.array([2, 3]), "3")}
    write_ntidigits_file(tmp_path / "n-tidigits-single.hdf5", train, test)
    ds = build_dataset("ntidigits", "train", root=tmp_path, T=250, dt=5.0, val_fraction=0.0)
    assert len(ds) == 3 and ds.input_shape == (64,) and ds.num_classes == 11
    x, y = ds[0]
    assert y == 10 and x.shape == (250, 64)
    # shifted to the first event (1 s): 0 and 4.999 ms in bin 0, 5 ms in bin 1; 1.3 s after the start is outside
    assert x[0, 0] == 2 and x[1, 63] == 1 and x.sum() == 3
    assert ds[1][1] == 0 and ds[1][0][0, 7] == 1 and ds[1][0][0, 8] == 1
    assert ds[2][1] == 7 and ds[2][0].sum() == 0
    t = build_dataset("ntidigits", "test", root=tmp_path, T=10, dt=5.0)
    assert len(t) == 1 and t[0][1] == 3 and t[0][0][2, 3] == 1 and t[0][0].shape == (10, 64)


def test_dvsgesture_reader(tmp_path: Path) -> None:
    t0 = 7_000_000
    samples = [
        # (time us, [x, y, p], label 1-based)
        (np.array([t0, t0 + 9_999, t0 + 10_000, t0 + 1_199_999, t0 + 1_200_000]),
         np.array([[0, 0, 0], [3, 3, 0], [127, 127, 1], [8, 4, 1], [1, 1, 1]]), 1),
        (np.array([100, 200]), np.array([[4, 0, 1], [5, 1, 1]]), 10),
        (np.array([100]), np.array([[4, 0, 1]]), 11),  # "other": dropped
    ]
    write_dvs_file(tmp_path / "DVS-Gesture-train10.hdf5", samples, group="train")
    write_dvs_file(tmp_path / "DVS-Gesture-test10.hdf5", samples[:2], group="test")
    ds = build_dataset("dvsgesture", "train", root=tmp_path, T=120, T_empty=40, dt=10.0, val_fraction=0.0)
    assert len(ds) == 2 and ds.input_shape == (2, 32, 32) and ds.num_classes == 10
    x, y = ds[0]
    assert x.shape == (160, 2, 32, 32) and y == 0
    assert x[0, 0, 0, 0] == 2 and x[1, 1, 31, 31] == 1 and x[119, 1, 1, 2] == 1 and x.sum() == 4
    assert ds[1][1] == 9 and ds[1][0][0, 1, 0, 1] == 2
    full = build_dataset("dvsgesture", "test", root=tmp_path, T=250, dt=10.0, downsample=1)
    assert full.input_shape == (2, 128, 128) and full[0][0].sum() == 5 and full[0][0][120, 1, 1, 1] == 1


def test_dvsplane_reader(tmp_path: Path) -> None:
    samples = [
        # shifted to the first event (50 us): 200_050 us is 200 ms later, outside T * dt = 200 ms
        (np.array([50, 2_050, 199_999, 200_050]), np.array([[303, 239, 1], [0, 0, 0], [4, 8, 0], [0, 0, 0]]), 3),
        (np.array([0]), np.array([[10, 20, 1]]), 0),
    ]
    write_dvs_file(tmp_path / "DVSPlane-train.hdf5", samples, group=None, data_dtype="uint16")
    write_dvs_file(tmp_path / "DVSPlane-test.hdf5", samples, group=None, data_dtype="uint16")
    ds = build_dataset("dvsplane", "test", root=tmp_path)
    assert ds.input_shape == (2, 60, 76) and ds.num_classes == 4 and ds.dt_ms == 2.0 and len(ds) == 2
    x, y = ds[0]
    assert x.shape == (100, 2, 60, 76) and y == 3
    assert x[0, 1, 59, 75] == 1 and x[1, 0, 0, 0] == 1 and x[99, 0, 2, 1] == 1 and x.sum() == 3


def test_nmnist_convert_and_read(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    events = {
        ("Train", 3, "00001.bin"): (
            np.array([0, 33, 5]), np.array([0, 33, 7]), np.array([0, 1, 1]), np.array([0, 999, 8_388_607])
        ),
        ("Train", 0, "00002.bin"): (np.array([1]), np.array([2]), np.array([1]), np.array([299_999])),
        ("Test", 9, "00003.bin"): (np.array([2, 2]), np.array([2, 2]), np.array([0, 1]), np.array([1000, 1000])),
    }
    for (folder, digit, name), ev in events.items():
        write_nmnist_bin(raw / folder / str(digit) / name, *ev)
    x, y, p, t = read_nmnist_bin(raw / "Train" / "3" / "00001.bin")
    assert x.tolist() == [0, 33, 5] and y.tolist() == [0, 33, 7] and p.tolist() == [0, 1, 1]
    assert t.tolist() == [0, 999, 8_388_607]  # 23-bit time
    out = convert_nmnist(raw / "Train", tmp_path / "nmnist_train.h5", progress=False)
    convert_nmnist(raw / "Test", tmp_path / "nmnist_test.h5", progress=False)
    with h5py.File(out) as f:
        assert f["labels"][()].tolist() == [0, 3]  # digit folders in order
        assert f["spikes/units"][1].tolist() == [0, 33 + 34 * 33 + 1156, 5 + 34 * 7 + 1156]
        assert f["extra/files"][0] == b"0/00002.bin"
    ds = build_dataset("nmnist", "train", root=tmp_path, val_fraction=0.0)
    assert ds.input_shape == (1156,) and len(ds) == 2 and ds.dt_ms == 1.0
    x0, y0 = ds[0]
    assert y0 == 0 and x0.shape == (300, 1156) and x0[299, 1 + 34 * 2] == 1
    x1, y1 = ds[1]
    # bin 0: (0, 0) and (33, 33) (polarity folded); the event at 8.39 s is outside the 300 ms window
    assert y1 == 3 and x1[0, 0] == 1 and x1[0, 33 + 34 * 33] == 1 and x1.sum() == 2
    split = build_dataset("nmnist", "test", root=tmp_path, polarity="split", flatten=False)
    xs, ys = split[0]
    assert xs.shape == (300, 2, 34, 34) and ys == 9 and xs[1, 0, 2, 2] == 1 and xs[1, 1, 2, 2] == 1
    folded = build_dataset("nmnist", "test", root=tmp_path, flatten=False)
    assert folded.input_shape == (1, 34, 34) and folded[0][0][1, 0, 2, 2] == 2


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_arrays_and_encodings(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = {split: rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for split, n in (("train", 20), ("test", 5))}
    images["test"][0] = 0
    images["test"][0, 0, :4] = [255, 128, 51, 52]  # 51/255 = 0.2 exactly: no spike
    labels = {"train": np.arange(20) % 10, "test": np.array([7, 1, 2, 3, 4])}
    write_mnist_files(tmp_path, "fashion", images, labels, compress=compress)
    imgs, labs = load_mnist_arrays(tmp_path, "test", kind="fashion")
    assert imgs.dtype == np.uint8 and imgs.shape == (5, 28, 28) and labs.dtype == np.int64
    assert np.array_equal(imgs, images["test"]) and labs.tolist() == [7, 1, 2, 3, 4]

    lat = build_dataset("fashion_mnist", "test", root=tmp_path)
    x, y = lat[0]
    assert x.shape == (100, 784) and y == 7 and lat.dt_ms == 1.0
    # white pixel: floor(20 ln(1 / 0.8)) = 4; 128/255: floor(20 ln(x / (x - 0.2)))
    v = 128 / 255
    assert x[4, 0] == 1 and x[int(np.floor(20 * np.log(v / (v - 0.2)))), 1] == 1
    assert x[:, 2].sum() == 0  # at the threshold: silent
    s52 = int(np.floor(20 * np.log((52 / 255) / (52 / 255 - 0.2))))
    assert s52 == 79 and x[s52, 3] == 1 and x.sum() == 3
    short = build_dataset("fashion_mnist", "test", root=tmp_path, T=70)[0][0]
    assert short.shape == (70, 784) and short[:, 3].sum() == 0 and short.sum() == 2  # fires after T: dropped

    static = build_dataset("fashion_mnist", "train", root=tmp_path, encoding="static", T=50, T_empty=2, val_fraction=0.2)
    assert len(static) == 16 and static.input_shape == (1, 28, 28) and static.dt_ms is None
    xs, _ = static[0]
    assert xs.shape == (52, 1, 28, 28) and torch.equal(xs[0], xs[49]) and xs[50:].sum() == 0
    assert float(xs.max()) <= 1.0
    raw = build_dataset("fashion_mnist", "test", root=tmp_path, encoding="raw")
    assert raw[0][0].shape == (1, 28, 28) and not raw.time_major and raw[0][0][0, 0, 0] == 1.0


def test_latency_steps_formula() -> None:
    x = torch.tensor([0.0, 0.2, 0.2001, 0.5, 1.0], dtype=torch.float64)
    steps = latency_steps(x)
    assert latency_steps(x.float())[1] == -1  # float32 0.2 is compared in float32: no spike
    assert steps[0] == -1 and steps[1] == -1
    assert steps[3] == int(np.floor(20 * np.log(0.5 / 0.3))) and steps[4] == 4
    assert steps[2] > 100


@pytest.mark.parametrize("name", sorted(set(DATASETS) - {"yinyang"}))
def test_every_registered_reader_on_random_files(tmp_path: Path, name: str) -> None:
    random_dataset_files(name, tmp_path, n_train=10, n_test=4, events=50)
    options = {"num_classes": 10} if name == "spoken_digits" else {}
    for split, n in (("train", 9), ("val", 1), ("test", 4)):
        ds = build_dataset(name, split, root=tmp_path, **options)
        assert len(ds) == n
        x, y = ds[0]
        assert x.dtype == torch.float32 and tuple(x.shape[1:]) == ds.input_shape and 0 <= y < ds.num_classes


def test_mnist_download_goes_through_torchvision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            split = "train" if train else "test"
            write_mnist_files(Path(root), "mnist", {split: np.full((3, 28, 28), 9, np.uint8)}, {split: np.array([1, 2, 3])})

    class Offline:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise OSError("network unreachable")

    # a stand-in torchvision (the real import is slow and the test must not touch the network)
    fake = types.ModuleType("torchvision")
    fake.datasets = types.SimpleNamespace(MNIST=FakeMNIST, FashionMNIST=Offline)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist_arrays(tmp_path, "test")  # no download unless asked
    assert calls == []
    images, labels = load_mnist_arrays(tmp_path, "test", download=True)
    assert calls == [(str(tmp_path), False, True)] and images.shape == (3, 28, 28) and labels.tolist() == [1, 2, 3]
    with pytest.raises(RuntimeError, match="downloading fashion into .*FashionMNIST/raw failed .*network unreachable"):
        build_dataset("fashion_mnist", "train", root=tmp_path, download=True)
