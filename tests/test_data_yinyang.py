"""Yin-Yang generator (exact published class counts) and its data set encodings."""

from __future__ import annotations

import math

import pytest
import torch

from sjframe.data import build_dataset, time_major_collate
from sjframe.data.yinyang import R_BIG, YINYANG_SPLITS, encode_latency, make_yinyang, yinyang_class

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "split, counts",
    [("train", [1681, 1702, 1617]), ("val", [316, 336, 348]), ("test", [350, 316, 334])],
)
def test_published_class_counts(split: str, counts: list[int]) -> None:
    X, y = make_yinyang(*YINYANG_SPLITS[split])
    assert X.dtype == torch.float32 and y.dtype == torch.int64
    assert X.shape == (sum(counts), 4)
    assert torch.bincount(y, minlength=3).tolist() == counts


def test_samples_are_consistent_points_of_the_disc() -> None:
    X, y = make_yinyang(300, 7)
    assert torch.allclose(X[:, 2], 1 - X[:, 0]) and torch.allclose(X[:, 3], 1 - X[:, 1])
    radius = torch.hypot(X[:, 0].double() - R_BIG, X[:, 1].double() - R_BIG)
    assert bool((radius <= R_BIG + 1e-6).all())
    # the label is the region of the point (float32 rounding can only matter on a boundary)
    agree = sum(yinyang_class(float(a), float(b)) == int(c) for (a, b), c in zip(X[:, :2].double().tolist(), y))
    assert agree >= 299
    # same seed, same data; another seed, other data
    X2, y2 = make_yinyang(300, 7)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    assert not torch.equal(X, make_yinyang(300, 8)[0])


def test_region_classes() -> None:
    assert yinyang_class(0.75, 0.5) == 2  # right dot
    assert yinyang_class(0.25, 0.5) == 2  # left dot
    assert yinyang_class(0.5, 0.9) == 1  # upper half, far from the right dot
    assert yinyang_class(0.5, 0.1) == 0  # lower half


def test_latency_encoding_places_one_spike_per_input_and_bias() -> None:
    ds = build_dataset("yinyang", "test", T=30, t_min=2.0, t_span=20.0, bias_step=11)
    assert len(ds) == 1000 and ds.input_shape == (5,) and ds.num_classes == 3 and ds.dt_ms is None
    X, y = make_yinyang(*YINYANG_SPLITS["test"])
    for i in (0, 1, 517):
        x, label = ds[i]
        assert x.shape == (30, 5) and x.dtype == torch.float32 and label == int(y[i])
        assert x.sum(0).tolist() == [1.0, 1.0, 1.0, 1.0, 1.0]
        for j in range(4):
            expected = math.floor(2.0 + float(X[i, j]) * 20.0 + 0.5)
            assert int(x[:, j].argmax()) == expected
        assert int(x[:, 4].argmax()) == 11
    xb, yb = time_major_collate([ds[0], ds[1], ds[2]])
    assert xb.shape == (30, 3, 5) and yb.dtype == torch.long


def test_latency_without_bias_and_raw() -> None:
    ds = build_dataset("yinyang", "val", bias=False)
    assert ds[0][0].shape == (20, 4) and ds.input_shape == (4,)
    raw = build_dataset("yinyang", "val", encoding="raw")
    X, y = make_yinyang(*YINYANG_SPLITS["val"])
    assert raw.input_shape == (4,) and not raw.time_major
    assert torch.equal(raw[3][0], X[3]) and raw[3][1] == int(y[3])


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown option"):
        build_dataset("yinyang", "train", val_fraction=0.2)
    with pytest.raises(ValueError, match="T=10 too short"):
        build_dataset("yinyang", "test", T=10)
    with pytest.raises(ValueError, match="bias_step"):
        build_dataset("yinyang", "test", T=20, bias_step=25)
    with pytest.raises(ValueError, match="encoding"):
        build_dataset("yinyang", "test", encoding="rate")
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("yin_yang", "test")
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset("yinyang", "validation")
    with pytest.raises(ValueError, match="n must be"):
        make_yinyang(-1, 0)



