"""Input encoders: latency (linear and the S3GD formula) and rate (Bernoulli, Poisson)."""

from __future__ import annotations

import math

import pytest
import torch

from sjframe.coding.encoders import latency_encode, rate_encode


def _spike_steps(spikes: torch.Tensor) -> list[int | None]:
    """The spike step of each input of a [T, 1, F] train (None when silent); checks at most one spike."""
    steps = []
    for f in range(spikes.shape[2]):
        where = torch.nonzero(spikes[:, 0, f]).flatten().tolist()
        assert len(where) <= 1
        steps.append(where[0] if where else None)
    return steps


def test_latency_linear() -> None:
    x = torch.tensor([[0.0, 0.5, 1.0, 0.25]])
    spikes = latency_encode(x, 5)
    assert spikes.shape == (5, 1, 4) and spikes.dtype == torch.float32
    assert _spike_steps(spikes) == [4, 2, 0, 3]
    assert _spike_steps(latency_encode(x, 5, invert=False)) == [0, 2, 4, 1]
    assert _spike_steps(latency_encode(x, 10, t_min=2, t_max=6)) == [6, 4, 2, 5]
    assert _spike_steps(latency_encode(x, 5, threshold=0.3)) == [None, 2, 0, None]


def test_latency_s3gd_formula() -> None:
    x = torch.tensor([[1.0, 0.3, 0.2, 0.0, 0.5]])
    expected = [math.floor(20 * math.log(v / (v - 0.2))) for v in (1.0, 0.3)]  # 4 and 21
    expected_half = math.floor(20 * math.log(0.5 / 0.3))  # 10
    assert _spike_steps(latency_encode(x, 30, mode="s3gd")) == [expected[0], expected[1], None, None, expected_half]
    # a step beyond the window is dropped
    assert _spike_steps(latency_encode(x, 20, mode="s3gd")) == [expected[0], None, None, None, expected_half]


def test_latency_keeps_extra_dimensions() -> None:
    x = torch.rand(3, 2, 4)
    spikes = latency_encode(x, 7)
    assert spikes.shape == (7, 3, 2, 4)
    assert torch.equal(spikes.sum(dim=0), torch.ones(3, 2, 4))


def test_rate_bernoulli_reproducible_and_rate() -> None:
    x = torch.tensor([[0.0, 0.2, 0.9, 1.0]])
    a = rate_encode(x, 4000, generator=torch.Generator().manual_seed(3))
    b = rate_encode(x, 4000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (4000, 1, 4)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    rates = a.mean(dim=0)[0]
    assert rates[0] == 0.0 and rates[3] == 1.0
    assert abs(float(rates[1]) - 0.2) < 0.03 and abs(float(rates[2]) - 0.9) < 0.03
    half = rate_encode(x, 4000, max_rate=0.5, generator=torch.Generator().manual_seed(4)).mean(dim=0)[0]
    assert abs(float(half[2]) - 0.45) < 0.03


def test_rate_poisson() -> None:
    x = torch.full((1, 2), 1.0)
    counts = rate_encode(x, 4000, mode="poisson", max_rate=2.0, generator=torch.Generator().manual_seed(5))
    assert abs(float(counts.mean()) - 2.0) < 0.1 and float(counts.max()) > 1
    clamped = rate_encode(x, 100, mode="poisson", max_rate=2.0, clamp=True, generator=torch.Generator().manual_seed(5))
    assert float(clamped.max()) == 1.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: latency_encode(torch.tensor([[1.5]]), 5), r"\[0, 1\]"),
        (lambda: latency_encode(torch.tensor([[float("nan")]]), 5), "NaN"),
        (lambda: latency_encode(torch.tensor([[1]]), 5), "floating point"),
        (lambda: latency_encode(torch.tensor([[0.5]]), 0), "T must be"),
        (lambda: latency_encode(torch.tensor([[0.5]]), 5, t_max=5), "t_max"),
        (lambda: latency_encode(torch.tensor([[0.5]]), 5, t_min=3, t_max=2), "t_min"),
        (lambda: latency_encode(torch.tensor([[0.5]]), 5, mode="log"), "mode"),
        (lambda: rate_encode(torch.tensor([[0.5]]), 5, max_rate=2.0), "max_rate"),
        (lambda: rate_encode(torch.tensor([[0.5]]), 5, mode="gauss"), "mode"),
    ],
)
def test_encoder_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
