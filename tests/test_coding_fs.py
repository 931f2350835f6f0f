"""The first-spike encoder: forward on hand-made spike trains, Gaussian-window backward, guards."""

from __future__ import annotations

import math

import pytest
import torch

from sjframe.coding.fs import encoded_times, first_spike_times, first_spike_times_nograd, gaussian_window


def _hand_made() -> tuple[torch.Tensor, torch.Tensor]:
    """T = 6, B = 1, N = 5: neurons 0 and 3 spike, 1, 2 and 4 are silent."""
    T, N = 6, 5
    spikes = torch.zeros(T, 1, N)
    spikes[2, 0, 0] = spikes[4, 0, 0] = 1.0  # neuron 0: first spike at step index 2 -> t_F = 3
    spikes[0, 0, 3] = 1.0  # neuron 3: first spike at step index 0 -> t_F = 1
    h = torch.zeros(T, 1, N)
    h[:, 0, 0] = torch.tensor([0.1, 0.5, 1.1, 0.0, 1.05, 0.2])  # max 1.1
    h[:, 0, 1] = torch.tensor([0.1, 0.9, 0.3, 0.9, 0.2, 0.0])  # max 0.9, tied at steps 1 and 3
    h[:, 0, 2] = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1, 0.0])  # max 0.5
    h[:, 0, 3] = torch.tensor([1.2, 0.0, 0.0, 0.0, 0.0, 0.0])  # max 1.2
    h[:, 0, 4] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.9, 0.0])  # max 0.9: ties with neuron 1
    return spikes, h


def test_hand_made_first_spike_times() -> None:
    spikes, h = _hand_made()
    # ranks by max potential: n3 (1.2) 1, n0 (1.1) 2, n1 (0.9) 3, n4 (0.9, higher index) 4, n2 (0.5) 5
    expected = torch.tensor([[3.0, 6 + 3, 6 + 5, 1.0, 6 + 4]])
    t_f = first_spike_times(spikes, h, D=2, A=1.0)
    assert t_f.dtype == torch.float32 and t_f.shape == (1, 5)
    assert torch.equal(t_f, expected)
    assert torch.equal(first_spike_times_nograd(spikes, h), expected)


def test_encoded_times_and_q_ties() -> None:
    spikes, h = _hand_made()
    enc = encoded_times(spikes, h)[:, 0]  # [T, N]
    # neuron 1 (rank 3) potentials [0.1, 0.9, 0.3, 0.9, 0.2, 0.0]: q = [4, 0, 2, 1, 3, 5] (the tie goes to the earlier step)
    assert torch.allclose(enc[:, 1], torch.tensor([9.04, 9.00, 9.02, 9.01, 9.03, 9.05], dtype=torch.float64))
    # neuron 0 (rank 2): spikes at steps 3 and 5 (1-based); elsewhere 8 + 0.01 q with q of [0.1, 0.5, -, 0.0, -, 0.2]
    assert enc[2, 0] == 3.0 and enc[4, 0] == 5.0
    assert torch.allclose(enc[[0, 1, 3, 5], 0], torch.tensor([8.04, 8.02, 8.05, 8.03], dtype=torch.float64))
    # the min over time of the encoded times is t_F
    assert torch.equal(enc.min(dim=0).values.float(), first_spike_times_nograd(spikes, h)[0])


def test_min_of_encoded_times_random() -> None:
    spikes = (torch.rand(30, 4, 7) < 0.05).float()
    h = torch.randn(30, 4, 7)
    enc = encoded_times(spikes, h)
    assert torch.equal(enc.min(dim=0).values, first_spike_times_nograd(spikes.double(), h.double()))


