"""Method ``exact_time``: config validation, smoke training, exact resume, savepoints, evaluation, CLI, MNIST files."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sjframe.core.cli_errors import CheckpointError
from sjframe.core.config import ConfigError
from sjframe.core.rundir import RunDir
from sjframe.methods import get_method
from sjframe.methods.base import Method
from sjframe.methods.exact_time.method import METHOD as et
from sjframe.methods.exact_time.settings import ExactTimeConfig

ROOT = Path(__file__).resolve().parents[1]


def _small_cfg(**train: object) -> dict:
    """The Yin-Yang setup, shrunk: 600 training samples, 24 hidden neurons, batch 50."""
    cfg = yaml.safe_load((ROOT / "configs" / "exact_yinyang.yaml").read_text())
    cfg["exact_time"]["data"]["max_train_samples"] = 600
    cfg["exact_time"]["net"]["layer_sizes"] = [24, 3]
    base = {"epochs": 2, "batch_size": 50, "save_every": 1, "threads": 1, "plots": False}
    cfg["exact_time"]["train"].update({**base, **train})
    return cfg


def test_contract_and_config_validation() -> None:
    assert get_method("exact_time") is et and isinstance(et, Method) and et.settings is ExactTimeConfig
    assert et.capabilities.keeps_savepoints and not et.capabilities.supports_distributed
    c = et.parse({"method": "exact_time"})
    assert c.net.layer_sizes == (120, 3) and c.train.max_silent_fraction == (0.3, 0.0)
    with pytest.raises(ConfigError, match="unknown key"):
        et.parse({"method": "exact_time", "exact_time": {"train": {"epoch": 3}}})
    with pytest.raises(ConfigError, match="one entry per layer"):
        et.parse({"method": "exact_time", "exact_time": {"net": {"layer_sizes": [10, 20, 3]}}})
    with pytest.raises(ConfigError, match="expected a number"):
        et.parse({"method": "exact_time", "exact_time": {"train": {"lr": "fast"}}})
    with pytest.raises(ConfigError, match="method"):
        et.parse({"method": "surrogate"})
    for name in ("exact_yinyang", "exact_mnist16", "exact_mnist"):  # the shipped configs parse
        et.parse(yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text()))


def test_smoke_training_writes_a_complete_run(tmp_path: Path) -> None:
    run = RunDir.create("exact", root=tmp_path)
    summary = et.train(_small_cfg(epochs=4, plots=True), run)
    records = [r for r in run.read_log() if r.get("event") == "epoch"]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r["val_loss"]) for r in records)
    assert records[-1]["val_loss"] < records[0]["val_loss"]  # it learns
    assert summary["test_acc_final"] > 0.5  # chance is 1/3
    saved = yaml.safe_load(run.config_path.read_text())
    assert saved["exact_time"]["train"]["bump_value"] == 0.0005  # resolved config with defaults
    names = {p.name for p in run.checkpoints.iterdir()}
    assert {"last.pt", "best.pt", "epoch_0.pt", "epoch_1.pt", "epoch_4.pt"} <= names
    plots = {p.name for p in run.plots.iterdir()}
    assert {"spike_times_per_class_final.png", "accuracy_curves.png", "weights_final.png"} <= plots


def test_resume_continues_exactly_and_from_a_savepoint(tmp_path: Path) -> None:
    cfg = _small_cfg(input_noise_std=0.1)  # noise exercises the per-epoch generators too
    straight = RunDir.create("straight", root=tmp_path)
    et.train(cfg, straight)
    cfg1 = _small_cfg(input_noise_std=0.1, epochs=1)
    split = RunDir.create("split", root=tmp_path)
    et.train(cfg1, split)
    et.train(cfg, split, resume=True)
    a = straight.load_checkpoint("last.pt")
    b = split.load_checkpoint("last.pt")
    assert a["epoch"] == b["epoch"] == 2
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["bumper"] == b["bumper"]
    # continue from the savepoint of epoch 1 again: same result once more
    et.train(cfg, split, resume_epoch=1)
    c = split.load_checkpoint("last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], c["model"][k]), k
    assert any(r.get("event") == "resume" and r["checkpoint"] == "epoch_1.pt" for r in split.read_log())


def test_evaluate_reports_and_plots(tmp_path: Path) -> None:
    run = RunDir.create("ev", root=tmp_path)
    cfg = _small_cfg(epochs=1)
    et.train(cfg, run)
    report = et.evaluate(run.read_config(), run, "last")
    assert 0.0 <= report["test_acc"] <= 1.0 and report["metrics"]["acc_fs"] == pytest.approx(100 * report["test_acc"])
    assert report["epoch"] == 1 and "test accuracy" in report["table"]
    assert (run.path / "reports" / "exact_time_last.json").is_file()
    assert (run.plots / "spike_times_per_class_last.png").is_file()
    # the same checkpoint given as a file path
    by_path = et.evaluate(run.read_config(), run, str(run.checkpoints / "last.pt"), plots=False)
    assert by_path["test_acc"] == report["test_acc"]
    with pytest.raises(FileNotFoundError):
        et.evaluate(run.read_config(), run, "epoch_99")
    (run.checkpoints / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="could not be read"):
        et.evaluate(run.read_config(), run, "broken")
    other = run.read_config()
    other["exact_time"]["net"]["layer_sizes"] = [30, 3]
    with pytest.raises(CheckpointError, match="does not fit"):
        et.evaluate(other, run, "last")


def _entry_point(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_sjframe_{name}_py", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_train_test_continue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The method runs through train.py / test.py, with typed overrides (seed 001's verbs: train, inference, continue)."""
    train_py, test_py = _entry_point("train"), _entry_point("test")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(_small_cfg(epochs=1)))
    runs = tmp_path / "runs"
    assert train_py.main([str(cfg_path), "--runs_root", str(runs), "--exact_time.data.max_train_samples", "150"]) == 0
    (run_dir,) = list(runs.iterdir())
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["exact_time"]["data"]["max_train_samples"] == 150
    capsys.readouterr()
    assert test_py.main([str(run_dir), "--checkpoint", "last"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and (run_dir / "reports" / "exact_time_last.json").is_file()
    assert (run_dir / "reports" / "exact_time_last.md").is_file()
    assert train_py.main(["--resume", str(run_dir), "--exact_time.train.epochs", "2"]) == 0
    assert RunDir.open(run_dir).load_checkpoint("last.pt")["epoch"] == 2
    assert train_py.main([str(cfg_path), "--runs_root", str(runs), "--exact_time.train.nope", "1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err
    assert train_py.main([str(cfg_path), "--runs_root", str(runs), "--exact_time.train.epochs", "two"]) == 2
    assert "expected an integer" in capsys.readouterr().err


# ------------------------------------------------------------------------------ MNIST on tiny IDX files
def _write_idx(path: Path, array: np.ndarray, type_code: int) -> None:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(">u1").tobytes()))


def _tiny_mnist(root: Path, n_train: int = 60, n_test: int = 20) -> None:
    """Digits 0..9 as bright bars at label-dependent rows (learnable), in torchvision's layout."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = (rng.random((n, 28, 28)) * 30).astype(np.uint8)
        for i, y in enumerate(labels):
            images[i, 4 + 2 * y: 6 + 2 * y, 6:22] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", images, 0x08)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8), 0x08)


@pytest.mark.parametrize("name", ["exact_mnist16", "exact_mnist"])
def test_mnist_configs_train_on_tiny_idx_files(tmp_path: Path, name: str) -> None:
    pytest.importorskip("sjframe.data.mnist")
    _tiny_mnist(tmp_path / "data")
    cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    sec = cfg["exact_time"]
    sec["data"].update({"root": str(tmp_path / "data"), "n_val": 20})
    sec["net"]["layer_sizes"] = [16, 10]
    sec["train"].update({"epochs": 1, "batch_size": 20, "batch_size_eval": 20, "threads": 1, "save_every": 0,
                         "plots": False})
    run = RunDir.create(name, root=tmp_path / "runs")
    summary = et.train(cfg, run)
    assert 0.0 <= summary["test_acc_final"] <= 1.0
    report = et.evaluate(run.read_config(), run, "last", plots=False)
    assert report["test_acc"] == summary["test_acc_final"]


def test_mnist_missing_files_error(tmp_path: Path) -> None:
    pytest.importorskip("sjframe.data.mnist")
    cfg = yaml.safe_load((ROOT / "configs" / "exact_mnist16.yaml").read_text())
    cfg["exact_time"]["data"]["root"] = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="IDX"):
        et.train(cfg, RunDir.create("missing", root=tmp_path))


def test_train_py_resumes_from_a_savepoint_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_py = _entry_point("train")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(_small_cfg(epochs=2)))
    runs = tmp_path / "runs"
    assert train_py.main([str(cfg_path), "--runs_root", str(runs)]) == 0
    (run_dir,) = list(runs.iterdir())
    run = RunDir.open(run_dir)
    straight = run.load_checkpoint("last.pt")
    assert train_py.main(["--resume", str(run_dir), "--resume_epoch", "1"]) == 0
    again = run.load_checkpoint("last.pt")
    assert again["epoch"] == 2 and all(torch.equal(straight["model"][k], again["model"][k]) for k in straight["model"])
    assert any(r.get("event") == "resume" and r["checkpoint"] == "epoch_1.pt" for r in run.read_log())
    capsys.readouterr()
    assert train_py.main(["--resume", str(run_dir), "--resume_epoch", "7"]) == 1  # no such savepoint
    assert "epoch_7.pt does not exist" in capsys.readouterr().err
    assert train_py.main([str(cfg_path), "--resume_epoch", "1"]) == 2  # needs --resume
    assert "--resume_epoch needs --resume" in capsys.readouterr().err
    assert train_py.main(["--resume", str(run_dir), "--resume_epoch", "one"]) == 2
    assert "one epoch number" in capsys.readouterr().err
