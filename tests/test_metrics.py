"""Metrics on crafted cases computed by hand: N_s, FS / FR accuracy and curves, td50 / td90, rates."""

from __future__ import annotations

import math

import pytest
import torch

from sjframe.methods.surrogate.metrics import EvalAccumulator, layer_spike_counts, spike_count, td
from sjframe.models.base import ModelOutput


def _crafted() -> tuple[ModelOutput, torch.Tensor]:
    """T = 10, four samples, two output neurons (see the comments for the hand computation)."""
    T, B, N = 10, 4, 2
    spikes = torch.zeros(T, B, N)
    h = torch.zeros(T, B, N)
    # sample 0 (y = 0): n0 spikes at step 2, n1 at 6 and 7 -> FS right (t_F 3); FR: wrong (1 vs 2)
    spikes[2, 0, 0] = spikes[6, 0, 1] = spikes[7, 0, 1] = 1.0
    # sample 1 (y = 1): n1 spikes at step 5 only -> FS and FR right
    spikes[5, 1, 1] = 1.0
    # sample 2 (y = 0): n1 at step 1, n0 at 3 and 4 -> FS wrong (t_F 2 < 4), FR right (2 vs 1)
    spikes[1, 2, 1] = spikes[3, 2, 0] = spikes[4, 2, 0] = 1.0
    # sample 3 (y = 0): silent, n0 has the higher potential -> FS right by rank (no real spike), FR wrong
    h[4, 3, 0], h[6, 3, 1] = 0.8, 0.3
    target = torch.tensor([0, 1, 0, 0])
    hidden = torch.zeros(T, B, 3)
    hidden[0, :, 0] = 1.0  # 4 spikes
    hidden[1:3, 0, 2] = 1.0  # 2 more: 6 spikes over 4 samples x 3 neurons -> N_s = 0.5
    return ModelOutput(spikes=spikes, h=h, layer_spikes={"hidden": hidden, "output": spikes}), target


def test_crafted_case_by_hand() -> None:
    output, target = _crafted()
    acc = EvalAccumulator(primary="fs", dt_ms=2.0)
    acc.update(output, target, loss=torch.tensor(1.5))
    m = acc.compute()
    assert m["n_samples"] == 4 and m["T"] == 10 and m["loss"] == 1.5
    assert m["acc_fs"] == 75.0 and m["acc_fr"] == 50.0 and m["acc"] == 75.0 and m["acc_logits"] is None
    # N_s: hidden 6 / (4 * 3) = 0.5, output 7 / (4 * 2) = 0.875
    assert m["n_s_per_layer"] == {"hidden": 0.5, "output": 0.875} and m["n_s"] == 1.375
    # FS curve: sample 0 at step 2, sample 1 at step 5 (sample 3 is right but never spiked)
    assert m["curve_fs"] == [0, 0, 25, 25, 25, 50, 50, 50, 50, 50]
    assert (m["td50_fs"], m["td90_fs"]) == (2, 5)
    # FR curve: step 2 s0; 3-4 s0 s2; 5 s0 s1 s2; 6 s0 (tie -> n0) s1 s2; 7+ s1 s2
    assert m["curve_fr"] == [0, 0, 25, 50, 50, 75, 75, 50, 50, 50]
    assert (m["td50_fr"], m["td90_fr"]) == (3, 5)
    assert (m["td50"], m["td90"], m["td_curve"]) == (2, 5, "fs")
    assert (m["td50_ms"], m["td90_ms"]) == (4.0, 10.0)
    # FS predictions n0, n1, n1, n0: own counts 1, 1, 1, 0 and others 2, 0, 2, 0 over 10 steps
    assert math.isclose(m["rate_pred"], 0.075) and math.isclose(m["rate_others"], 0.1)
    assert math.isclose(m["rate_pred_hz"], 37.5) and math.isclose(m["rate_others_hz"], 50.0)

    fr = EvalAccumulator(primary="fr")
    fr.update(output, target)
    m = fr.compute()
    assert (m["acc"], m["td50"], m["td90"], m["td_curve"]) == (50.0, 3, 5, "fr")
    assert m["td50_ms"] is None and m["rate_pred_hz"] is None
    # FR predictions n1, n1, n0, n0 (silent): own 2, 1, 2, 0 and others 1, 0, 1, 0
    assert math.isclose(m["rate_pred"], 0.125) and math.isclose(m["rate_others"], 0.05)


