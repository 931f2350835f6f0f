"""SpikeProp: exact spike times, gradients against finite differences, coding, XOR solved, Iris method."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from scipy.optimize import brentq

from sjframe.core.config import ConfigError
from sjframe.core.rundir import RunDir
from sjframe.methods import get_method
from sjframe.methods.spikeprop.network import (
    SpikePropLayer,
    SpikePropNet,
    bump_silent,
    eps_kernel,
    gaussian_rf_encode,
    spike_time_loss,
)

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def test_kernel_and_its_derivative():
    s = torch.tensor([-1.0, 0.0, 3.5, 7.0, 20.0, -math.inf], dtype=F64)
    eps, deps = eps_kernel(s, 7.0)
    expected = [0.0, 0.0, 0.5 * math.exp(0.5), 1.0, (20 / 7) * math.exp(1 - 20 / 7), 0.0]
    torch.testing.assert_close(eps, torch.tensor(expected, dtype=F64))
    h = 1e-6
    fd = (eps_kernel(s[2:5] + h, 7.0)[0] - eps_kernel(s[2:5] - h, 7.0)[0]) / (2 * h)
    torch.testing.assert_close(deps[2:5], fd, atol=1e-8, rtol=0)
    assert deps[0] == 0 and deps[5] == 0


def test_spike_time_is_the_exact_first_threshold_crossing():
    layer = SpikePropLayer(1, 1, delays=[2.0], tau=7.0, theta=1.0, t_max=40.0, dt=0.5)
    with torch.no_grad():
        layer.weight.fill_(2.0)
    t = layer(torch.tensor([[1.5]], dtype=F64)).item()
    # 2 eps(t - 1.5 - 2) = 1 on the rising flank (s < tau)
    s = brentq(lambda u: 2.0 * (u / 7.0) * math.exp(1 - u / 7.0) - 1.0, 1e-9, 7.0, xtol=1e-14)
    assert t == pytest.approx(1.5 + 2.0 + s, abs=1e-6)
    # too weak to reach threshold: silent (inf)
    with torch.no_grad():
        layer.weight.fill_(0.5)
    assert math.isinf(layer(torch.tensor([[1.5]], dtype=F64)).item())


def _loss(net: SpikePropNet, t_in: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return spike_time_loss(net(t_in)[-1], target)


def test_gradients_match_finite_differences_for_output_and_hidden_layers():
    g = torch.Generator().manual_seed(3)
    net = SpikePropNet([4, 3, 2], delays=[1.0, 3.0, 5.0], tau=4.0, theta=1.0, t_max=40.0, dt=0.05,
                       refine_iters=40, min_slope=0.0, w_init=(0.1, 0.6), generator=g)
    t_in = torch.tensor([[0.0, 1.0, 2.5, 0.5], [1.5, 0.0, 0.7, 3.0]], dtype=F64, requires_grad=True)
    target = torch.tensor([[9.0, 11.0], [10.0, 8.0]], dtype=F64)
    times = net(t_in)
    assert all(torch.isfinite(t).all() for t in times), "the crafted net must fire everywhere"
    _loss(net, t_in, target).backward()
    h = 1e-6
    for layer in net.layers:
        w = layer.weight
        for idx in [(0, 0, 0), (1, 2, 1), (w.shape[0] - 1, w.shape[1] - 1, 2)]:
            with torch.no_grad():
                w[idx] += h
                plus = _loss(net, t_in, target).item()
                w[idx] -= 2 * h
                minus = _loss(net, t_in, target).item()
                w[idx] += h
            assert w.grad[idx].item() == pytest.approx((plus - minus) / (2 * h), rel=1e-4, abs=1e-7)
    for idx in [(0, 1), (1, 3)]:
        with torch.no_grad():
            t_in[idx] += h
            plus = _loss(net, t_in, target).item()
            t_in[idx] -= 2 * h
            minus = _loss(net, t_in, target).item()
            t_in[idx] += h
        assert t_in.grad[idx].item() == pytest.approx((plus - minus) / (2 * h), rel=1e-4, abs=1e-7)


def test_silent_neurons_pass_no_gradient_and_get_bumped():
    layer = SpikePropLayer(2, 2, delays=[1.0], t_max=30.0, w_init=(0.0, 0.0))
    with torch.no_grad():
        layer.weight[0].fill_(3.0)                  # neuron 0 fires, neuron 1 (zero weights) is silent
    t_in = torch.tensor([[0.0, math.inf]], dtype=F64, requires_grad=True)   # input 1 silent too
    t_out = layer(t_in)
    assert math.isfinite(t_out[0, 0].item()) and math.isinf(t_out[0, 1].item())
    spike_time_loss(t_out, torch.tensor([[5.0, 5.0]], dtype=F64)).backward()
    assert layer.weight.grad[1].abs().sum() == 0 and layer.weight.grad[0, 0].abs().sum() > 0
    assert t_in.grad[0, 1] == 0
    assert bump_silent(layer, t_out.detach(), 0.25) == 1
    assert torch.all(layer.weight[1] == 0.25) and torch.all(layer.weight[0] == 3.0)


def test_gaussian_receptive_field_coding():
    lo, hi = torch.tensor([0.0], dtype=F64), torch.tensor([10.0], dtype=F64)
    centres = 0.0 + (2 * torch.arange(1, 13, dtype=F64) - 3) / 2 * 10.0 / 10
    t = gaussian_rf_encode(centres[4:5, None], lo, hi, n_fields=12, t_code=10.0)
    assert t.shape == (1, 12)
    assert t[0, 4] == 0.0                            # the field centred on the value fires first
    assert math.isinf(t[0, 0]) and math.isinf(t[0, 11])   # far fields stay silent
    assert t[0, 3] == t[0, 5] and 0 < t[0, 3] < 10
    with pytest.raises(ValueError, match="x_max"):
        gaussian_rf_encode(torch.zeros(1, 1, dtype=F64), hi, lo)


def test_bad_input_is_a_clear_error():
    layer = SpikePropLayer(3, 2, delays=[1.0])
    with pytest.raises(ValueError, match="t_in"):
        layer(torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        layer(torch.tensor([[0.0, float("nan"), 1.0]], dtype=F64))
    with pytest.raises(ValueError, match="tau"):
        SpikePropLayer(3, 2, delays=[1.0], tau=0.0)


def test_xor_is_solved(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "spikeprop_xor.yaml").read_text())
    cfg["spikeprop"].update({"epochs": 150, "log_every": 50})
    run = RunDir.create("xor", root=tmp_path)
    report = get_method("spikeprop").train(cfg, run)
    assert report["solved"] and report["test_acc"] == 1.0
    times = report["output_times"]            # patterns (0,0), (0,1), (1,0), (1,1): targets 16, 10, 10, 16
    assert times[1] < 13 and times[2] < 13 and times[0] > 13 and times[3] > 13


@pytest.mark.slow
def test_iris_method_learns_and_resumes(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "spikeprop_iris.yaml").read_text())
    cfg["spikeprop"].update({"epochs": 4, "log_every": 1, "t_max": 20.0, "dt": 0.5})
    run = RunDir.create("iris", root=tmp_path, stamp="a")
    report = get_method("spikeprop").train(cfg, run)
    assert report["test_acc"] > 0.6                 # chance: 1/3
    split = RunDir.create("iris", root=tmp_path, stamp="b")
    get_method("spikeprop").train({**cfg, "spikeprop": {**cfg["spikeprop"], "epochs": 2}}, split)
    get_method("spikeprop").train(cfg, split, resume=True)
    torch.testing.assert_close(run.load_checkpoint("last.pt")["model"], split.load_checkpoint("last.pt")["model"],
                               rtol=0, atol=0)


def test_method_config_errors(tmp_path):
    sp = get_method("spikeprop")
    run = RunDir.create("sp", root=tmp_path)
    with pytest.raises(ConfigError, match="hiden"):
        sp.train({"method": "spikeprop", "spikeprop": {"hiden": [3]}}, run)
    with pytest.raises(ConfigError, match="target"):
        sp.train({"method": "spikeprop", "spikeprop": {"target_correct": 20.0, "target_wrong": 10.0}}, run)
    with pytest.raises(ConfigError, match="dataset"):
        sp.train({"method": "spikeprop", "spikeprop": {"dataset": "mnist"}}, run)


def _entry_point(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_spikeprop_cli_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_and_test_entry_points_dispatch_to_spikeprop(tmp_path, capsys):
    code = _entry_point("train").main([str(ROOT / "configs" / "spikeprop_xor.yaml"), "--spikeprop.epochs", "150",
                                       "--runs_root", str(tmp_path)])
    assert code == 0
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["spikeprop"]["epochs"] == 150
    capsys.readouterr()
    assert _entry_point("test").main([str(run_dir), "--checkpoint", "last"]) == 0
    assert "output spike times" in capsys.readouterr().out
    assert (run_dir / "reports" / "test-last.json").is_file()
