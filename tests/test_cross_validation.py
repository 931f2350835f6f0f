"""Cross-validation folds of the training file (val_split {folds, fold}) and scripts/cross_validate.py (issue 17)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sjframe.data import build_dataset
from sjframe.data.common import ValSplit, fold_indices, resolve_val_split
from tests.test_data_speaker_split import _ids, _write

ROOT = Path(__file__).resolve().parents[1]


def test_speaker_folds_partition_the_file_without_sharing_a_speaker() -> None:
    rng = np.random.default_rng(3)
    speakers = rng.integers(0, 23, 400)  # 23 speakers of uneven size
    vals = [fold_indices(400, "val", 5, f, seed=7, speakers=speakers) for f in range(5)]
    joined = np.concatenate(vals)
    assert sorted(joined.tolist()) == list(range(400))  # every sample validated exactly once
    owners = [set(speakers[v].tolist()) for v in vals]
    for i in range(5):
        for j in range(i + 1, 5):
            assert owners[i].isdisjoint(owners[j])
        train = fold_indices(400, "train", 5, i, seed=7, speakers=speakers)
        assert set(train.tolist()) == set(range(400)) - set(vals[i].tolist())
        assert set(speakers[train].tolist()).isdisjoint(owners[i])
    # greedy dealing to the smallest fold: sizes differ by at most the largest speaker's sample count
    sizes = [len(v) for v in vals]
    assert max(sizes) - min(sizes) <= np.bincount(speakers).max()
    # deterministic for a seed, different for another
    assert all(np.array_equal(v, fold_indices(400, "val", 5, f, 7, speakers)) for f, v in enumerate(vals))
    assert not all(np.array_equal(v, fold_indices(400, "val", 5, f, 8, speakers)) for f, v in enumerate(vals))


def test_random_folds_are_near_equal_parts() -> None:
    vals = [fold_indices(103, "val", 4, f, seed=0) for f in range(4)]
    assert sorted(np.concatenate(vals).tolist()) == list(range(103))
    assert sorted(len(v) for v in vals) == [25, 26, 26, 26]


@pytest.mark.parametrize(("raw", "message"), [
    ({"folds": 4, "fold": 4}, "fold must be in 0..3"),
    ({"folds": 1}, "folds must be >= 2"),
    ({"fold": 1}, "needs val_split.folds"),
    ({"folds": 3, "fraction": 0.2}, "either val_split.fraction or val_split.folds"),
    ({"folds": 3, "fold": -1}, "fold must be >= 0"),
])
def test_bad_fold_options_are_named(raw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_val_split({"val_split": raw})


def test_too_few_speakers_for_the_folds() -> None:
    with pytest.raises(ValueError, match="3 speaker-disjoint folds need at least 3 speakers, the file has 2"):
        fold_indices(10, "val", 3, 0, 0, np.array([1, 1, 1, 2, 2, 2, 2, 1, 1, 2]))


def test_folds_through_the_shd_reader(tmp_path: Path) -> None:
    speakers = np.repeat(np.arange(12), 10)  # 12 speakers x 10 samples
    _write(tmp_path, 120, speakers)
    assert resolve_val_split({"val_split": {"folds": 3, "fold": 2}}) == ValSplit(1 / 3, None, 0, 3, 2)
    seen: set[int] = set()
    for f in range(3):
        opts = {"root": tmp_path, "T": 200, "dt": 1.0, "val_split": {"folds": 3, "fold": f}}
        va, tr = _ids(build_dataset("shd", "val", **opts)), _ids(build_dataset("shd", "train", **opts))
        assert va.isdisjoint(tr) and va | tr == set(range(120)) and len(va) == 40  # 4 whole speakers each
        assert set(speakers[sorted(va)]).isdisjoint(speakers[sorted(tr)])
        seen |= va
    assert seen == set(range(120))


def test_cross_validate_script_ranks_two_configs(tmp_path: Path) -> None:
    """Two spoken-digit configs (different hidden sizes), 2 speaker folds, 2 epochs each: every run's score is the
    mean of its last validation values in metrics.jsonl, and the table compares the configs fold by fold."""
    base = (ROOT / "configs" / "spoken_digits_adlif_fs_aug.yaml").read_text()
    cfgs = []
    for name in ("cv_small", "cv_tiny"):
        path = tmp_path / f"{name}.yaml"
        path.write_text(base.replace("name: spoken_digits_adlif_fs_aug", f"name: {name}")
                        .replace("root: datasets", f"root: {ROOT / 'datasets'}"))
        cfgs.append(path)
    out = tmp_path / "cv"
    cmd = [sys.executable, str(ROOT / "scripts" / "cross_validate.py"), *map(str, cfgs), "--folds", "2",
           "--last", "2", "--out", str(out), "--jobs", "1", "--threads", "1", "--",
           "--train.epochs", "2", "--train.max_batches", "2", "--model.hidden_sizes", "16",
           "--train.progress", "false", "--eval.plots", "false", "--runs_root", str(tmp_path / "runs")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((out / "cv.json").read_text())
    assert len(result["runs"]) == 4 and not result["failed"]
    for run in result["runs"]:
        vals = [r["val_acc_fs"] for r in map(json.loads, (Path(run["run_dir"]) / "metrics.jsonl").read_text()
                                              .splitlines()) if "event" not in r and isinstance(r.get("epoch"), int)]
        assert run["metric"] == "acc_fs" and run["val"] == vals and len(vals) == 2
        assert run["score"] == pytest.approx(sum(vals) / 2) and run["best"] == max(vals)
        assert f"fold: {run['fold']}" in run["command"] and "folds: 2" in run["command"]
    md = (out / "cv.md").read_text()
    assert md.count("| `") == 2 and "paired p" in md and "cv_dir:" in proc.stdout


def test_cross_validate_rejects_overrides_it_sets(tmp_path: Path) -> None:
    cmd = [sys.executable, str(ROOT / "scripts" / "cross_validate.py"), str(ROOT / "configs" / "default.yaml"),
           "--folds", "3", "--out", str(tmp_path / "cv"), "--", "--data.val_split", "{fraction: 0.2}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "cannot set" in proc.stderr
    assert not (tmp_path / "cv").exists()