def test_given_t_F_matches_computed() -> None:
    output, target = _crafted()
    t_f = torch.tensor([[3.0, 7.0], [12.0, 6.0], [4.0, 2.0], [11.0, 12.0]])
    a, b = EvalAccumulator(), EvalAccumulator()
    a.update(output, target)
    b.update(output, target, t_F=t_f)
    assert a.compute() == b.compute()


def test_td_by_hand() -> None:
    assert td([0.0, 10.0, 40.0, 80.0, 100.0, 90.0], 50) == 3
    assert td([0.0, 10.0, 40.0, 80.0, 100.0, 90.0], 90) == 4
    assert td([0.0, 45.0, 50.0], 90) == 1  # 90 % of 50 is 45: reached at step 1
    assert td([0.0, 0.0], 50) is None
    with pytest.raises(ValueError, match="p must be"):
        td([1.0], 0)


def test_spike_count_is_differentiable() -> None:
    spikes = torch.zeros(5, 2, 2, 3, requires_grad=True)
    layers = {"conv": spikes + 1.0, "out": torch.ones(5, 2, 4)}
    counts = layer_spike_counts(layers)
    assert float(counts["conv"].detach()) == 5.0 and float(counts["out"]) == 5.0
    total = spike_count(layers)
    total.backward()
    assert float(total.detach()) == 10.0
    assert torch.allclose(spikes.grad, torch.full_like(spikes, 1.0 / (2 * 6)))


def _random_batch(T: int, B: int, N: int) -> tuple[ModelOutput, torch.Tensor]:
    spikes = (torch.rand(T, B, N) < 0.08).float()
    h = torch.randn(T, B, N)
    hidden = (torch.rand(T, B, 2, 3) < 0.2).float()
    return ModelOutput(spikes=spikes, h=h, layer_spikes={"hidden": hidden, "out": spikes}), torch.randint(0, N, (B,))


def _cat(parts: list[tuple[ModelOutput, torch.Tensor]]) -> tuple[ModelOutput, torch.Tensor]:
    outs = [p[0] for p in parts]
    return (
        ModelOutput(
            spikes=torch.cat([o.spikes for o in outs], dim=1),
            h=torch.cat([o.h for o in outs], dim=1),
            layer_spikes={k: torch.cat([o.layer_spikes[k] for o in outs], dim=1) for k in outs[0].layer_spikes},
        ),
        torch.cat([p[1] for p in parts]),
    )


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float):
            assert math.isclose(a[key], b[key], rel_tol=1e-9, abs_tol=1e-12), key
        elif isinstance(a[key], list) and a[key] and isinstance(a[key][0], list):  # confusion counts
            assert a[key] == b[key], key
        elif isinstance(a[key], list):
            assert all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(a[key], b[key])), key
        elif isinstance(a[key], dict):
            assert all(math.isclose(a[key][k], b[key][k], rel_tol=1e-9) for k in a[key]), key
        else:
            assert a[key] == b[key], key


def test_batches_equal_one_big_batch() -> None:
    parts = [_random_batch(25, B, 5) for B in (7, 3, 11)]
    split = EvalAccumulator(dt_ms=1.0)
    for out, y in parts:
        split.update(out, y, loss=2.0)
    whole = EvalAccumulator(dt_ms=1.0)
    out, y = _cat(parts)
    whole.update(out, y, loss=2.0)
    m = whole.compute()
    assert m["n_samples"] == 21 and m["td50"] is not None
    _assert_same(split.compute(), m)


