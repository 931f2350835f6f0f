"""Silent-output accounting (issue 16): silent_fraction, acc_fs / acc_fs_spike / acc_fr, the curve's
end, the tie rule, the td time convention and the confusion matrix, on cases computed by hand."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sjframe.coding.decode import SILENT, first_spike_steps, fr_predict, fs_predict, fs_spike_predict
from sjframe.coding.fs import first_spike_times_nograd
from sjframe.methods.surrogate.confusion import confusion_summary, plot_confusion, write_confusion_json
from sjframe.methods.surrogate.metrics import EvalAccumulator, td
from sjframe.models.base import ModelOutput


def _silent_case() -> tuple[ModelOutput, torch.Tensor]:
    """T = 6, B = 8, N = 3; three silent samples (the hand computation in the comments).

    sample y  spikes                                  paper FS   first spike      FR (counts)
    0      0  n0@1                                    0 ok       0 @1 ok          0 ok
    1      1  n1@0, n0@2 n0@3                         1 ok       1 @0 ok          0 wrong (2 vs 1)
    2      2  n0@4 (n2 peak h higher but silent)      0 wrong    0 @4 wrong       0 wrong
    3      2  n1@2 n2@2 (tie, h: n2 0.9 > n1 0.7)     1 wrong    2 @2 ok (by h)   1 wrong (tie -> low)
    4      0  silent, h peak n0                       0 ok       silent wrong     silent wrong
    5      1  silent, h peak n1                       1 ok       silent wrong     silent wrong
    6      2  silent, h peak n0                       0 wrong    silent wrong     silent wrong
    7      1  n1@5 n1 only                            1 ok       1 @5 ok          1 ok
    """
    T, B, N = 6, 8, 3
    s = torch.zeros(T, B, N)
    h = torch.zeros(T, B, N)
    s[1, 0, 0] = 1
    s[0, 1, 1] = s[2, 1, 0] = s[3, 1, 0] = 1
    s[4, 2, 0] = 1
    h[3, 2, 2] = 0.95  # a higher peak on a silent neuron changes nothing: n0 spiked
    s[2, 3, 1] = s[2, 3, 2] = 1
    h[2, 3, 1], h[2, 3, 2] = 0.7, 0.9
    h[2, 4, 0], h[3, 4, 1] = 0.8, 0.2
    h[1, 5, 1], h[1, 5, 2] = 0.6, 0.5
    h[0, 6, 0], h[4, 6, 2] = 0.9, 0.1
    s[5, 7, 1] = 1
    target = torch.tensor([0, 1, 2, 2, 0, 1, 2, 1])
    return ModelOutput(spikes=s, h=h, layer_spikes={"output": s}), target


def test_decoders_on_the_silent_case() -> None:
    out, y = _silent_case()
    t_f = first_spike_times_nograd(out.spikes, out.h)
    assert fs_predict(t_f).tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    pred, step = fs_spike_predict(out.spikes, out.h)
    assert pred.tolist() == [0, 1, 0, 2, SILENT, SILENT, SILENT, 1]
    assert step.tolist() == [1, 0, 4, 2, 6, 6, 6, 5]
    # without h the tie of sample 3 goes to the lowest index
    assert fs_spike_predict(out.spikes)[0].tolist() == [0, 1, 0, 1, SILENT, SILENT, SILENT, 1]
    assert fr_predict(out.spikes).tolist() == [0, 0, 0, 1, SILENT, SILENT, SILENT, 1]
    assert first_spike_steps(out.spikes)[3].tolist() == [6, 2, 2]


def test_tie_rule_equal_potentials_go_to_the_lowest_index() -> None:
    s = torch.zeros(3, 1, 4)
    s[1, 0, 1] = s[1, 0, 3] = s[2, 0, 0] = 1
    h = torch.zeros(3, 1, 4)
    h[1, 0, 1] = h[1, 0, 3] = 1.2
    pred, step = fs_spike_predict(s, h)
    assert (pred.item(), step.item()) == (1, 1)
    h[1, 0, 3] = 1.3
    assert fs_spike_predict(s, h)[0].item() == 3
    h[1, 0, 0] = 5.0  # neuron 0 does not spike at step 1: its potential plays no part
    assert fs_spike_predict(s, h)[0].item() == 3
    with pytest.raises(ValueError, match="h must be"):
        fs_spike_predict(s, h[:2])


def test_silent_metrics_by_hand() -> None:
    out, y = _silent_case()
    acc = EvalAccumulator(primary="fs", dt_ms=5.0)
    acc.update(out, y)
    m = acc.compute()
    assert m["silent_fraction"] == 3 / 8
    assert m["acc_fs"] == 100.0 * 5 / 8  # samples 0 1 4 5 7 (4 and 5 by potential, no spike)
    assert m["acc_fs_spike"] == 100.0 * 4 / 8  # samples 0 1 3 7
    assert m["acc_fr"] == 100.0 * 2 / 8  # samples 0 7
    assert m["acc"] == m["acc_fs"]  # the paper's rule stays the headline
    # FS curve: correct first-spike decisions at steps 0 (s1), 1 (s0), 2 (s3), 5 (s7)
    assert m["curve_fs"] == [12.5, 25.0, 37.5, 37.5, 37.5, 50.0]
    assert m["curve_fs"][-1] == m["acc_fs_spike"]
    assert m["curve_fr"][-1] == m["acc_fr"]
    # td: 50 % of the peak 50 is 25, first reached at 0-based step 1; 90 % (45) at step 5
    assert (m["td50"], m["td90"]) == (1, 5)
    assert (m["td50_ms"], m["td90_ms"]) == (5.0, 25.0)  # k * dt: the start of the decision's bin
    # confusion (rows: target; columns: predicted 0 1 2, silent)
    assert m["confusion_fs"] == [[1, 0, 0, 1], [0, 2, 0, 1], [1, 0, 1, 1]]
    assert m["confusion_fr"] == [[1, 0, 0, 1], [1, 1, 0, 1], [1, 1, 0, 1]]
    for kind in ("fs", "fr"):
        c = m[f"confusion_{kind}"]
        assert sum(map(sum, c)) == 8 and sum(r[-1] for r in c) == 3
        assert 100.0 * sum(c[i][i] for i in range(3)) / 8 == m["acc_fs_spike" if kind == "fs" else "acc_fr"]


def test_all_silent_and_no_silent() -> None:
    T, B, N = 4, 5, 2
    h = torch.rand(T, B, N)
    acc = EvalAccumulator(primary="fr")
    acc.update(ModelOutput(spikes=torch.zeros(T, B, N), h=h), torch.zeros(B, dtype=torch.long))
    m = acc.compute()
    assert m["silent_fraction"] == 1.0 and m["acc_fs_spike"] == 0.0 and m["acc_fr"] == 0.0
    assert m["curve_fs"] == [0.0] * T and m["td50"] is None
    assert m["confusion_fs"] == [[0, 0, 5], [0, 0, 0]]
    s = torch.zeros(T, B, N)
    s[0, :, 0] = 1
    acc = EvalAccumulator()
    acc.update(ModelOutput(spikes=s, h=h), torch.zeros(B, dtype=torch.long))
    m = acc.compute()
    assert m["silent_fraction"] == 0.0 and m["acc_fs"] == m["acc_fs_spike"] == m["acc_fr"] == 100.0


def test_td_convention_hand_built() -> None:
    # one sample decided at 0-based step 3 (t_F = 4) with dt = 2 ms: td = 3 steps, 6 ms
    s = torch.zeros(8, 1, 2)
    s[3, 0, 1] = 1
    acc = EvalAccumulator(primary="fs", dt_ms=2.0)
    acc.update(ModelOutput(spikes=s, h=torch.zeros(8, 1, 2)), torch.tensor([1]))
    m = acc.compute()
    assert m["curve_fs"] == [0, 0, 0, 100, 100, 100, 100, 100]
    assert (m["td50"], m["td90"], m["td50_ms"], m["td90_ms"]) == (3, 3, 6.0, 6.0)
    assert td(m["curve_fs"], 50) == 3


def test_silent_state_sums_like_an_all_reduce() -> None:
    out, y = _silent_case()
    a, b, whole = EvalAccumulator(), EvalAccumulator(), EvalAccumulator()
    first = ModelOutput(spikes=out.spikes[:, :3], h=out.h[:, :3])
    second = ModelOutput(spikes=out.spikes[:, 3:], h=out.h[:, 3:])
    a.update(first, y[:3])
    b.update(second, y[3:])
    whole.update(ModelOutput(spikes=out.spikes, h=out.h), y)
    sa, sb = a.state_tensors(), b.state_tensors()
    assert list(sa) == list(sb) and all(v.dtype == torch.float64 for v in sa.values())
    for key in sa:
        sa[key] += sb[key]
    got, want = a.compute(), whole.compute()
    for key in ("silent_fraction", "acc_fs", "acc_fs_spike", "acc_fr", "confusion_fs", "confusion_fr", "curve_fs"):
        assert got[key] == want[key], key


def test_target_outside_the_output_is_an_error() -> None:
    out, _ = _silent_case()
    with pytest.raises(ValueError, match="outside"):
        EvalAccumulator().update(out, torch.tensor([0, 1, 2, 3, 0, 0, 0, 0]))


def test_confusion_json_and_plot(tmp_path) -> None:
    out, y = _silent_case()
    acc = EvalAccumulator()
    acc.update(out, y)
    m = acc.compute()
    path = write_confusion_json(m["confusion_fs"], tmp_path / "r" / "confusion_fs.json", "fs", ["a", "b", "c"])
    data = json.loads(path.read_text())
    assert data["columns"] == ["a", "b", "c", "silent"] and data["counts"] == m["confusion_fs"]
    assert math.isclose(data["accuracy"], m["acc_fs_spike"]) and data["silent_fraction"] == m["silent_fraction"]
    assert data["per_class"][1] == {"class": "b", "n": 3, "correct": 2, "silent": 1,
                                    "accuracy": 200.0 / 3, "silent_fraction": 1 / 3}
    assert not list((tmp_path / "r").glob("*.tmp"))
    png = plot_confusion(m["confusion_fr"], tmp_path / "p" / "confusion_fr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_confusion(m["confusion_fr"], tmp_path / "p" / "counts.png", normalise=False, title="x")
    summary = confusion_summary([[0, 0, 0], [0, 0, 0]])
    assert summary["accuracy"] is None and summary["per_class"][0]["accuracy"] is None
    with pytest.raises(ValueError, match=r"\[C, C \+ 1\]"):
        confusion_summary([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="class names"):
        write_confusion_json(m["confusion_fs"], tmp_path / "x.json", class_names=["a"])
    with pytest.raises(ValueError, match="non-negative integer"):
        plot_confusion([[0.5, 0.0]], tmp_path / "y.png")
