"""Issue #16 in the engine and CLI: silent-output accounting through test.py, confusion matrices, TensorBoard,
the paper's protocol (``train.protocol: paper``) and ``data.val_split`` in the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import sjframe.data
import sjframe.methods.surrogate.engine
import sjframe.methods.surrogate.evaluation
from sjframe.core.config import ConfigError, apply_overrides, load_yaml, parse_cli
from sjframe.core.rundir import RunDir
from sjframe.data.writers import random_dataset_files
from sjframe.methods.surrogate.config import cli_options, config_to_dict, key_type, resolve_config
from sjframe.methods.surrogate.engine import Trainer
from sjframe.methods.surrogate.evaluation import PAPER_LABEL
from sjframe.models.base import ModelOutput
from tests.support.entry_points import load_entry_point

ROOT = Path(__file__).resolve().parents[1]


_load = load_entry_point


@pytest.fixture(scope="module")
def shd_root(tmp_path_factory) -> Path:
    return random_dataset_files("shd", tmp_path_factory.mktemp("shd"), n_train=24, n_test=8, events=200, seed=4)


def tiny(root: Path, **sections) -> dict:
    raw = {
        "threads": 1, "device": "cpu",
        "data": {"name": "shd", "root": str(root), "T": 6, "T_empty": 1, "dt": 100.0, "val_fraction": 0.25},
        "model": {"name": "fcnet", "hidden_sizes": [8],
                  "neuron1": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1},
                  "neuron2": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1}},
        "train": {"epochs": 1, "batch_size": 8, "test_batch_size": 8, "max_batches": 1, "progress": False},
        "loss": {"D": 2, "A": 50.0},
        "eval": {"raster_samples": 1, "plots": False},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


# ----------------------------------------------------------------------------- silent samples end to end
C, T = 3, 4
#: (label, first spike (neuron, 0-based step) or None = silent, neuron with the largest potential)
CASES = [
    (0, (0, 1), 0),     # correct by its first spike at step 1
    (1, (1, 0), 1),     # correct at step 0
    (2, (0, 2), 0),     # wrong: neuron 0 spikes
    (0, None, 0),       # silent; the paper's rule decodes the largest potential, neuron 0: right by acc_fs only
    (1, None, 2),       # silent; largest potential neuron 2: wrong either way
    (2, (2, 3), 2),     # correct at step 3
]


class _Replay(nn.Module):
    """A stand-in model whose output spikes and potentials are its input ``x [T, B, 2, C]``."""

    def forward(self, x: torch.Tensor) -> ModelOutput:
        spikes, h = x[:, :, 0].contiguous(), x[:, :, 1].contiguous()
        return ModelOutput(spikes=spikes, h=h, layer_spikes={"output": spikes})


class _Known(torch.utils.data.Dataset):
    input_shape, num_classes, dt_ms = (2, C), C, 10.0

    def __init__(self) -> None:
        self.items = []
        for label, spike, top in CASES:
            x = torch.zeros(T, 2, C)
            x[:, 1] = 0.1
            x[:, 1, top] = 0.5
            if spike is not None:
                neuron, step = spike
                x[step, 0, neuron] = 1.0
                x[step, 1, neuron] = 1.2
            self.items.append((x, label))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def test_known_silent_samples_flow_through_test_py(shd_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sjframe.data, "build_dataset", lambda name, split, **options: _Known())
    monkeypatch.setattr(sjframe.methods.surrogate.engine, "build_model", lambda *args, **kwargs: _Replay())
    monkeypatch.setattr(sjframe.methods.surrogate.evaluation, "build_model", lambda *args, **kwargs: _Replay())
    cfg = resolve_config(tiny(shd_root, data={"T": T, "T_empty": 0}, eval={"plots": True}))
    run = RunDir.create("silent", root=tmp_path)
    run.write_config(config_to_dict(cfg))
    run.save_checkpoint({"model": {}, "epoch": 3}, "best.pt")

    assert _load("test").main([str(run.path)]) == 0
    out = capsys.readouterr().out
    tag = f"test-best-T{T}-E0"
    report = json.loads((run.path / "reports" / f"{tag}.json").read_text())
    m = report["metrics"]
    assert m["n_samples"] == 6
    assert m["acc_fs"] == pytest.approx(100 * 4 / 6)          # cases 0, 1, 3 (silent, by potential), 5
    assert m["acc_fs_spike"] == pytest.approx(100 * 3 / 6)    # cases 0, 1, 5
    assert m["acc_fr"] == pytest.approx(100 * 3 / 6)
    assert m["silent_fraction"] == pytest.approx(2 / 6)
    assert m["curve_fs"] == pytest.approx([100 / 6, 200 / 6, 200 / 6, 300 / 6])  # decisions at steps 0, 1, 3
    # the table (report .txt and test.py's output)
    for text in ((run.path / "reports" / f"{tag}.txt").read_text(), out):
        assert "FS accuracy (paper's rule)" in text and "66.67 %" in text
        assert "FS accuracy (first spike only)  50.00 %" in text.replace("   ", "  ") or \
            "FS accuracy (first spike only): 50.00 %" in text
        assert "33.33 % (2 of 6 samples" in text
        assert "protocol: validated" in text
    assert "silent outputs: 33.33 %" in out and "FS accuracy (first spike only): 50.00 %" in out
    # confusion matrices: JSON with a silent column and PNG plots
    fs = json.loads((run.path / "reports" / f"{tag}-confusion_fs.json").read_text())
    assert fs["counts"] == [[1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0]] and fs["columns"][-1] == "silent"
    assert fs["accuracy"] == pytest.approx(50.0) and fs["silent_fraction"] == pytest.approx(2 / 6)
    fr = json.loads((run.path / "reports" / f"{tag}-confusion_fr.json").read_text())
    assert [row[-1] for row in fr["counts"]] == [1, 1, 0]
    for kind in ("fs", "fr"):
        assert (run.plots / tag / f"confusion_{kind}.png").stat().st_size > 0
        assert f"confusion ({kind.upper()}): {run.path / 'reports' / f'{tag}-confusion_{kind}.json'}" in out
    # the test record of metrics.jsonl: the new metrics, no curves, no matrices
    record = [r for r in run.read_log() if r.get("event") == "test"][-1]
    assert record["acc_fs_spike"] == pytest.approx(50.0) and record["silent_fraction"] == pytest.approx(2 / 6)
    assert not any(k.startswith(("curve_", "confusion_")) for k in record)


# ----------------------------------------------------------------------------- epoch records, TensorBoard
def _scalars(folder: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: dict[str, list[int]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            steps.setdefault(tag, []).extend(e.step for e in acc.Scalars(tag))
    return steps


def test_tensorboard_curves_and_new_epoch_metrics(shd_root, tmp_path):
    run = RunDir.create("tb", root=tmp_path)
    Trainer(resolve_config(tiny(shd_root, train={"tensorboard": True})), run).fit()
    record = [r for r in run.read_log() if r.get("epoch") == 1][0]
    for key in ("train_acc_fs_spike", "train_silent_fraction", "val_acc_fs_spike", "val_silent_fraction"):
        assert key in record
    assert 0.0 <= record["val_silent_fraction"] <= 1.0
    tags = _scalars(run.path / "tensorboard")
    expected = {"train/loss", "val/loss", "train/acc_fs", "val/acc_fs", "train/acc_fr", "val/acc_fr",
                "train/acc_fs_spike", "val/acc_fs_spike", "train/silent_fraction", "val/silent_fraction",
                "train/n_s", "val/n_s", "lr"}
    assert expected <= set(tags), expected - set(tags)
    assert tags["train/loss"] == [1]
    # a resume appends epoch 2 to the same folder
    Trainer(resolve_config(tiny(shd_root, train={"tensorboard": True, "epochs": 2})), run).fit(resume=True)
    assert sorted(_scalars(run.path / "tensorboard")["val/acc_fs_spike"]) == [1, 2]


def test_tensorboard_is_off_by_default(shd_root, tmp_path):
    run = RunDir.create("notb", root=tmp_path)
    Trainer(resolve_config(tiny(shd_root)), run).fit()
    assert not (run.path / "tensorboard").exists()


# ----------------------------------------------------------------------------- the paper's protocol
def test_paper_protocol_whole_training_file_last_epoch_labelled(shd_root, tmp_path, capsys, monkeypatch):
    import sjframe.methods.surrogate.confusion
    import sjframe.methods.surrogate.plots

    titles: dict[str, str | None] = {}

    def recording(module, name):
        real = getattr(module, name)

        def plot(*args, **kwargs):
            titles[name] = kwargs.get("title")
            return real(*args, **kwargs)
        monkeypatch.setattr(module, name, plot)

    for name in ("plot_training_curves", "plot_accuracy_vs_time", "plot_raster", "plot_first_spike_patterns",
                 "plot_first_spike_histograms"):
        recording(sjframe.methods.surrogate.plots, name)
    recording(sjframe.methods.surrogate.confusion, "plot_confusion")
    train, test = _load("train"), _load("test")
    config = tmp_path / "tiny.yaml"
    import yaml

    config.write_text(yaml.safe_dump(tiny(shd_root, train={"epochs": 2})))
    assert train.main([str(config), "--protocol", "paper", "--runs_root", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    (path,) = (tmp_path / "runs").iterdir()
    run = RunDir.open(path)
    records = [r for r in run.read_log() if isinstance(r.get("epoch"), int)]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["protocol"] == "paper" and not any(k.startswith("val_") for k in r) for r in records)
    assert sorted(p.name for p in run.checkpoints.glob("*.pt")) == ["last.pt"]
    cfg = resolve_config(run.read_config())
    assert cfg.train.protocol == "paper"
    trainer = Trainer(cfg, None)
    assert len(trainer.data.train) == 24 and trainer.data.val is None  # the whole training file, no validation

    assert test.main([str(path), "--eval.plots", "true"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert PAPER_LABEL in out
    assert "instead of" not in captured.err  # the default checkpoint of a paper run is last.pt: nothing to note
    (report_path,) = (path / "reports").glob("test-last-*[0-9].json")
    report = json.loads(report_path.read_text())
    assert report["checkpoint"].endswith("last.pt") and report["epoch"] == 2
    assert report["protocol"] == "paper" and report["protocol_label"] == PAPER_LABEL
    test_record = [r for r in run.read_log() if r.get("event") == "test"][-1]
    assert test_record["protocol_label"] == PAPER_LABEL and test_record["checkpoint"].endswith("last.pt")
    # every plot of the run says it too
    assert len(titles) == 6 and all(PAPER_LABEL in (title or "") for title in titles.values()), titles

    # an explicit --checkpoint best cannot be honoured (no best.pt): last.pt is evaluated, and the user is told
    assert test.main([str(path), "--checkpoint", "best"]) == 0
    err = capsys.readouterr().err
    assert "protocol: paper" in err and "evaluating last.pt instead of 'best'" in err


def test_paper_protocol_rejects_a_select_metric():
    with pytest.raises(ConfigError, match="select_metric has no use under train.protocol paper"):
        resolve_config({"train": {"protocol": "paper", "select_metric": "acc_fs"}})
    with pytest.raises(ConfigError, match="protocol"):
        resolve_config({"train": {"protocol": "published"}})


# ----------------------------------------------------------------------------- data.val_split
def test_val_split_in_the_config(shd_root):
    cfg = resolve_config({"data": {"name": "shd", "val_split": {"fraction": 0.2, "by": "random", "seed": 3}}})
    assert cfg.data.dataset_options("train")["val_split"] == {"fraction": 0.2, "by": "random", "seed": 3}
    assert "val_split" not in resolve_config({}).data.dataset_options("train")  # unset: the data set's default
    assert "acc_fs_spike" in resolve_config({"train": {"select_metric": "acc_fs_spike"}}).train.select_metric
    for bad, match in (({"val_split": {"fraction": 0.1}, "val_fraction": 0.1}, "not both"),
                       ({"val_split": {"by": "voice"}}, "val_split.by"),
                       ({"val_split": {"fraction": 0.1, "part": 1}}, "unknown key"),
                       ({"options": {"val_split": {"fraction": 0.1}}}, "must not repeat")):
        with pytest.raises(ConfigError, match=match):
            resolve_config({"data": bad})
    args = parse_cli(["--data.val_split", "{fraction: 0.5, by: random}"])
    raw = apply_overrides(tiny(shd_root, data={"val_fraction": None}), args.overrides(cli_options("train")), key_type)
    cfg = resolve_config(raw)
    assert cfg.data.val_split == {"fraction": 0.5, "by": "random"}
    trainer = Trainer(cfg, None)
    assert (len(trainer.data.train), len(trainer.data.val)) == (12, 12)


@pytest.mark.parametrize("name", ["culif_fs", "culif_fr", "adlif_fs", "adlif_fr"])
def test_spoken_digit_configs_validate_on_held_out_speakers(name):
    cfg = resolve_config(load_yaml(ROOT / "configs" / f"spoken_digits_{name}.yaml"))
    assert cfg.data.val_split == {"fraction": 0.1, "by": "speaker"}
    assert cfg.data.val_fraction is None and cfg.data.val_seed is None


def test_an_unset_T_empty_is_reported_as_the_zero_bins_used(shd_root, tmp_path, capsys):
    """``data.T_empty`` unset: the data set appends no empty bins, and the report says 0 (not None)."""
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny(shd_root, data={"T_empty": None})))
    assert _load("train").main([str(config), "--runs_root", str(tmp_path / "runs")]) == 0
    (path,) = (tmp_path / "runs").iterdir()
    assert _load("test").main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "T_empty = 0 (T_in = 6)" in out and "None" not in out.split("window", 1)[1].splitlines()[0]
    (report_path,) = (path / "reports").glob("test-best-T6-E0.json")
    assert json.loads(report_path.read_text())["T_empty"] == 0