def test_state_tensors_sum_like_an_all_reduce() -> None:
    parts = [_random_batch(12, B, 4) for B in (6, 9)]
    rank0, rank1, whole = EvalAccumulator(), EvalAccumulator(), EvalAccumulator()
    rank0.update(*parts[0])
    rank1.update(*parts[1])
    whole.update(*_cat(parts))
    s0, s1 = rank0.state_tensors(), rank1.state_tensors()
    assert list(s0) == list(s1) and all(isinstance(v, torch.Tensor) for v in s0.values())
    for key in s0:  # an in-place SUM all-reduce on the live tensors
        s0[key] += s1[key]
    _assert_same(rank0.compute(), whole.compute())
    fresh = EvalAccumulator()
    fresh.update(*parts[1])
    fresh.load_state_tensors(rank0.state_tensors())
    _assert_same(fresh.compute(), whole.compute())
    with pytest.raises(ValueError, match="state keys"):
        fresh.load_state_tensors({"n_samples": torch.tensor(1.0)})


def test_logits_only_output() -> None:
    acc = EvalAccumulator()
    logits = torch.tensor([[2.0, 0.1, 0.0], [0.0, 1.0, 3.0], [1.0, 0.0, 0.0]])
    acc.update(ModelOutput(logits=logits), torch.tensor([0, 1, 0]))
    m = acc.compute()
    assert math.isclose(m["acc"], 200.0 / 3) and m["acc_logits"] == m["acc"]
    assert m["acc_fs"] is None and m["acc_fr"] is None and m["td50"] is None and m["n_s"] is None
    hidden = torch.ones(4, 3, 5)
    acc.update(ModelOutput(logits=logits, layer_spikes={"hidden": hidden}), torch.tensor([0, 1, 0]))
    assert acc.compute()["n_s_per_layer"] == {"hidden": 4.0 * 3 / 6}  # 3 of the 6 samples had 4 spikes each


def test_update_errors() -> None:
    out, y = _random_batch(10, 3, 4)
    acc = EvalAccumulator()
    acc.update(out, y)
    with pytest.raises(ValueError, match="window changed"):
        acc.update(*_random_batch(11, 3, 4))
    with pytest.raises(ValueError, match="output.h is None"):
        EvalAccumulator().update(ModelOutput(spikes=out.spikes), y)
    with pytest.raises(ValueError, match="neither spikes nor logits"):
        EvalAccumulator().update(ModelOutput(), y)
    with pytest.raises(ValueError, match="target"):
        EvalAccumulator().update(out, y.float())
    with pytest.raises(ValueError, match="loss is not finite"):
        EvalAccumulator().update(out, y, loss=float("nan"))
    with pytest.raises(ValueError, match="primary"):
        EvalAccumulator(primary="rate")
    hidden = torch.zeros(10, 3, 5)
    hidden[4, 1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"layer_spikes\['hidden'\] contains NaN"):
        EvalAccumulator().update(ModelOutput(spikes=out.spikes, h=out.h, layer_spikes={"hidden": hidden}), y)
    with pytest.raises(ValueError, match=r"layer_spikes\['hidden'\] has batch 2"):
        EvalAccumulator().update(ModelOutput(spikes=out.spikes, h=out.h, layer_spikes={"hidden": hidden[:, :2]}), y)
    with pytest.raises(ValueError, match=r"time-major"):
        EvalAccumulator().update(ModelOutput(spikes=out.spikes, h=out.h, layer_spikes={"hidden": hidden[0, 0]}), y)


def test_layer_spike_counts_equal_a_float64_sum() -> None:
    # float32 0 / 1 spikes are summed in float32 (exact: every partial sum an integer below 2^24), float64 ones in
    # float64; both must give the float64 sum's value exactly, and a non-binary layer stays close to it
    gen = torch.Generator().manual_seed(0)
    out, y = _random_batch(45, 100, 3)
    binary = (torch.rand(45, 100, 200, generator=gen) < 0.3).float()
    graded = torch.rand(45, 100, 200, generator=gen)
    for hidden in (binary, binary.double(), graded):
        acc = EvalAccumulator()
        acc.update(ModelOutput(spikes=out.spikes, h=out.h, layer_spikes={"hidden": hidden}), y)
        want = hidden.sum(dtype=torch.float64).item() / 200 / 100
        got = acc.compute()["n_s_per_layer"]["hidden"]
        if hidden is graded:
            assert math.isclose(got, want, rel_tol=1e-6)
        else:
            assert got == want
