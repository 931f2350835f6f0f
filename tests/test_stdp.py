"""STDP (Diehl & Cook): the rules on crafted spike pairs, the network dynamics, labels, the method end to end."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from sjframe.core.config import ConfigError
from sjframe.core.rundir import RunDir
from sjframe.methods import get_method
from sjframe.methods.stdp.network import (
    DiehlCookNetwork,
    DiehlCookParams,
    assign_labels,
    plasticity_step,
    poisson_encode,
    power_law_update,
    predict_from_assignments,
)
from tests.conftest import requires_cuda

TAU = 20.0


def _pair(p: DiehlCookParams, pre_t: int, post_t: int, steps: int = 10, w0: float = 0.5) -> torch.Tensor:
    """Total dW [1, 1] from one presynaptic spike at ``pre_t`` and one postsynaptic spike at ``post_t``."""
    w = torch.full((1, 1), w0, dtype=torch.float64)
    x_pre = torch.zeros(1, 1, dtype=torch.float64)
    x_post = torch.zeros(1, 1, dtype=torch.float64)
    total = torch.zeros_like(w)
    for t in range(steps):
        s_pre = torch.tensor([[float(t == pre_t)]], dtype=torch.float64)
        s_post = torch.tensor([[float(t == post_t)]], dtype=torch.float64)
        dw, x_pre, x_post = plasticity_step(w, s_pre, s_post, x_pre, x_post, p)
        total += dw
    return total


def test_post_pre_rule_on_a_crafted_spike_pair():
    p = DiehlCookParams(rule="post_pre", nu_pre=1e-4, nu_post=1e-2, tau_pre=TAU, tau_post=TAU)
    # pre at 2, post at 5: potentiation nu_post * x_pre(5) = nu_post * exp(-3 / tau_pre)
    assert _pair(p, 2, 5).item() == pytest.approx(1e-2 * math.exp(-3 / TAU), rel=1e-12)
    # post at 2, pre at 5: depression -nu_pre * x_post(5) = -nu_pre * exp(-3 / tau_post)
    assert _pair(p, 5, 2).item() == pytest.approx(-1e-4 * math.exp(-3 / TAU), rel=1e-12)
    # same step: both branches see trace 1
    assert _pair(p, 4, 4).item() == pytest.approx(1e-2 - 1e-4, rel=1e-12)


def test_post_pre_rule_equals_spikingjelly_stdp_learner():
    from spikingjelly.activation_based.functional.learning import stdp_linear_step

    from sjframe.methods.stdp.network import sj_trace_tau

    p = DiehlCookParams(rule="post_pre", nu_pre=3e-3, nu_post=2e-2, tau_pre=7.0, tau_post=11.0)
    g = torch.Generator().manual_seed(1)
    w = torch.rand(5, 6, generator=g, dtype=torch.float64)
    ours = (torch.zeros(3, 6, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64))
    theirs = ours
    for _ in range(12):
        s_pre = (torch.rand(3, 6, generator=g) < 0.3).double()
        s_post = (torch.rand(3, 5, generator=g) < 0.3).double()
        dw, *ours = plasticity_step(w, s_pre, s_post, *ours, p)
        dw_sj, theirs = stdp_linear_step(s_pre, s_post, theirs, w, tau_pre=sj_trace_tau(7.0, 1.0),
                                         tau_post=sj_trace_tau(11.0, 1.0), f_pre=lambda _: 3e-3, f_post=lambda _: 2e-2)
        torch.testing.assert_close(dw, dw_sj)
        torch.testing.assert_close(ours[0], theirs[0])
        torch.testing.assert_close(ours[1], theirs[1])


def test_power_law_rule_on_a_crafted_spike_pair():
    p = DiehlCookParams(rule="power_law", eta=0.01, x_tar=0.4, mu=0.5, w_max=1.0, tau_pre=TAU)
    w0 = 0.36
    expected = 0.01 * (math.exp(-3 / TAU) - 0.4) * (1.0 - w0) ** 0.5
    assert _pair(p, 2, 5, w0=w0).item() == pytest.approx(expected, rel=1e-12)
    # a postsynaptic spike with no presynaptic history depresses by eta * x_tar * (w_max - w)^mu
    assert _pair(p, 8, 5, w0=w0).item() == pytest.approx(-0.01 * 0.4 * 0.8, rel=1e-12)
    # a presynaptic spike alone changes nothing
    assert _pair(p, 5, 99, w0=w0).item() == 0.0


def test_updates_are_summed_over_the_batch():
    w = torch.rand(3, 4, dtype=torch.float64)
    x_pre, s_post = torch.rand(2, 4, dtype=torch.float64), (torch.rand(2, 3) > 0.5).double()
    both = power_law_update(w, x_pre, s_post, 0.1, 0.3, 1.0, 0.7)
    one = sum(power_law_update(w, x_pre[b:b + 1], s_post[b:b + 1], 0.1, 0.3, 1.0, 0.7) for b in range(2))
    torch.testing.assert_close(both, one)


def test_network_dynamics_winner_take_all_adaptive_threshold_and_normalisation():
    p = DiehlCookParams(n_input=2, n_neurons=2, time_steps=30, tau_theta=1e12, norm_total=1.5, w_max=1.0,
                        min_spikes=0)
    net = DiehlCookNetwork(p).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[15.0, 0.0], [0.0, 6.0]], dtype=torch.float64))
    spikes = torch.zeros(30, 1, 2, dtype=torch.float64)
    spikes[:, 0, :] = 1.0                              # both inputs fire every step
    counts = net.run(spikes, learn=False)
    # neuron 0 (+15 mV per step) crosses threshold (13 mV above rest) at step 0; its inhibitory partner
    # fires at step 1 and pushes neuron 1 (+6 mV per step, would cross at step 2) 120 mV down at step 2
    assert counts[0, 0] >= 1 and counts[0, 1] == 0
    assert torch.equal(net.theta, torch.zeros(2, dtype=torch.float64))   # frozen without learning
    counts = net.run(spikes, learn=True)
    assert net.theta[0].item() == pytest.approx(0.05 * counts[0, 0].item())
    net.normalize()
    torch.testing.assert_close(net.weight.sum(1), torch.full((2,), 1.5, dtype=torch.float64))


def test_refractory_period_limits_the_rate():
    p = DiehlCookParams(n_input=1, n_neurons=1, time_steps=60, exc_refrac=5.0, w_inh_exc=0.0, norm_total=None,
                        min_spikes=0)
    net = DiehlCookNetwork(p)
    with torch.no_grad():
        net.weight.fill_(100.0)                      # fires whenever it may integrate
    counts = net.run(torch.ones(60, 1, 1), learn=False)
    assert counts.item() == 10                        # one spike, 5 blocked steps: every 6 steps


def test_poisson_encoding_rate():
    g = torch.Generator().manual_seed(0)
    s = poisson_encode(torch.full((4, 500), 0.5), 200, 128.0, 1.0, g)
    assert s.shape == (200, 4, 500)
    assert s.mean().item() == pytest.approx(0.5 * 0.128, rel=0.05)
    with pytest.raises(ValueError, match="intensity"):
        poisson_encode(torch.full((2, 3), 1.5), 10, 128.0, 1.0)


def test_poisson_draws_follow_the_generator_stream():
    """The uniforms come from the generator (on its device, then moved): a CUDA run with the method's CPU
    generator draws the CPU spikes (test_present_on_cuda_with_a_cpu_generator_matches_cpu checks it there)."""
    intensity = torch.rand(3, 5, dtype=torch.float64)
    s = poisson_encode(intensity, 20, 300.0, 1.0, torch.Generator().manual_seed(4))
    u = torch.rand((20, 3, 5), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.equal(s, (u < intensity * 0.3).to(torch.float64))


def test_label_assignment_and_prediction():
    counts = torch.tensor([[5.0, 0, 1, 0], [4, 0, 0, 0], [0, 3, 0, 0], [1, 2, 0, 0]])
    labels = torch.tensor([0, 0, 1, 1])
    a = assign_labels(counts, labels, 3)
    assert a.tolist() == [0, 1, 0, -1]
    pred = predict_from_assignments(torch.tensor([[0.0, 4, 0, 9], [3, 1, 3, 0]]), a, 3)
    assert pred.tolist() == [1, 0]          # the silent / unassigned neuron 3 is ignored


def test_bad_parameters_are_clear_errors():
    with pytest.raises(ValueError, match="rule"):
        DiehlCookParams(rule="hebb")
    with pytest.raises(ValueError, match="n_neurons"):
        DiehlCookParams(n_neurons=0)
    net = DiehlCookNetwork(DiehlCookParams(n_input=4, n_neurons=3))
    with pytest.raises(ValueError, match="spikes_in"):
        net.run(torch.zeros(5, 2, 3), learn=False)


def _cfg(**over) -> dict:
    section = {"epochs": 1, "batch_size": 32, "train_subset": 192, "device": "cpu", "threads": 1,
               "network": {"n_neurons": 20, "time_steps": 30, "norm_total": 20.0}}
    section.update(over)
    return {"method": "stdp", "stdp": section}


@pytest.mark.slow
def test_method_end_to_end_and_exact_resume(tmp_path):
    stdp = get_method("stdp")
    straight = RunDir.create("stdp", root=tmp_path, stamp="a")
    report = stdp.train(_cfg(epochs=2), straight)
    assert 0.0 <= report["test_acc"] <= 1.0 and report["test_acc"] > 0.2   # chance is 0.1
    assert (straight.path / "reports" / "test-best.json").is_file() and (straight.plots / "stdp_weights.png").is_file()
    resolved = yaml.safe_load(straight.config_path.read_text())
    assert resolved["stdp"]["network"]["rule"] == "post_pre" and resolved["stdp"]["network"]["n_neurons"] == 20
    # one epoch, then resume to two: the same weights as the straight run
    split = RunDir.create("stdp", root=tmp_path, stamp="b")
    stdp.train(_cfg(epochs=1), split)
    stdp.train(_cfg(epochs=2), split, resume=True)
    a, b = straight.load_checkpoint("last.pt"), split.load_checkpoint("last.pt")
    torch.testing.assert_close(a["model"]["weight"], b["model"]["weight"], rtol=0, atol=0)
    again = stdp.evaluate(_cfg(epochs=2), straight, "last")
    assert again["epoch"] == 1 and "test acc" in again["table"]


def test_method_config_errors(tmp_path):
    stdp = get_method("stdp")
    run = RunDir.create("stdp", root=tmp_path)
    with pytest.raises(ConfigError, match="lerning_rate"):
        stdp.train(_cfg(lerning_rate=1), run)
    with pytest.raises(ConfigError, match="n_input"):
        stdp.train(_cfg(network={"n_input": 784}), run)
    with pytest.raises(ConfigError, match="rule"):
        stdp.train(_cfg(network={"rule": "oja"}), run)
    with pytest.raises(FileNotFoundError):
        stdp.evaluate(_cfg(), run, "missing.pt")


@requires_cuda
def test_network_on_cuda_matches_cpu():
    p = DiehlCookParams(n_input=16, n_neurons=8, time_steps=50, norm_total=4.0, min_spikes=0)
    g = torch.Generator().manual_seed(0)
    cpu = DiehlCookNetwork(p, g).double()
    gpu = DiehlCookNetwork(p).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    spikes = (torch.rand(50, 4, 16, generator=g) < 0.3).double()
    counts_cpu = cpu.run(spikes, learn=True)
    counts_gpu = gpu.run(spikes.cuda(), learn=True)
    torch.testing.assert_close(counts_gpu.cpu(), counts_cpu)
    torch.testing.assert_close(gpu.weight.cpu(), cpu.weight)
    torch.testing.assert_close(gpu.theta.cpu(), cpu.theta)


@requires_cuda
def test_present_on_cuda_with_a_cpu_generator_matches_cpu(tmp_path):
    """The method draws with a CPU generator; on CUDA (device auto) present() used to fail on it."""
    p = DiehlCookParams(n_input=16, n_neurons=8, time_steps=50, norm_total=4.0)
    cpu = DiehlCookNetwork(p, torch.Generator().manual_seed(0)).double()
    gpu = DiehlCookNetwork(p).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(4, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    counts_cpu = cpu.present(x, learn=True, generator=torch.Generator().manual_seed(2))
    counts_gpu = gpu.present(x, learn=True, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(counts_gpu.cpu(), counts_cpu)
    torch.testing.assert_close(gpu.weight.cpu(), cpu.weight)
    report = get_method("stdp").train(_cfg(device="cuda"), RunDir.create("stdp_cuda", root=tmp_path))
    assert 0.0 <= report["test_acc"] <= 1.0