def test_latency_substep_exact_values_by_hand() -> None:
    # t_min 1, t_span 10, tau_s 2: v = 0.25 -> s = 3.5: step 3, amplitude exp(-(4 - 3.5) / 2) = exp(-1/4);
    # v = 0.75 -> s = 8.5: step 8, exp(-1/4); v = 0 -> s = 1 (a whole step): step 1, exp(-1/2);
    # v = 0.98 -> s = 10.8: step 10, exp(-0.1); bias 1 at step 5
    frames, steps = encode_latency(torch.tensor([[0.25, 0.75, 0.0, 0.98]]), 14, 1.0, 10.0, substep=True,
                                   tau_s=2.0, bias_step=5)
    expected = torch.zeros(1, 14, 5)
    expected[0, 3, 0] = math.exp(-0.25)
    expected[0, 8, 1] = math.exp(-0.25)
    expected[0, 1, 2] = math.exp(-0.5)
    expected[0, 10, 3] = math.exp(-0.1)
    expected[0, 5, 4] = 1.0
    assert steps.tolist() == [[3, 8, 1, 10]]
    assert torch.allclose(frames, expected, rtol=1e-6, atol=0)
    # the same values through latency: ones at the rounded steps 4 (3.5 rounds up), 9, 1, 11
    frames, steps = encode_latency(torch.tensor([[0.25, 0.75, 0.0, 0.98]]), 14, 1.0, 10.0, bias_step=None)
    assert steps.tolist() == [[4, 9, 1, 11]] and frames.shape == (1, 14, 4) and frames.sum() == 4


def test_latency_substep_current_is_the_continuous_one() -> None:
    """CuLIF's I_n = gam I_{n-1} + x_n, fed the encoded column, equals exp(-(n + 1 - s) / tau_s) after the event."""
    tau_s = 5.0
    gam = math.exp(-1.0 / tau_s)
    for v in (0.0, 0.137, 0.5, 0.999):
        s = 1.0 + v * 30.0
        frames, _ = encode_latency(torch.tensor([[v, v, v, v]]), 40, 1.0, 30.0, substep=True, tau_s=tau_s)
        cur = 0.0
        for n in range(40):
            cur = gam * cur + float(frames[0, n, 0])
            want = math.exp(-(n + 1 - s) / tau_s) if n + 1 > s else 0.0
            assert cur == pytest.approx(want, rel=1e-6, abs=1e-12)


def test_latency_substep_data_set() -> None:
    ds = build_dataset("yinyang", "test", encoding="latency_substep", T=45, t_min=1.0, t_span=30.0,
                       bias_step=15, tau_s=5.0)
    assert ds.input_shape == (5,) and ds.time_major and ds.dt_ms is None
    X, y = make_yinyang(*YINYANG_SPLITS["test"])
    for i in (0, 7, 999):
        frame, label = ds[i]
        assert frame.shape == (45, 5) and frame.dtype == torch.float32 and label == int(y[i])
        assert ((frame > 0).sum(0) == 1).all()  # one event per input and the bias
        for j in range(4):
            s = 1.0 + float(X[i, j]) * 30.0
            k = math.floor(s)
            assert int(frame[:, j].argmax()) == k
            assert float(frame[k, j]) == pytest.approx(math.exp(-(k + 1 - s) / 5.0), rel=1e-6)
            assert k + 1 + 5.0 * math.log(float(frame[k, j])) == pytest.approx(s, abs=1e-4)  # invertible
        assert float(frame[15, 4]) == 1.0
    with pytest.raises(ValueError, match="T=31 too short"):
        build_dataset("yinyang", "test", encoding="latency_substep", T=31, t_min=1.0, t_span=30.0)
    assert len(build_dataset("yinyang", "test", encoding="latency_substep", T=32, t_min=1.0, t_span=30.0)) == 1000
    with pytest.raises(ValueError, match="tau_s"):
        build_dataset("yinyang", "test", encoding="latency_substep", tau_s=0.0)


def test_default_config_substep_tau_matches_the_first_layer() -> None:
    """latency_substep's amplitudes are exact only for the synaptic decay they assume: configs/default.yaml
    must give the encoder the first layer's tau_s."""
    from pathlib import Path

    from sjframe.core.config import load_yaml

    cfg = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")
    options = cfg["data"]["options"]
    assert options["encoding"] == "latency_substep"
    assert float(options["tau_s"]) == float(cfg["model"]["neuron1"]["tau_s_steps"])
    ds = build_dataset("yinyang", "val", T=cfg["data"]["T"], **options)
    assert ds[0][0].shape == (cfg["data"]["T"], 5)
