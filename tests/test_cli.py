"""train.py / test.py end to end on a tiny config (subprocess), resume, the test window, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.support.entry_points import load_entry_point, write_tiny_shd_config

ROOT = Path(__file__).resolve().parents[1]


_load = load_entry_point


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    return write_tiny_shd_config(tmp_path_factory.mktemp("cli"), plots=True)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def _run_dir(stdout: str) -> Path:
    lines = [line for line in stdout.splitlines() if line.startswith("run_dir: ")]
    assert lines, stdout
    return Path(lines[-1].removeprefix("run_dir: "))


@pytest.mark.slow
def test_train_and_test_end_to_end(tiny_config, tmp_path):
    runs = tmp_path / "runs"
    done = _run("train.py", "--path_to_yaml", str(tiny_config), "--runs_root", str(runs), "--T_empty", "0",
                "--lr", "3e-3", "--FS", "0.5", "4", "60")
    assert done.returncode == 0, done.stderr
    run = _run_dir(done.stdout)
    assert run.parent == runs and run.name.startswith("tiny-")
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["T_empty"] == 0 and resolved["train"]["lr"] == 3e-3 and resolved["loss"]["A"] == 60
    assert {p.name for p in (run / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["epoch"] == 1 and "val_acc_fs" in records[0] and "val_acc_fr" in records[0]
    assert (run / "plots" / "training_curves.png").stat().st_size > 0

    # test.py evaluates on the window given on its command line, not the training window
    tested = _run("test.py", str(run), "--T", "14", "--T_empty", "1")
    assert tested.returncode == 0, tested.stderr
    assert "FS accuracy" in tested.stdout and "FR accuracy" in tested.stdout and "td50" in tested.stdout
    report = json.loads((run / "reports" / "test-best-T14-E1.json").read_text())
    assert (report["T"], report["T_empty"], report["metrics"]["T"]) == (14, 1, 15)
    assert report["metrics"]["n_samples"] == 8
    assert any((run / "plots" / "test-best-T14-E1").glob("raster-*.png"))


def test_resume_and_seed_style_test_flags(tiny_config, tmp_path, capsys):
    train, test = _load("train"), _load("test")
    assert train.main([str(tiny_config), "--runs_root", str(tmp_path)]) == 0
    run = _run_dir(capsys.readouterr().out)
    assert train.main(["--resume", str(run), "--epochs", "2"]) == 0
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 2
    assert [r["epoch"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    capsys.readouterr()
    assert train.main(["--resume", str(run), "--resume_epoch", "1"]) == 2  # the surrogate method keeps no savepoints
    assert "keeps no savepoints" in capsys.readouterr().err
    ckpt = run / "checkpoints" / "last.pt"
    assert test.main(["--load_pt_file", str(ckpt), "--T", "12", "--T_empty", "0", "--best_model",
                      "--test-batch-size", "3", "--eval.plots", "false"]) == 0
    assert "FS accuracy" in capsys.readouterr().out
    assert (run / "reports" / "test-last-T12-E0.json").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{cfg}", "--train.lrr", "1"], "unknown key 'lrr'"),
        (["{cfg}", "--epochs", "two"], "train.epochs: expected an integer"),
        (["{cfg}", "--model.neuron_type", "izh"], "neuron_type 'izh' unknown"),
        (["missing.yaml"], "missing.yaml does not exist"),
        ([], "give exactly one config file"),
    ],
)
def test_train_errors_are_clear(tiny_config, tmp_path, capsys, argv, message):
    train = _load("train")
    argv = [a.replace("{cfg}", str(tiny_config)) for a in argv] + ["--runs_root", str(tmp_path)]
    assert train.main(argv) != 0
    assert message in capsys.readouterr().err


def test_test_errors_are_clear(tmp_path, capsys):
    test = _load("test")
    assert test.main([str(tmp_path / "nowhere")]) == 2
    assert "neither a run directory nor a checkpoint" in capsys.readouterr().err
