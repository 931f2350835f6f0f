"""CSNN (seed 002): builds for static images and event frames, trains one step, configs run; spike-count GIFs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from spikingjelly.activation_based import functional as sj_functional

from sjframe.coding.losses import rate_ce_loss
from sjframe.core.config import ConfigError, load_yaml
from sjframe.data.writers import random_dataset_files
from sjframe.methods.surrogate.animation import animate_spike_counts, spike_count_gifs
from sjframe.methods.surrogate.config import resolve_config
from sjframe.methods.surrogate.engine import Trainer
from sjframe.models import build_model
from sjframe.neurons.lif import LIF

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("shape, fc_in", [((1, 28, 28), 1024), ((2, 34, 34), 1600)], ids=["static", "events"])
def test_csnn_builds_and_trains_one_step(shape, fc_in):
    model = build_model("csnn", {}, shape, 10)
    assert model.fc.in_features == fc_in and model.conv1.out_channels == 12 and model.conv2.out_channels == 64
    lif = model.lif1
    assert isinstance(lif, LIF) and math.exp(-1.0 / lif.tau_m) == pytest.approx(0.5)
    assert lif.surrogate.name == "fast_sigmoid" and lif.surrogate.values["rho"] == 25.0
    T, B = 8, 3
    # static: the image as a current every step; events: 2-channel frames of event counts
    x = torch.rand(T, B, *shape) * 3.0 if shape[0] == 1 else (torch.rand(T, B, *shape) < 0.5).float() * 2.0
    y = torch.tensor([1, 4, 7])
    out = model(x)
    assert out.spikes.shape == (T, B, 10) and out.h.shape == (T, B, 10) and out.logits is None
    assert set(out.layer_spikes) == {"conv1", "conv2", "output"}
    assert out.layer_spikes["conv2"].sum() > 0, "the test input must drive the FC layer"
    assert out.layer_spikes["conv2"].shape[2:] == (64, *(((s - 4) // 2 - 4) // 2 for s in shape[1:]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = rate_ce_loss(out.spikes, y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    assert model.conv1.weight.grad.abs().sum() > 0, "no gradient reached the first convolution"
    opt.step()
    sj_functional.reset_net(model)
    changed = [k for k, v in model.state_dict().items() if k.endswith("weight") and not torch.equal(v, before[k])]
    assert {"conv1.weight", "conv2.weight", "fc.weight"} <= set(changed)


def test_csnn_bad_options_and_inputs():
    with pytest.raises(ConfigError, match="chanels"):
        build_model("csnn", {"chanels": [4, 8]}, (1, 28, 28), 10)
    with pytest.raises(ValueError, match="too small"):
        build_model("csnn", {}, (1, 8, 8), 10)
    model = build_model("csnn", {"channels": [2, 4]}, (1, 28, 28), 10)
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(4, 2, 28, 28))


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("csnn_data")
    return {name: random_dataset_files(name, base / name, n_train=8, n_test=4, events=300, seed=2)
            for name in ("mnist", "nmnist")}


@pytest.mark.parametrize("config", ["csnn_mnist", "csnn_nmnist"])
def test_config_trains_one_step_through_the_engine(config, data_roots):
    raw = load_yaml(ROOT / "configs" / f"{config}.yaml")
    cfg = resolve_config(raw)
    assert cfg.loss.mode == "rate_ce" and cfg.train.scheduler == "multistep" and cfg.train.milestones == [10, 15]
    assert (cfg.train.lr, cfg.train.epochs, cfg.model.name) == (1e-2, 20, "csnn")
    raw["data"].update({"root": str(data_roots[raw["data"]["name"]]), "T": 4, "val_fraction": 0.25})
    raw["train"].update({"epochs": 1, "batch_size": 2, "test_batch_size": 2, "max_batches": 1, "progress": False})
    raw["threads"] = 1
    raw["device"] = "cpu"
    trainer = Trainer(resolve_config(raw), None)
    assert trainer.input_shape == ((1, 28, 28) if config == "csnn_mnist" else (2, 34, 34))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    assert math.isfinite(summary["last"]["train_loss"])
    assert any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items() if k.endswith("weight"))


def test_spike_count_animation(tmp_path):
    spikes = torch.zeros(5, 3)
    spikes[[0, 1, 3], 2] = 1.0
    spikes[4, 0] = 1.0
    path = animate_spike_counts(spikes, tmp_path / "one.gif", target=2, fps=5)
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 5
    paths = spike_count_gifs(torch.rand(4, 3, 10).round(), torch.tensor([7, 1, 0]), tmp_path / "gifs", n=2, stride=2)
    assert [p.name for p in paths] == ["spike_bar_0_target7.gif", "spike_bar_1_target1.gif"]
    with Image.open(paths[0]) as gif:
        assert gif.n_frames == 3                        # steps 0 and 2, plus the last step 3
    with pytest.raises(ValueError, match="target"):
        animate_spike_counts(spikes, tmp_path / "bad.gif", target=3)
    with pytest.raises(ValueError, match=r"\[T, C\]"):
        animate_spike_counts(torch.zeros(2, 3, 4), tmp_path / "bad.gif")


def test_gifs_from_a_trained_run(data_roots, tmp_path):
    from sjframe.core.rundir import RunDir
    from sjframe.methods import get_method
    from sjframe.methods.surrogate.animation import main as animation_main

    raw = load_yaml(ROOT / "configs" / "csnn_mnist.yaml")
    raw["data"].update({"root": str(data_roots["mnist"]), "T": 3, "val_fraction": 0.25})
    raw["train"].update({"epochs": 1, "batch_size": 4, "test_batch_size": 4, "max_batches": 1, "progress": False})
    raw.update({"threads": 1, "device": "cpu", "eval": {"plots": False}})
    run = RunDir.create("csnn", root=tmp_path)
    get_method("surrogate").train(raw, run)
    assert animation_main([str(run.path), "--n", "2"]) == 0
    gifs = sorted((run.plots / "spike_counts").glob("spike_bar_*_target*.gif"))
    assert len(gifs) == 2
    with Image.open(gifs[0]) as gif:
        assert gif.n_frames == 3
