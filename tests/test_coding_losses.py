"""FS / FR / rate / logits / spike-count losses and the FS / FR decoders."""

from __future__ import annotations

import math

import pytest
import torch

from sjframe.coding.decode import SILENT, fr_predict, fs_predict
from sjframe.coding.losses import fr_loss, fs_loss, logits_nll_loss, rate_ce_loss, spike_count_loss


def _fs_by_hand(t_f: list[list[float]], target: list[int], alpha0: float, lam: float, beta0: float, T_in: int) -> float:
    total = 0.0
    for row, y in zip(t_f, target):
        z = [math.exp(-alpha0 * t) for t in row]
        ce = -math.log(z[y] / sum(z))
        reg = lam * (math.exp(beta0 * row[y]) - 1.0) if row[y] > T_in else 0.0
        total += ce + reg
    return total / len(target)


def test_fs_loss_value() -> None:
    t_f = [[3.0, 12.0, 5.0], [11.0, 13.0, 12.0]]  # T_in = 10: the second sample's target (index 2) is silent
    target = [0, 2]
    got = fs_loss(torch.tensor(t_f, dtype=torch.float64), torch.tensor(target), 0.2, (0.01, 0.02), 10)
    assert math.isclose(float(got), _fs_by_hand(t_f, target, 0.2, 0.01, 0.02, 10), rel_tol=1e-12)
    no_reg = fs_loss(torch.tensor(t_f, dtype=torch.float64), torch.tensor(target), 0.2)
    assert math.isclose(float(no_reg), _fs_by_hand(t_f, target, 0.2, 0.0, 0.02, 10), rel_tol=1e-12)
    assert float(got) > float(no_reg)


def test_fs_loss_large_times_are_stable() -> None:
    t_f = torch.tensor([[5000.0, 5001.0, 5003.0]])
    loss = fs_loss(t_f, torch.tensor([0]), 1.0)
    assert torch.isfinite(loss)
    assert math.isclose(float(loss), _fs_by_hand([[0.0, 1.0, 3.0]], [0], 1.0, 0.0, 0.0, 1), rel_tol=1e-5)


def test_fs_loss_gradient_by_finite_differences() -> None:
    t_f = torch.tensor([[3.2, 14.1, 5.7, 9.3], [12.4, 2.2, 15.3, 1.9], [7.7, 7.1, 6.0, 13.5]], dtype=torch.float64)
    target = torch.tensor([0, 2, 3])  # targets 2 and 3 of samples 1, 2 are beyond T_in = 12 (silent)
    t_f.requires_grad_(True)
    loss = fs_loss(t_f, target, 0.3, (0.05, 0.1), 12)
    (grad,) = torch.autograd.grad(loss, t_f)
    eps = 1e-6
    numeric = torch.zeros_like(t_f)
    for i in range(t_f.shape[0]):
        for j in range(t_f.shape[1]):
            plus, minus = t_f.detach().clone(), t_f.detach().clone()
            plus[i, j] += eps
            minus[i, j] -= eps
            f_plus = fs_loss(plus, target, 0.3, (0.05, 0.1), 12)
            f_minus = fs_loss(minus, target, 0.3, (0.05, 0.1), 12)
            numeric[i, j] = (f_plus - f_minus) / (2 * eps)
    assert torch.allclose(grad, numeric, atol=1e-7)
    assert grad[1, 2] > 0 and grad[2, 3] > 0  # a silent target is pushed earlier


def test_fs_loss_errors() -> None:
    t_f, y = torch.rand(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="T_in"):
        fs_loss(t_f, y, 0.2, (0.01, 0.02))
    with pytest.raises(ValueError, match="target values"):
        fs_loss(t_f, torch.tensor([0, 3]), 0.2)
    with pytest.raises(ValueError, match="target must be"):
        fs_loss(t_f, torch.tensor([0]), 0.2)
    with pytest.raises(ValueError, match="integer class"):
        fs_loss(t_f, torch.tensor([0.0, 1.0]), 0.2)
    with pytest.raises(ValueError, match="NaN"):
        fs_loss(torch.tensor([[1.0, float("nan"), 2.0]]), torch.tensor([0]), 0.2)
    with pytest.raises(ValueError, match="alpha0"):
        fs_loss(t_f, y, 0.0)
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        fs_loss(torch.rand(4, 2, 3), y, 0.2)


def test_fr_loss_value() -> None:
    spikes = torch.zeros(4, 1, 3)
    spikes[:, 0, 0] = torch.tensor([1.0, 0.0, 1.0, 1.0])  # rate 0.75
    spikes[1, 0, 2] = 1.0  # rate 0.25
    rates = [0.75, 0.0, 0.25]
    z = [math.exp(5.0 * r) for r in rates]
    expected = -math.log(z[2] / sum(z))
    assert math.isclose(float(fr_loss(spikes, torch.tensor([2]), 5.0)), expected, rel_tol=1e-6)


def test_rate_ce_loss_is_time_average_of_per_step_cross_entropy() -> None:
    spikes = (torch.rand(6, 3, 4) < 0.4).float()
    target = torch.tensor([1, 0, 3])
    expected = 0.0
    for t in range(6):
        for b in range(3):
            row = spikes[t, b].tolist()
            expected += -(row[target[b]] - math.log(sum(math.exp(v) for v in row)))
    expected /= 6 * 3
    assert math.isclose(float(rate_ce_loss(spikes, target)), expected, rel_tol=1e-6)


def test_logits_nll_loss() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    expected = -(0.5 - math.log(math.exp(2.0) + math.exp(-1.0) + math.exp(0.5)))
    assert math.isclose(float(logits_nll_loss(logits, torch.tensor([2]))), expected, rel_tol=1e-6)


def test_spike_count_loss() -> None:
    n_s = torch.tensor(4.0, requires_grad=True)
    loss = spike_count_loss(n_s, 2.5, 0.5)
    assert math.isclose(float(loss.detach()), 0.75)
    loss.backward()
    assert float(n_s.grad) == 0.5
    with pytest.raises(ValueError, match="n_s"):
        spike_count_loss(torch.tensor([1.0, 2.0]), 1.0, 1.0)
    with pytest.raises(ValueError, match="lambda_s"):
        spike_count_loss(torch.tensor(1.0), 1.0, float("nan"))


def test_decoders() -> None:
    t_f = torch.tensor([[5.0, 2.0, 9.0], [4.0, 4.0, 7.0], [12.0, 11.0, 13.0]])
    assert fs_predict(t_f).tolist() == [1, 0, 1]  # ties go to the lower index
    spikes = torch.zeros(5, 3, 3)
    spikes[0:3, 0, 2] = 1.0
    spikes[0:4, 0, 1] = 1.0  # sample 0: neuron 1 has the most spikes
    spikes[1, 1, 0] = spikes[2, 1, 2] = 1.0  # sample 1: tie 1-1 -> neuron 0
    assert fr_predict(spikes).tolist() == [1, 0, SILENT]  # sample 2 is silent: no rate decision (-1)
    with pytest.raises(ValueError, match=r"\[T, B, N\]"):
        fr_predict(torch.zeros(3, 3))
