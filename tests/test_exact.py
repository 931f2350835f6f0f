"""Exact first-spike-time learning core: Lambert W, analytic spike times, exact gradients, loss, bumping, encodings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from sjframe.methods.exact_time.encoding import encode_mnist, encode_values
from sjframe.methods.exact_time.lambertw import BRANCH_POINT, lambertw0
from sjframe.methods.exact_time.loss import WeightBumper, exact_time_loss, predict
from sjframe.methods.exact_time.network import ExactLayer, ExactTimeNet
from sjframe.methods.exact_time.spiketime import (
    _search,
    _search_candidates,
    kappa,
    kappa_dot,
    spike_times,
    spike_times_reference,
)
from tests.conftest import requires_cuda

F64 = torch.float64
NEURONS = ["tau_equal", "tau_double"]


# ------------------------------------------------------------------------------------- Lambert W
def _random_z(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.cat([
        BRANCH_POINT + torch.rand(n, generator=g, dtype=F64) ** 4 * 0.4,  # dense near the branch point
        torch.empty(n, dtype=F64).uniform_(-0.36, 3.0, generator=g),
        10 ** torch.empty(n, dtype=F64).uniform_(-300, 300, generator=g),
        -(10 ** torch.empty(n, dtype=F64).uniform_(-300, -0.44, generator=g)),
    ])


def test_lambertw_matches_scipy_on_random_inputs() -> None:
    z = _random_z(3000, 0)
    w = lambertw0(z)
    ref = torch.from_numpy(scipy.special.lambertw(z.numpy()).real)
    assert not torch.isnan(w).any()
    # scipy itself loses digits within ~1e-6 of -1/e (it is ill-conditioned there); check the rest tightly
    far = z > BRANCH_POINT + 1e-6
    torch.testing.assert_close(w[far], ref[far], rtol=1e-13, atol=1e-15)
    near = ~far & (z > BRANCH_POINT + 1e-15)  # scipy answers NaN at the rounded -1/e itself
    assert near.sum() > 50
    torch.testing.assert_close(w[near], ref[near], rtol=0, atol=1e-8)


def test_lambertw_near_branch_point_solves_the_equation() -> None:
    delta = torch.logspace(-16, -1, 60, dtype=F64)
    z = BRANCH_POINT + delta
    w = lambertw0(z)
    assert (w >= -1).all() and (w < 0).all()
    torch.testing.assert_close(w * torch.exp(w), z, rtol=0, atol=2e-16)
    # the local expansion W = -1 + p - p^2/3, p = sqrt(2 e (z + 1/e)), fixes the branch (not W_{-1})
    p = torch.sqrt(2 * math.e * (delta + 1.2428753672788363e-17))
    torch.testing.assert_close(w, -1 + p - p * p / 3, rtol=0, atol=float(p.max()) ** 3)


def test_lambertw_special_values_and_no_solution() -> None:
    z = torch.tensor([BRANCH_POINT, 0.0, math.e, math.inf, -0.5, -1.0, -math.inf, math.nan, 1e308], dtype=F64)
    w = lambertw0(z)
    assert w[0].item() == -1.0 and w[1].item() == 0.0
    assert w[2].item() == pytest.approx(1.0, rel=1e-15)
    assert math.isinf(w[3].item()) and w[3].item() > 0
    assert torch.isnan(w[4:8]).all()  # z < -1/e (and NaN): no real solution
    assert w[8].item() == pytest.approx(float(scipy.special.lambertw(1e308).real), rel=1e-14)


def test_lambertw_float32_shapes_and_gradient() -> None:
    z = torch.linspace(-0.36, 5.0, 24, dtype=torch.float32).reshape(2, 3, 4)
    w = lambertw0(z)
    assert w.shape == z.shape and w.dtype == torch.float32
    torch.testing.assert_close(w.double(), lambertw0(z.double()), rtol=1e-6, atol=1e-6)
    z64 = torch.linspace(-0.35, 20.0, 17, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambertw0, (z64,))


def test_lambertw_rejects_non_float() -> None:
    with pytest.raises(ValueError, match="floating"):
        lambertw0(torch.tensor([1, 2]))


# ------------------------------------------------------------------------------ spike times, forward
def _problem(neuron: str, B: int = 6, n_in: int = 7, N: int = 5, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(B, n_in, generator=g, dtype=F64) * 2
    t[0, 2] = math.inf  # an input that does not spike
    w = torch.randn(n_in, N, generator=g, dtype=F64) * 1.5 + (0.8 if neuron == "tau_equal" else 1.5)
    return t, w


@pytest.mark.parametrize("neuron", NEURONS)
def test_spike_times_match_brute_force_simulation(neuron: str) -> None:
    t, w = _problem(neuron)
    T = spike_times(t, w, neuron)
    R = spike_times_reference(t, w, neuron, dt=1e-4)
    assert torch.equal(torch.isinf(T), torch.isinf(R))
    assert torch.isfinite(T).sum() > 10 and torch.isinf(T).sum() >= 0
    fin = torch.isfinite(T)
    # the grid reference is the first grid point at or above threshold: T <= R < T + dt
    assert ((R[fin] - T[fin]) >= -1e-9).all() and ((R[fin] - T[fin]) < 1e-4 + 1e-9).all()


@pytest.mark.parametrize("neuron", NEURONS)
def test_potential_reaches_threshold_exactly_at_the_spike_time(neuron: str) -> None:
    t, w = _problem(neuron, B=20, seed=3)
    T = spike_times(t, w, neuron)
    rhs = 1.0 if neuron == "tau_equal" else 0.5
    s = T.unsqueeze(1) - t.unsqueeze(2)  # [B, I, N]
    causal = (s > 0) & torch.isfinite(s)
    v = (torch.where(causal, kappa(torch.where(causal, s, 0.0), neuron), 0.0) * w).sum(1)
    fin = torch.isfinite(T)
    torch.testing.assert_close(v[fin], torch.full_like(v[fin], rhs), rtol=0, atol=1e-12)
    vdot = (torch.where(causal, kappa_dot(torch.where(causal, s, 0.0), neuron), 0.0) * w).sum(1)
    assert (vdot[fin] > 0).all()  # an upward crossing


@pytest.mark.parametrize("neuron", NEURONS)
def test_fast_search_equals_the_spec_candidate_search(neuron: str) -> None:
    g = torch.Generator().manual_seed(7)
    t = torch.rand(300, 12, generator=g, dtype=F64) * 3
    t[torch.rand(300, 12, generator=g) < 0.1] = math.inf
    w = torch.randn(12, 9, generator=g, dtype=F64) * 1.2 + 0.4
    T1, k1 = _search(t, w, neuron, 1.0)
    T2, k2 = _search_candidates(t, w, neuron, 1.0)
    assert torch.equal(torch.isinf(T1), torch.isinf(T2)) and torch.equal(k1, k2)
    assert 0.1 < torch.isinf(T1).double().mean() < 0.9  # both regimes present
    fin = torch.isfinite(T1)
    torch.testing.assert_close(T1[fin], T2[fin], rtol=0, atol=1e-12)


def test_silent_neurons_give_inf_and_no_nan() -> None:
    t = torch.tensor([[0.1, 0.5, 1.0], [0.2, math.inf, math.inf], [math.inf, math.inf, math.inf]], dtype=F64)
    # column 0: weak positive weights, max of the potential below threshold (z < -1/e for every prefix)
    # column 1: negative weights; column 2: strong weights (spikes where there is input)
    w = torch.tensor([[0.3, -1.0, 5.0], [0.3, -2.0, 5.0], [0.3, -0.5, 5.0]], dtype=F64, requires_grad=True)
    tt = t.clone().requires_grad_()
    for neuron in NEURONS:
        T = spike_times(tt, w, neuron)
        assert torch.isinf(T[:, :2]).all() and torch.isinf(T[2]).all()
        assert torch.isfinite(T[:2, 2]).all()
        gt, gw = torch.autograd.grad(torch.where(torch.isfinite(T), T, 0.0).sum(), (tt, w))
        assert not torch.isnan(gt).any() and not torch.isnan(gw).any()
        assert (gw[:, :2] == 0).all() and (gt[2] == 0).all()


def test_spike_times_validate_inputs() -> None:
    t, w = _problem("tau_equal")
    with pytest.raises(ValueError, match="rows"):
        spike_times(t, w[:-1])
    with pytest.raises(ValueError, match="NaN"):
        spike_times(torch.full_like(t, math.nan), w)
    with pytest.raises(ValueError, match="dtype"):
        spike_times(t.float(), w)
    with pytest.raises(ValueError, match="neuron"):
        spike_times(t, w, "tau_triple")
    with pytest.raises(ValueError, match=r"\[B, I\]"):
        spike_times(t[0], w)


# ------------------------------------------------------------------------------ spike times, gradients
@pytest.mark.parametrize("neuron", NEURONS)
def test_gradients_match_finite_differences(neuron: str) -> None:
    t, w = _problem(neuron, B=4, n_in=6, N=4, seed=11)
    t.requires_grad_()
    w.requires_grad_()
    T0 = spike_times(t, w, neuron)
    assert torch.isfinite(T0).sum() >= 8

    def f(t_: torch.Tensor, w_: torch.Tensor) -> torch.Tensor:
        T = spike_times(t_, w_, neuron)
        return torch.where(torch.isfinite(T), T, 0.0)

    t_fin = torch.where(torch.isfinite(t), t, 5.0).detach().requires_grad_()  # gradcheck needs finite inputs
    t_fin.data[0, 2] = 50.0  # far too late to matter: still a non-causal input
    assert torch.autograd.gradcheck(f, (t_fin, w), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradients_equal_the_spec_closed_forms_for_tau_equal() -> None:
    t = torch.tensor([[0.2, 0.6, 0.9, 3.0]], dtype=F64, requires_grad=True)
    w = torch.tensor([[1.6], [1.2], [1.0], [2.0]], dtype=F64, requires_grad=True)
    T = spike_times(t, w)
    gt, gw = torch.autograd.grad(T.sum(), (t, w))
    Tv = T.item()
    assert 0.9 < Tv < 3.0  # causal set = first three inputs
    ti, wi = t.detach()[0, :3], w.detach()[:3, 0]
    a = (wi * torch.exp(ti)).sum()
    b = (wi * ti * torch.exp(ti)).sum()
    W = b / a - Tv
    assert W.item() == pytest.approx(lambertw0(-(1 / a) * torch.exp(b / a)).item(), abs=1e-12)
    dw = -(1 / a) / (1 + W) * torch.exp(ti) * (Tv - ti)
    dt = -(1 / a) / (1 + W) * wi * torch.exp(ti) * (Tv - ti - 1)
    torch.testing.assert_close(gw[:3, 0], dw, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gt[0, :3], dt, rtol=1e-12, atol=1e-14)
    assert gw[3, 0].item() == 0.0 and gt[0, 3].item() == 0.0  # the late input is not causal


def test_per_sample_gradient_clipping() -> None:
    t, w = _problem("tau_equal", B=8, n_in=5, N=4, seed=5)
    w = w.abs() + 0.5
    wa = w.clone().requires_grad_()
    wc = w.clone().requires_grad_()
    coef = torch.linspace(-3, 3, 32, dtype=F64).reshape(8, 4)
    Ta = spike_times(t, wa)
    Tc = spike_times(t, wc, max_dw_norm=0.2)
    torch.testing.assert_close(Ta, Tc)
    (gc,) = torch.autograd.grad((torch.where(torch.isfinite(Tc), Tc, 0.0) * coef).sum(), wc)
    # the same by hand: per-sample gradients with a graph per sample, zeroed where max_i |g| > 0.2
    expected = torch.zeros_like(w)
    n_clipped = 0
    for b in range(8):
        wb = w.clone().requires_grad_()
        Tb = spike_times(t[b: b + 1], wb)
        (g,) = torch.autograd.grad((torch.where(torch.isfinite(Tb), Tb, 0.0) * coef[b]).sum(), wb)
        big = g.abs().amax(dim=0) > 0.2
        n_clipped += int(big.sum())
        expected += torch.where(big.unsqueeze(0), 0.0, g)
    assert 0 < n_clipped < 32
    torch.testing.assert_close(gc, expected, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------- network
def test_network_shapes_bias_and_errors() -> None:
    net = ExactTimeNet(4, [10, 3], [[0.9], [0.9]], [1.5, 0.5], [0.8, 0.8], seed=0)
    assert net.layers[0].weight.shape == (5, 10) and net.layers[1].weight.shape == (11, 3)
    assert net.layers[0].weight.dtype == F64
    x = encode_values(torch.rand(7, 4))
    out, hidden = net(x)
    assert out.shape == (7, 3) and len(hidden) == 1 and hidden[0].shape == (7, 10)
    again = ExactTimeNet(4, [10, 3], [[0.9], [0.9]], [1.5, 0.5], [0.8, 0.8], seed=0)
    assert torch.equal(again.layers[0].weight, net.layers[0].weight)  # seeded initialisation
    with pytest.raises(ValueError, match="one entry per layer"):
        ExactTimeNet(4, [10, 3], [[0.9]], [1.5, 0.5], [0.8, 0.8])
    with pytest.raises(ValueError, match=r"\[B, 4\]"):
        net(torch.rand(7, 5, dtype=F64))
    layer = ExactLayer(3, 2, bias_times=(), weight_mean=1.0, weight_std=0.0)
    assert torch.equal(layer.weight, torch.ones(3, 2, dtype=F64))


# ---------------------------------------------------------------------------------- loss, bumping
def test_loss_by_hand_and_silent_target() -> None:
    t = torch.tensor([[1.0, 1.5, math.inf], [math.inf, 0.7, 1.2]], dtype=F64, requires_grad=True)
    y = torch.tensor([0, 0])
    loss = exact_time_loss(t, y, xi=0.2, alpha=0.005, beta=1.0, silent_target_loss=100.0)
    first = math.log(math.exp(-1.0 / 0.2) + math.exp(-1.5 / 0.2)) + 1.0 / 0.2 + 0.005 * math.exp(1.0)
    assert loss.item() == pytest.approx((first + 100.0) / 2, rel=1e-13)
    (g,) = torch.autograd.grad(loss, t)
    assert not torch.isnan(g).any()
    assert (g[1] == 0).all() and g[0, 2] == 0  # constant loss for a silent target; silent non-target: 0
    p0 = math.exp(-1.0 / 0.2) / (math.exp(-1.0 / 0.2) + math.exp(-1.5 / 0.2))
    assert g[0, 0].item() == pytest.approx(0.5 * (-p0 / 0.2 + 1 / 0.2 + 0.005 * math.exp(1.0)), rel=1e-12)
    with pytest.raises(ValueError, match="target"):
        exact_time_loss(t, torch.tensor([0, 3]))


def test_predict_earliest_and_all_silent_is_wrong() -> None:
    t = torch.tensor([[1.0, 0.5, 2.0], [math.inf, math.inf, math.inf], [0.3, math.inf, 0.2]], dtype=F64)
    assert predict(t).tolist() == [1, -1, 2]


def test_weight_bumping_targeted_exponential_and_reset() -> None:
    layers = [ExactLayer(2, 3, (), 0.0, 0.0), ExactLayer(3, 2, (), 0.0, 0.0)]
    bumper = WeightBumper([0.3, 0.0], bump_value=0.5, exponential=True, targeted=True)
    hidden = torch.tensor([[1.0, math.inf, 1.0], [1.0, math.inf, math.inf]], dtype=F64)  # 3/6 silent > 0.3
    out = torch.tensor([[1.0, math.inf], [1.0, 1.0]], dtype=F64)
    assert bumper(layers, [hidden, out]) == 0  # the lowest offending layer only
    assert layers[0].weight[:, 0].eq(0).all() and layers[0].weight[:, 1:].eq(0.5).all()
    assert layers[1].weight.eq(0).all()
    assert bumper(layers, [hidden, out]) == 0  # consecutive: doubled
    assert layers[0].weight[:, 1:].eq(1.5).all()
    ok_hidden = torch.ones(2, 3, dtype=F64)
    assert bumper(layers, [ok_hidden, out]) == 1  # label layer: 1 of 4 silent > 0.0, reset to 0.5
    assert layers[1].weight[:, 1].eq(0.5).all() and layers[1].weight[:, 0].eq(0).all()
    assert bumper(layers, [ok_hidden, torch.ones(2, 2, dtype=F64)]) == -1
    state = bumper.state_dict()
    assert state == {"current": 0.5, "last_bumped": -1}


# ------------------------------------------------------------------------------------- encodings
def test_encodings() -> None:
    v = torch.tensor([[0.0, 1.0, 0.5, 0.25]])
    torch.testing.assert_close(encode_values(v), torch.tensor([[0.15, 2.0, 1.075, 0.6125]], dtype=F64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encode_values(torch.tensor([[1.5]]))
    img = torch.zeros(2, 28, 28, dtype=torch.uint8)
    img[:, 10:18, 10:18] = 255
    img[1, 12, 12] = 128
    t28 = encode_mnist(img)
    assert t28.shape == (2, 784)
    assert t28[0, 0].item() == pytest.approx(2.0) and t28[0, 10 * 28 + 10].item() == pytest.approx(0.15)  # bright = early
    assert t28[1, 12 * 28 + 12].item() == pytest.approx(0.15 + (1 - 128 / 255) * 1.85)
    t16 = encode_mnist(img, size=16, black_no_spike=True)
    assert t16.shape == (2, 256)
    grid = t16[0].reshape(16, 16)
    assert torch.isinf(grid[0, 0]) and torch.isfinite(grid[8, 8])  # black: no spike; bright centre: spike
    assert grid[8, 8].item() == pytest.approx(0.15, abs=1e-9)
    with pytest.raises(ValueError, match="uint8"):
        encode_mnist(img.float())
    assert np.isfinite(encode_mnist(img, size=16, black_no_spike=False).numpy()).all()


# ------------------------------------------------------------------------------------------- GPU
@requires_cuda
@pytest.mark.parametrize("neuron", NEURONS)
def test_cuda_matches_cpu(neuron: str) -> None:
    z = _random_z(500, 3)
    torch.testing.assert_close(lambertw0(z.cuda()).cpu(), lambertw0(z), rtol=1e-13, atol=1e-15, equal_nan=True)
    t, w = _problem(neuron, B=64, n_in=9, N=7, seed=2)
    out = {}
    for dev in ("cpu", "cuda"):
        td = t.to(dev).requires_grad_()
        wd = w.to(dev).requires_grad_()
        T = spike_times(td, wd, neuron, max_dw_norm=0.5)
        gt, gw = torch.autograd.grad(torch.where(torch.isfinite(T), T, 0.0).sum(), (td, wd))
        out[dev] = (T.detach().cpu(), gt.cpu(), gw.cpu())
    for a, b in zip(out["cpu"], out["cuda"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