def _explicit_gradient(spikes: torch.Tensor, weights: torch.Tensor, D: int, A: float, normalised: bool) -> torch.Tensor:
    """dL/dS for L = sum(weights * t_F), written with plain loops."""
    T, B, N = spikes.shape
    sigma = T // D
    width = min(6 * sigma + 1, 2 * (T // 2) + 1)
    centre = (width - 1) // 2
    factor = 1.0 / (2.0 * math.pi * sigma) if normalised else 1.0
    g = [factor * math.exp(-((k - centre) ** 2) / (2.0 * sigma**2)) for k in range(width)]
    out = torch.zeros(T, B, N, dtype=torch.float64)
    for b in range(B):
        for n in range(N):
            steps = [t for t in range(T) if spikes[t, b, n] > 0]
            d = [0.0] * T
            if steps:
                d[steps[0]] = float(weights[b, n])
            else:
                d = [float(weights[b, n])] * T
            for t in range(T):
                acc = 0.0
                for k in range(width):
                    src = t + k - centre
                    if 0 <= src < T:
                        acc += d[src] * g[k]
                out[t, b, n] = -A * acc
    return out


@pytest.mark.parametrize("window", ["peak", "normalised"])
@pytest.mark.parametrize(("T", "D"), [(40, 4), (10, 1), (17, 3)])
def test_backward_is_gaussian_window_conv(window: str, T: int, D: int) -> None:
    B, N, A = 3, 4, 7.5
    spikes = (torch.rand(T, B, N, dtype=torch.float64) < 0.08).double()
    spikes[:, 0, 1] = 0.0  # at least one silent neuron
    spikes[T // 2, 1, 2] = 1.0  # at least one spiking neuron
    spikes.requires_grad_(True)
    h = torch.randn(T, B, N, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(B, N, dtype=torch.float64)
    t_f = first_spike_times(spikes, h, D=D, A=A, window=window)
    (weights * t_f).sum().backward()
    expected = _explicit_gradient(spikes.detach(), weights, D, A, window == "normalised")
    assert torch.allclose(spikes.grad, expected, atol=1e-10, rtol=1e-10)
    assert h.grad is None  # no gradient to the potential


def test_window_shape_and_values() -> None:
    g = gaussian_window(100, 16)  # sigma 6 -> W = 37, peak 1 at the centre
    assert g.shape == (37,) and g[18] == 1.0 and torch.allclose(g, g.flip(0))
    g = gaussian_window(10, 1)  # sigma 10 -> 6 sigma + 1 = 61 capped at 2 * 5 + 1 = 11
    assert g.shape == (11,)
    gn = gaussian_window(100, 16, "normalised", dtype=torch.float64)
    assert math.isclose(float(gn[18]), 1.0 / (2 * math.pi * 6))


def test_half_precision_spikes_give_float32_times_and_half_gradients() -> None:
    spikes = (torch.rand(20, 2, 3) < 0.1).half().requires_grad_(True)
    h = torch.randn(20, 2, 3).half()
    t_f = first_spike_times(spikes, h, D=4, A=2.0)
    assert t_f.dtype == torch.float32
    t_f.sum().backward()
    assert spikes.grad.dtype == torch.float16 and torch.isfinite(spikes.grad).all()


def test_short_window_guard() -> None:
    spikes = torch.zeros(8, 1, 2, requires_grad=True)
    h = torch.randn(8, 1, 2)
    with pytest.raises(ValueError, match="shorter than D"):
        first_spike_times(spikes, h, D=16, A=1.0)
    with torch.no_grad():  # the forward alone (evaluation) works on any window
        assert first_spike_times(spikes, h, D=16, A=1.0).shape == (1, 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spikes": torch.zeros(4, 2)}, "time-major"),
        ({"h": torch.zeros(4, 2, 2)}, "shape of spikes"),
        ({"h": torch.full((4, 2, 3), float("nan"))}, "NaN"),
        ({"D": 0}, "D must be"),
        ({"A": float("inf")}, "A must be"),
        ({"window": "gauss"}, "window must be"),
        ({"spikes": torch.zeros(4, 2, 3, dtype=torch.int64)}, "floating point"),
    ],
)
def test_bad_inputs(kwargs: dict, match: str) -> None:
    args = {"spikes": torch.zeros(4, 2, 3), "h": torch.zeros(4, 2, 3), "D": 2, "A": 1.0, "window": "peak"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        first_spike_times(**args)
