"""ANN-to-SNN conversion: ranking preserved on a crafted net, balancing scales, spike-norm, method end to end."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sjframe.core.config import ConfigError
from sjframe.core.rundir import RunDir
from sjframe.methods import get_method
from sjframe.methods.conversion.convert import (
    build_ann,
    convert,
    encode_step,
    scaler_pairs,
    simulate,
    spike_counts,
)
from tests.conftest import requires_cuda


def _crafted() -> tuple[nn.Sequential, torch.Tensor]:
    """3 inputs -> 4 ReLU -> 3 outputs, hand-set weights; 5 inputs with well separated outputs."""
    ann = build_ann("mlp", (3,), 3, hidden=(4,))
    with torch.no_grad():
        ann[1].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, -1.0]]))
        ann[3].weight.copy_(torch.tensor([[1.0, 0.0, 0.2, 0.0], [0.0, 1.0, 0.0, 0.5], [0.3, 0.0, 1.0, 0.0]]))
    x = torch.tensor([[0.9, 0.1, 0.4], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9], [0.6, 0.9, 0.0], [0.5, 0.1, 0.1]])
    return ann.eval(), x


def test_ann_is_bias_free_and_conversion_refuses_biases():
    for arch, shape in (("mlp", (1, 8, 8)), ("cnn", (1, 8, 8))):
        ann = build_ann(arch, shape, 10)
        assert all(getattr(m, "bias", None) is None for m in ann.modules())
        assert ann(torch.rand(2, *shape)).shape == (2, 10)
    biased = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="bias"):
        convert(biased, torch.rand(4, 3))


def test_conversion_preserves_the_ann_output_ranking_on_a_crafted_network():
    ann, x = _crafted()
    with torch.no_grad():
        out = ann(x)
    assert (out > 0.05).all()                                   # every output active and distinct
    snn = convert(ann, x, "max")
    T = 400
    counts = spike_counts(snn, x, [T], encoding="constant", progress=False)[T]
    assert torch.equal(counts.argsort(1), out.argsort(1))       # the full ranking, every sample
    # rate code: counts / T = relu(output) / lambda_L within the quantisation of T steps per layer
    lam_out = scaler_pairs(snn)[-1].scale
    torch.testing.assert_close(counts / T, out / lam_out, atol=3.0 / T + 0.01, rtol=0.0)


def test_max_and_percentile_scales_are_the_ann_activation_statistics():
    ann, x = _crafted()
    with torch.no_grad():
        hidden = ann[2](ann[1](ann[0](x)))
        out = torch.relu(ann(x))
    snn = convert(ann, x, "max")
    scales = [p.scale for p in scaler_pairs(snn)]
    assert scales == pytest.approx([hidden.max().item(), out.max().item()], rel=1e-6)
    snn = convert(ann, x, "percentile", percentile=50.0)
    scales = [p.scale for p in scaler_pairs(snn)]
    assert scales == pytest.approx([hidden.quantile(0.5).item(), out.quantile(0.5).item()], rel=1e-6)


def test_spike_norm_sets_each_threshold_to_the_maximum_input_current():
    ann = build_ann("mlp", (2,), 2, hidden=(2,))
    with torch.no_grad():
        ann[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        ann[3].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    x = torch.tensor([[0.5, 0.25], [0.2, 0.6]])
    snn = convert(ann, x, "spike_norm", encoding="constant", spike_norm_steps=50)
    s1, s2 = [p.scale for p in scaler_pairs(snn)]
    # layer 1 receives W1 x every step: max = max(2 * 0.5, 0.6) = 1.0
    assert s1 == pytest.approx(1.0)
    # layer 2 receives W2 (s1 * spikes): the largest single-step input is 3 * s1 (a spike of hidden unit 2)
    assert s2 == pytest.approx(3.0 * s1)


def test_signed_bernoulli_encoding():
    g = torch.Generator().manual_seed(0)
    x = torch.tensor([[0.8, -0.3, 0.0]]).expand(20000, 3)
    s = encode_step(x, "bernoulli", g)
    assert set(s.unique().tolist()) <= {-1.0, 0.0, 1.0}
    torch.testing.assert_close(s.mean(0), torch.tensor([0.8, -0.3, 0.0]), atol=0.02, rtol=0)
    assert torch.equal(encode_step(x, "constant"), x)
    with pytest.raises(ValueError, match="encoding"):
        encode_step(x, "poisson")


def test_simulate_accuracy_per_time_step_and_bad_arguments():
    ann, x = _crafted()
    with torch.no_grad():
        y = ann(x).argmax(1)
    snn = convert(ann, x, "max")
    acc = simulate(snn, x, y, [1, 500], encoding="constant", progress=False)
    assert set(acc) == {1, 500} and acc[500] == 1.0
    with pytest.raises(ValueError, match="time_steps"):
        simulate(snn, x, y, [0], progress=False)
    with pytest.raises(ValueError, match="balancing"):
        convert(ann, x, "min")
    with pytest.raises(ValueError, match="NaN"):
        convert(ann, torch.full((2, 3), float("nan")))


def _cfg(**over) -> dict:
    section = {"arch": "mlp", "hidden": [32], "epochs": 3, "lr": 1e-2, "time_steps": [4, 32, 128], "device": "cpu",
               "threads": 1,
               "spike_norm_samples": 64, "spike_norm_steps": 32}
    section.update(over)
    return {"method": "conversion", "conversion": section}


@pytest.mark.slow
def test_method_end_to_end_table_and_resume(tmp_path):
    conv = get_method("conversion")
    run = RunDir.create("conv", root=tmp_path, stamp="a")
    report = conv.train(_cfg(), run)
    assert report["ann_test_acc"] > 0.8
    for balancing in ("max", "percentile", "spike_norm"):
        accs = report["snn_test_acc"][balancing]
        assert set(accs) == {"4", "32", "128"}
        assert accs["128"] > 0.7 and accs["128"] >= accs["4"]   # approaches the ANN as T grows
    table = (run.path / "reports" / "test-best.md").read_text()
    assert "| T | SNN max | SNN percentile | SNN spike_norm | ANN |" in table and "| 128 |" in table
    # resume: 2 epochs then 3 == 3 straight
    split = RunDir.create("conv", root=tmp_path, stamp="b")
    conv.train(_cfg(epochs=2, balancing=["max"], time_steps=[4]), split)
    conv.train(_cfg(balancing=["max"], time_steps=[4]), split, resume=True)
    a, b = run.load_checkpoint("last.pt")["model"], split.load_checkpoint("last.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_method_config_errors(tmp_path):
    conv = get_method("conversion")
    run = RunDir.create("conv", root=tmp_path)
    with pytest.raises(ConfigError, match="balancing"):
        conv.train(_cfg(balancing=["weird"]), run)
    with pytest.raises(ConfigError, match="arch"):
        conv.train(_cfg(arch="resnet"), run)
    with pytest.raises(ConfigError, match="method"):
        conv.train({"method": "stdp", "conversion": {}}, run)


@requires_cuda
def test_conversion_on_cuda_matches_cpu():
    ann, x = _crafted()
    cpu = spike_counts(convert(ann, x, "max"), x, [50], "constant", progress=False)[50]
    gpu = spike_counts(convert(ann.cuda(), x, "max"), x, [50], "constant", progress=False)[50]
    torch.testing.assert_close(gpu, cpu)
