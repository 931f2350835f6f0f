"""Gradient modes: GradientSpec, LocalZO noise laws (statistics), Philox, neuron cores in every mode."""

from __future__ import annotations

import math

import pytest
import torch

from sjframe.neurons.adlif import AdLIF
from sjframe.neurons.culif import CuLIF, PCuLIF
from sjframe.neurons.lif import LIF
from sjframe.spike import GradientSpec, make_spike_fn
from sjframe.spike import localzo as lz
from sjframe.spike.philox import philox4x32_10, philox_uniform, philox_words
from sjframe.spike.surrogate import get_surrogate

DISTS = lz.LOCALZO_DISTRIBUTIONS


# ------------------------------------------------------------------------------------ GradientSpec
def test_spec_from_config_and_errors() -> None:
    assert GradientSpec.from_config(None).mode == "dense"
    assert GradientSpec.from_config("sparse").mode == "sparse"
    spec = GradientSpec.from_config({"mode": "localzo", "delta": 0.1, "samples": 3, "distribution": "laplace", "k": 50})
    assert (spec.delta, spec.samples, spec.distribution, spec.k) == (0.1, 3, "laplace", 50.0)
    with pytest.raises(ValueError, match="unknown gradient key"):
        GradientSpec.from_config({"mode": "sparse", "bth": 0.2})
    with pytest.raises(ValueError, match="gradient mode"):
        GradientSpec(mode="zeroth")
    with pytest.raises(ValueError, match="delta"):
        GradientSpec(delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        GradientSpec(delta=float("nan"))
    with pytest.raises(ValueError, match="samples"):
        GradientSpec(samples=0)
    with pytest.raises(ValueError, match="distribution"):
        GradientSpec(distribution="cauchy")
    with pytest.raises(ValueError, match="rng"):
        GradientSpec(rng="mt")
    with pytest.raises(ValueError, match="mode name or a mapping"):
        GradientSpec.from_config(3)


def test_fair_band_matches_spec_numbers() -> None:
    expected = {"normal": 0.7978, "laplace": 0.707, "uniform": 0.866, "sigmoid": 0.7659}
    for dist, value in expected.items():
        band = GradientSpec(mode="localzo", distribution=dist, delta=0.05).fair_band()
        assert band == pytest.approx(0.05 * value, abs=0.05 * 6e-4), dist


def test_sigmoid_constant_from_normalisation() -> None:
    # c^2 = 1 / (2 I); the original's sqrt(1/0.4262) rounds the same constant
    assert lz.sigmoid_c() == pytest.approx(math.sqrt(1 / 0.4262), abs=2e-4)


def test_fast_sigmoid_core_solves_unit_mass() -> None:
    for delta, k in ((0.05, 100.0), (0.025, 100.0), (0.1, 40.0)):
        s0 = lz.fast_sigmoid_core(delta, k)
        v = 1.0 / (1.0 + s0)
        assert 4 * k * delta * delta * (math.log1p(1.0 / s0) - v - v * v / 2) == pytest.approx(1.0, rel=1e-9)
        table = lz.quantile_table("fast_sigmoid", delta, k)
        assert float(table[0]) == pytest.approx(s0 / (k * delta), rel=1e-5)  # smallest |z| is the core edge


def test_quantile_tables_invert_the_survival() -> None:
    # normal: P(|z| > Q(w)) = exp(-w) = erfc(Q / sqrt 2)
    table = lz.quantile_table("normal").double()
    w = torch.linspace(0, lz.W_MAX, lz.TABLE_INTERVALS + 1, dtype=torch.float64)
    assert torch.allclose(torch.special.erfc(table[1:] / math.sqrt(2)).log(), -w[1:], rtol=1e-5, atol=1e-5)
    for dist in lz.TABULATED:
        q = lz.quantile_table(dist)
        assert bool((q[1:] >= q[:-1]).all()), dist


# ------------------------------------------------------------------------------------ LocalZO statistics
def _second_moment(u: torch.Tensor, dist: str, delta: float) -> torch.Tensor:
    """Exact ``E[g^2]`` of one sample of the implemented law: ``E[z^2 1{|z| > |u|/delta}] / (4 delta^2)``,
    integrated over ``w = -ln p`` (``|z| = Q(w)``, density ``e^-w``; the sampler clamps w at W_MAX)."""
    w = torch.linspace(0, lz.W_MAX, 40_001, dtype=torch.float64)
    if dist == "laplace":
        q = w / math.sqrt(2)
    elif dist == "uniform":
        q = math.sqrt(3) * (1 - torch.exp(-w))
    else:
        table = lz.quantile_table(dist).double()
        pos = w * (lz.TABLE_INTERVALS / lz.W_MAX)
        i0 = pos.floor().clamp(max=lz.TABLE_INTERVALS - 1).long()
        q = table[i0] + (pos - i0) * (table[i0 + 1] - table[i0])
    dens = torch.exp(-w)
    r = (u.abs() / delta)[:, None]
    inside = (q[None, :] > r).double() * q[None, :] ** 2
    body = torch.trapezoid(inside * dens[None, :], w, dim=1)
    tail = math.exp(-lz.W_MAX) * inside[:, -1]
    return (body + tail) / (4 * delta * delta)


def _mean_and_bound(dist: str, delta: float, samples: int, n: int, seed: int, rng: str = "torch"):
    """Mean of ``n`` estimates at 25 values of ``u`` and its exact standard error."""
    u = torch.linspace(-3.0 * delta, 3.0 * delta, 25).repeat(n, 1)
    gen = torch.Generator().manual_seed(seed)
    g = lz.localzo_estimate(u, dist, delta, samples, 100.0, rng, gen).double()
    u0 = u[0].double()
    mean_true = lz.expected_estimate(u0, dist, delta)
    var_one = _second_moment(u0, dist, delta) / samples + mean_true**2 * (1 - 1 / samples) - mean_true**2
    return u0, g.mean(0), (var_one.clamp(min=0) / n).sqrt(), g


@pytest.mark.parametrize("dist", DISTS)
def test_localzo_mean_converges_to_expected_surrogate(dist: str) -> None:
    """Mean of n estimates at 25 values of u within 5 standard errors (plus the table's 1e-4
    relative interpolation error) of the spec's expected surrogate; and the same bound rejects
    the surrogate of a 15% wider delta (so the tolerance is tight enough to catch a wrong law)."""
    delta, n = 0.05, 20_000
    u, mean, stderr, _ = _mean_and_bound(dist, delta, 1, n, seed=1)
    expected = lz.expected_estimate(u, dist, delta)
    bound = 5.0 * stderr + 1e-4 * expected + 1e-9
    assert bool(((mean - expected).abs() <= bound).all()), (dist, ((mean - expected).abs() / stderr).max())
    wrong = lz.expected_estimate(u, dist, 1.15 * delta)
    assert bool(((mean - wrong).abs() > bound).any()), dist


def test_expected_surrogates_are_the_spec_table() -> None:
    u = torch.linspace(-0.2, 0.2, 81, dtype=torch.float64)
    d = 0.05
    a = u.abs()
    table = {
        "normal": torch.exp(-u * u / (2 * d * d)) / (d * math.sqrt(2 * math.pi)),
        "laplace": (a / d + 1 / math.sqrt(2)) * torch.exp(-math.sqrt(2) * a / d) / (2 * d),
        "uniform": torch.clamp(3 - u * u / (d * d), min=0) / (4 * math.sqrt(3) * d),
        "sigmoid": (1.532 / d) * torch.sigmoid(1.532 / d * u) * (1 - torch.sigmoid(1.532 / d * u)),
        "fast_sigmoid": 1 / (1 + 100 * a) ** 2,
    }
    for dist, want in table.items():
        got = lz.expected_surrogate(dist, d).derivative(u)
        tol = 2e-3 * float(want.max()) if dist == "sigmoid" else 1e-9  # the spec rounds c to 1.532
        assert torch.allclose(got, want, atol=tol), dist


def test_localzo_samples_average_and_reduce_variance() -> None:
    _, _, _, g1 = _mean_and_bound("normal", 0.05, 1, 4000, seed=2)
    u, mean4, se4, g4 = _mean_and_bound("normal", 0.05, 4, 4000, seed=3)
    expected = lz.expected_estimate(u, "normal", 0.05)
    assert bool(((mean4 - expected).abs() <= 5 * se4 + 1e-9).all())
    inner = slice(8, 17)  # |u| <= delta: the variance of the mean of 4 samples is ~ 1/4
    ratio = g4.var(0)[inner] / g1.var(0)[inner]
    assert bool(((ratio > 0.2) & (ratio < 0.3)).all()), ratio


def test_localzo_philox_path_has_the_same_law() -> None:
    u, mean, stderr, _ = _mean_and_bound("laplace", 0.05, 1, 1500, seed=4, rng="philox")
    expected = lz.expected_estimate(u, "laplace", 0.05)
    assert bool(((mean - expected).abs() <= 5 * stderr + 1e-9).all())


def test_localzo_same_seed_same_gradient_and_fresh_noise() -> None:
    u = torch.randn(6, 50) * 0.05
    g1 = lz.localzo_estimate(u, "normal", 0.05, 2, generator=torch.Generator().manual_seed(7))
    g2 = lz.localzo_estimate(u, "normal", 0.05, 2, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    g3 = lz.localzo_estimate(u, "normal", 0.05, 2, generator=gen)
    g4 = lz.localzo_estimate(u, "normal", 0.05, 2, generator=gen)
    assert torch.equal(g1, g2) and torch.equal(g1, g3)
    assert not torch.equal(g3, g4)  # fresh noise at every call


# ------------------------------------------------------------------------------------ Philox
def test_philox_known_answers() -> None:
    def run(ctr, key):
        out = philox4x32_10(*[torch.tensor([c]) for c in ctr], *key)
        return [int(o) for o in out]

    # Random123's known-answer vectors for philox4x32_10
    assert run((0, 0, 0, 0), (0, 0)) == [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]
    assert run((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF)) == [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]
    assert run((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0)) == [
        0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1,
    ]


def test_philox_layout_and_uniformity() -> None:
    words = philox_words(10, key=5, stream=1)
    block = philox4x32_10(torch.tensor([2]), torch.tensor([0]), torch.tensor([1]), torch.tensor([0]), 5, 0)
    assert int(words[9]) == int(block[1])  # element 9 = word 1 of block 2
    u = philox_uniform(40_000, key=123, stream=0)
    assert float(u.min()) > 0 and float(u.max()) < 1
    hist = torch.histc(u, bins=20, min=0, max=1)
    chi2 = float(((hist - 2000) ** 2 / 2000).sum())
    assert chi2 < 50  # 19 dof: p ~ 1e-4
    assert not torch.equal(u[:100], philox_uniform(100, key=124, stream=0))
    with pytest.raises(ValueError, match="key"):
        philox_words(4, key=-1, stream=0)


# ------------------------------------------------------------------------------------ neuron cores
def _neurons(gradient, surrogate):
    torch.manual_seed(11)
    kw = {"surrogate": surrogate, "gradient": gradient}
    return [
        CuLIF(tau_m=3.0, tau_s=4.0, theta=0.3, **kw),
        PCuLIF(tau_m=3.0, tau_s=4.0, theta=0.3, per_neuron=True, num_neurons=9, **kw),
        AdLIF(num_neurons=9, tau_m=3.0, theta=0.3, **kw),
        LIF(tau_m=4.0, theta=0.3, **kw),
    ]


def _grads(neuron, x, gen_seed=None):
    if gen_seed is not None:
        torch.manual_seed(gen_seed)
    xx = x.clone().requires_grad_()
    s = neuron(xx)
    w = torch.linspace(-1, 1, s.numel(), dtype=s.dtype).reshape(s.shape)
    (s * w).sum().backward()
    return [xx.grad] + [p.grad for p in neuron.parameters()]


def test_sparse_mode_in_every_neuron_is_the_band_truncated_surrogate() -> None:
    """Masked-dense S3GD in the neuron cores: gradient = dense gradient with g * 1{|u| < b_th}."""
    x = torch.rand(12, 3, 9, dtype=torch.float64) * 0.6
    sur = get_surrogate("arctan", alpha=3.0)
    sparse = _neurons({"mode": "sparse", "b_th": 0.15}, sur)
    banded = _neurons("dense", sur.with_band(0.15))
    dense = _neurons("dense", sur)
    for a, b, c in zip(sparse, banded, dense, strict=True):
        ga, gb, gc = _grads(a.double(), x), _grads(b.double(), x), _grads(c.double(), x)
        for u, v in zip(ga, gb, strict=True):
            assert torch.allclose(u, v, rtol=0, atol=0), type(a).__name__
        assert any(not torch.allclose(u, w) for u, w in zip(ga, gc, strict=True)), type(a).__name__


def test_localzo_mode_in_every_neuron_is_seeded() -> None:
    x = torch.rand(12, 3, 9, dtype=torch.float64) * 0.6
    spec = {"mode": "localzo", "delta": 0.2, "distribution": "uniform"}
    for n1, n2, n3 in zip(_neurons(spec, None), _neurons(spec, None), _neurons(spec, None), strict=True):
        g1, g2, g3 = _grads(n1.double(), x, 5), _grads(n2.double(), x, 5), _grads(n3.double(), x, 6)
        assert all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True)), type(n1).__name__
        assert not torch.equal(g1[0], g3[0]), type(n1).__name__
        assert float(g1[0].abs().sum()) > 0


def test_make_spike_fn_localzo_backward_is_the_estimate() -> None:
    u = (torch.rand(200) - 0.5) * 0.4
    u.requires_grad_()
    fn = make_spike_fn(None, GradientSpec(mode="localzo", delta=0.1, samples=2), generator=torch.Generator().manual_seed(3))
    s = fn(u)
    assert torch.equal(s, (u >= 0).to(u.dtype))
    s.sum().backward()
    g = lz.localzo_estimate(u.detach(), "normal", 0.1, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(u.grad, g)
    with pytest.raises(ValueError, match="smooth"):
        make_spike_fn(None, "localzo", smooth=True)
