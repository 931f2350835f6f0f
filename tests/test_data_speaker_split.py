"""Speaker-disjoint validation split (issue 16, part 3): val_split {fraction, by, seed} on SHD-layout files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from sjframe.data import build_dataset
from sjframe.data.common import ValSplit, resolve_val_split, speaker_split_indices, split_indices
from sjframe.data.shd import read_shd_speakers
from sjframe.data.writers import write_shd_file

DATASETS = Path(__file__).resolve().parent.parent / "datasets"


def _write(root: Path, n: int, speakers: np.ndarray | None, name: str = "shd", seed: int = 0) -> np.ndarray:
    """An SHD-layout train and test file; sample i has one event at ``i`` ms on unit ``i % 700`` (its id)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 20, n)
    for split in ("train", "test"):
        path = write_shd_file(root / f"{name}_{split}.h5", [np.array([i * 1e-3], np.float32) for i in range(n)],
                              [np.array([i % 700]) for i in range(n)], labels.tolist())
        if speakers is not None:
            with h5py.File(path, "a") as f:
                f.create_group("extra").create_dataset("speaker", data=np.asarray(speakers, dtype=np.uint16))
    return labels


def _ids(ds) -> set[int]:
    """The sample ids (the unit of each sample's single event, at its first step)."""
    return {int(ds[i][0].sum(dim=0).argmax()) for i in range(len(ds))}


def test_speaker_split_no_speaker_in_both(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    speakers = rng.integers(100, 130, 300)  # 30 speakers of uneven size
    _write(tmp_path, 300, speakers)
    opts = {"root": tmp_path, "T": 400, "dt": 1.0}
    train = build_dataset("shd", "train", **opts)  # default: by speaker, fraction 0.1
    val = build_dataset("shd", "val", **opts)
    tr, va = _ids(train), _ids(val)
    assert tr.isdisjoint(va) and tr | va == set(range(300))
    assert set(speakers[sorted(tr)]).isdisjoint(speakers[sorted(va)])
    assert abs(len(va) / 300 - 0.1) < 0.04  # whole speakers of ~10 samples: within one speaker's share
    explicit = build_dataset("shd", "val", val_split={"fraction": 0.1, "by": "speaker", "seed": 0}, **opts)
    assert _ids(explicit) == va
    other = build_dataset("shd", "val", val_split={"fraction": 0.1, "seed": 5}, **opts)
    assert _ids(other) != va
    bigger = _ids(build_dataset("shd", "val", val_split={"fraction": 0.3}, **opts))
    assert abs(len(bigger) / 300 - 0.3) < 0.04 and set(speakers[sorted(bigger)]).isdisjoint(speakers[sorted(_ids(
        build_dataset("shd", "train", val_split={"fraction": 0.3}, **opts)))])
    # by: random on a file with speakers is the old random split
    rnd = build_dataset("shd", "val", val_split={"fraction": 0.1, "by": "random", "seed": 3}, **opts)
    old = build_dataset("shd", "val", val_fraction=0.1, val_seed=3, **opts)
    assert _ids(rnd) == _ids(old) and len(rnd) == 30


def test_no_speakers_falls_back_to_random_or_raises(tmp_path: Path) -> None:
    _write(tmp_path, 40, None)
    opts = {"root": tmp_path, "T": 50, "dt": 1.0}
    assert read_shd_speakers(tmp_path / "shd_train.h5") is None
    auto = build_dataset("shd", "val", **opts)  # no speakers: random
    rnd = build_dataset("shd", "val", val_split={"by": "random"}, **opts)
    assert _ids(auto) == _ids(rnd) and len(rnd) == 4
    with pytest.raises(ValueError, match="no speaker ids"):
        build_dataset("shd", "train", val_split={"by": "speaker"}, **opts)


def test_spoken_digits_shipped_file_is_split_by_speaker() -> None:
    path = DATASETS / "spoken_digits_small_train.h5"
    speakers = read_shd_speakers(path)
    assert speakers is not None and len(speakers) == 220
    opts = {"root": str(DATASETS), "variant": "small", "num_classes": 10}
    train = build_dataset("spoken_digits", "train", **opts)
    val = build_dataset("spoken_digits", "val", **opts)
    assert len(train) + len(val) == 220 and abs(len(val) / 220 - 0.1) < 0.03
    keep_val = split_indices("val", 220, ValSplit(), speakers)
    keep_train = split_indices("train", 220, ValSplit(), speakers)
    assert set(speakers[keep_val]).isdisjoint(speakers[keep_train])
    assert len(keep_val) == len(val)


def test_rule_by_hand() -> None:
    # speakers 7 (4 samples), 8 (2), 9 (4); seed 0 shuffles the ids [7, 8, 9] to this order:
    speakers = np.array([7, 7, 8, 9, 9, 7, 9, 8, 7, 9])
    order = np.random.RandomState(0).permutation(3)
    counts = np.array([4, 2, 4])[order]
    # target 0.25 * 10 = 2.5: the k (1 or 2 speakers) whose count is closest
    k = 1 if abs(counts[0] - 2.5) <= abs(counts[0] + counts[1] - 2.5) else 2
    expected = set(np.array([7, 8, 9])[order[:k]])
    val = speaker_split_indices(speakers, "val", 0.25, 0)
    assert set(speakers[val]) == expected
    train = speaker_split_indices(speakers, "train", 0.25, 0)
    assert sorted(np.concatenate([val, train]).tolist()) == list(range(10))
    # fraction 0: all in train, val empty is an error; one speaker cannot be split
    assert speaker_split_indices(speakers, "train", 0.0, 0).tolist() == list(range(10))
    with pytest.raises(ValueError, match="empty"):
        speaker_split_indices(speakers, "val", 0.0, 0)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        speaker_split_indices(np.zeros(5, int), "val", 0.2, 0)
    # training always keeps a speaker, even for a large fraction
    assert len(set(speakers[speaker_split_indices(speakers, "train", 0.95, 0)])) >= 1


def test_option_resolution_and_errors(tmp_path: Path) -> None:
    assert resolve_val_split({}) == ValSplit(0.1, None, 0)
    assert resolve_val_split({"val_fraction": 0.2}) == ValSplit(0.2, "random", 0)
    assert resolve_val_split({"val_seed": 4}) == ValSplit(0.1, "random", 4)
    assert resolve_val_split({"val_split": {"fraction": 0.3, "by": "speaker", "seed": 2}}) == ValSplit(0.3, "speaker", 2)
    with pytest.raises(ValueError, match="not both"):
        resolve_val_split({"val_split": {"fraction": 0.1}, "val_fraction": 0.1})
    with pytest.raises(ValueError, match="unknown key"):
        resolve_val_split({"val_split": {"share": 0.1}})
    with pytest.raises(ValueError, match="val_split.by must be one of"):
        resolve_val_split({"val_split": {"by": "gender"}})
    with pytest.raises(ValueError, match=r"val_split.fraction must be in \[0, 1\)"):
        resolve_val_split({"val_split": {"fraction": 1.0}})
    with pytest.raises(ValueError, match="mapping"):
        resolve_val_split({"val_split": 0.1})
    _write(tmp_path, 20, np.arange(20) % 4)
    with pytest.raises(ValueError, match="val_split.by"):  # checked on the test split too
        build_dataset("shd", "test", root=tmp_path, val_split={"by": "gender"})
    with h5py.File(tmp_path / "shd_train.h5", "a") as f:
        del f["extra/speaker"]
        f["extra"].create_dataset("speaker", data=np.arange(3))
    with pytest.raises(ValueError, match="one id per sample"):
        build_dataset("shd", "train", root=tmp_path)
