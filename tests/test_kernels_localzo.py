"""CPU checks of the fused neuron kernels in the LocalZO and sparse gradient modes (host-C++ build).

LocalZO in the kernels: the backward kernel regenerates the noise with Philox from one key per time
step, drawn in the forward exactly as the torch reference draws them with ``rng: philox``. So with
generators seeded alike, the kernel path and the torch reference cores must give the same
gradients (every variant, every noise law, both resets, four dtypes, odd shapes), and the
estimate the kernel uses must be the torch estimate up to their log (an ulp bound derived in
tests/support/kernel_cases.py; bit for bit for the law without a log). Also: seeds, fresh noise per
forward, the modules' ``backend='cupy'`` dispatch against ``backend='torch'``, argument
validation, and mutation tests showing that a one-token change in the LocalZO path fails.
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch

import sjframe.spike.gradient
from cupy_neurons import kernels, launch
from sjframe.neurons.adlif import run_adlif
from sjframe.neurons.culif import run_culif
from sjframe.neurons.lif import run_lif
from sjframe.spike import GradientSpec
from sjframe.spike import localzo as lz
from sjframe.spike.surrogate import get_surrogate
from tests.support.kernel_cases import (
    VARIANTS,
    Case,
    assert_mutation_fails,
    case_specs,
    check_case,
    check_localzo_estimate,
    kernel_localzo_estimate,
    run_module_two_chunks,
)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ for the host build")

SHAPES = [(1, 1, (1,)), (7, 3, (5,)), (3, 2, (150,)), (2, 3, (257,))]


def zo(dist: str = "normal", delta: float = 0.3, samples: int = 2) -> GradientSpec:
    return GradientSpec(mode="localzo", delta=delta, samples=samples, distribution=dist, rng="philox")


CASES_LAWS = [Case(v, 6, 2, (40,), torch.float64, get_surrogate(), det, seed=3, gradient=zo(d))
              for v in VARIANTS for d in lz.LOCALZO_DISTRIBUTIONS for det in (True, False)]
CASES_SHAPES = [Case(v, t, b, f, torch.float32, get_surrogate(), True, seed=1, gradient=zo("laplace", 0.25, 1))
                for v in VARIANTS for (t, b, f) in SHAPES]
CASES_16 = [Case(v, t, b, f, dt, get_surrogate(), det, seed=2, gradient=zo("uniform", 0.4, 3))
            for v in VARIANTS for dt in (torch.float16, torch.bfloat16)
            for (t, b, f), det in (((1, 1, (1,)), True), ((9, 3, (70,)), False))]
CASES_SPARSE = [Case(v, 6, 2, (40,), dt, get_surrogate("arctan"), det, seed=4,
                     gradient=GradientSpec(mode="sparse", b_th=0.5))
                for v in VARIANTS for dt in (torch.float64, torch.float32) for det in (True, False)]
ALL_CASES = CASES_LAWS + CASES_SHAPES + CASES_16 + CASES_SPARSE


@pytest.fixture(scope="module", autouse=True)
def _host_bundle() -> None:
    """One g++ run for every specialisation these tests need (cached on disk by source hash)."""
    launch.preload_host(case_specs(ALL_CASES))


# ------------------------------------------------------------------------------------ kernel == reference
@pytest.mark.parametrize("case", CASES_LAWS, ids=str)
def test_localzo_every_law_and_reset_float64(case: Case) -> None:
    check_case(case)


@pytest.mark.parametrize("case", CASES_SHAPES, ids=str)
def test_localzo_odd_shapes_float32(case: Case) -> None:
    check_case(case)


@pytest.mark.parametrize("case", CASES_16, ids=str)
def test_localzo_float16_bfloat16(case: Case) -> None:
    check_case(case)


@pytest.mark.parametrize("case", CASES_SPARSE, ids=str)
def test_sparse_mode_through_the_kernels(case: Case) -> None:
    """gradient: sparse on the kernel path = the band-truncated surrogate (masked-dense, as the torch cores)."""
    check_case(case)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("dist", lz.LOCALZO_DISTRIBUTIONS)
def test_kernel_estimate_is_the_torch_estimate(dist: str, dtype: torch.dtype) -> None:
    """T = 1 CuLIF with lam = 1/2 and loss = sum(spikes): dL/dv0 = g / 2 exactly, so the kernel's g is
    read back and compared with localzo_estimate_with(u, key) for the key drawn from the same seed:
    elementwise within the derived ulp bound of their log (check_localzo_estimate: the Philox uniforms
    are the same exactly; a sample at the indicator's discontinuity may be counted by either; 16-bit
    storage adds its rounding); bit for bit for the uniform law (no log: the same float32 operations)."""
    gen = torch.Generator().manual_seed(11)
    feat = (500,)
    v0 = (torch.randn(3, *feat, generator=gen) * 0.3 + 1.0).to(dtype).requires_grad_()
    i0 = (torch.randn(3, *feat, generator=gen) * 0.3 + 1.0).to(dtype)
    x = torch.zeros(1, 3, *feat, dtype=dtype)
    spec = GradientSpec(mode="localzo", delta=0.2, samples=3, distribution=dist, k=50.0, rng="philox")
    out = run_culif(x, (v0, i0), 0.5, 0.9, 1.0, None, True, spec, torch.Generator().manual_seed(7))
    (dv0,) = torch.autograd.grad(out.spikes.sum(), v0)
    g_kernel = (2 * dv0.float())
    key = lz.draw_key(torch.Generator().manual_seed(7))
    u = (out.h_seq[0].float() - 1.0) if dtype in (torch.float16, torch.bfloat16) else out.h_seq[0] - 1.0
    counts = check_localzo_estimate(g_kernel, u, dist, 0.2, 3, 50.0, key, f"{dist} {dtype}", storage=dtype)
    assert counts["nonzero"] > 20
    if dist == "uniform":
        g_torch = lz.localzo_estimate_with(u, dist, 0.2, 3, 50.0, "philox", None, key).to(dtype).float()
        assert torch.equal(g_kernel, g_torch)


# ------------------------------------------------------------------------------------ seeds and noise
def _grads(seed: int | torch.Generator, runner=run_lif) -> tuple[torch.Tensor, ...]:  # noqa: ANN001
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 4, 30, generator=g, dtype=torch.float64) * 0.8 + 0.3).requires_grad_()
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    out = runner(x, None, 0.85, 1.0, None, True, zo("normal", 0.2, 1), gen)
    return torch.autograd.grad((out.spikes * torch.randn(out.spikes.shape, generator=g, dtype=torch.float64)).sum(), x)


def test_same_seed_same_gradient_fresh_noise_each_forward() -> None:
    a, b = _grads(5)[0], _grads(5)[0]
    assert torch.equal(a, b) and float(a.abs().max()) > 0
    assert not torch.equal(a, _grads(6)[0])
    gen = torch.Generator().manual_seed(5)
    first, second = _grads(gen)[0], _grads(gen)[0]  # one generator, two forwards: fresh keys
    assert torch.equal(first, a) and not torch.equal(first, second)


def test_keys_come_from_torchs_global_rng_without_a_generator() -> None:
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.manual_seed(3)
    run_lif(x, None, 0.9, 1.0, None, True, zo())
    after_kernel = torch.randint(0, 2**62, (1,))
    torch.manual_seed(3)
    for _ in range(5):  # the torch reference draws one key per step
        lz.draw_key(None)
    assert torch.equal(after_kernel, torch.randint(0, 2**62, (1,)))


# ------------------------------------------------------------------------------------ modules
def _estimate_of_the_kernels(u, distribution, delta, samples, k, rng, generator):  # noqa: ANN001, ANN202
    """sjframe.spike.localzo_estimate (rng='philox') with the kernels' estimate of the same key."""
    assert rng == "philox"
    return kernel_localzo_estimate(u, distribution, delta, samples, k, lz.draw_key(generator))


@pytest.mark.parametrize("neuron_type", ["culif", "pculif", "pculif_neuron", "adlif", "lif"])
@pytest.mark.parametrize("mode", ["localzo", "sparse"])
def test_modules_cupy_dispatch_equals_torch(neuron_type: str, mode: str, monkeypatch) -> None:  # noqa: ANN001
    """Modules with gradient localzo (rng philox) / sparse: backend='cupy' (host build on CPU tensors) equals
    backend='torch' under the same global seed, over two calls with carried states; the kernels ran."""

    import sjframe.neurons.base as kernel_neurons

    monkeypatch.setattr(kernel_neurons, "_require_cuda", lambda module, x: None)  # let CPU tensors through
    # the torch backend's LocalZO estimate: the kernels' one, checked elementwise against torch's (within
    # the derived ulp bound of their log), so the two backends differ only in float64 arithmetic
    monkeypatch.setattr(sjframe.spike.gradient, "localzo_estimate", _estimate_of_the_kernels)
    gradient = zo("sigmoid", 0.3, 2) if mode == "localzo" else GradientSpec(mode="sparse", b_th=0.4)
    results, counts = {}, []
    for backend in ("torch", "cupy"):
        counts.append(launch.launch_counts())
        results[backend] = run_module_two_chunks(neuron_type, backend, gradient=gradient, assign_backend=True)
    counts.append(launch.launch_counts())
    assert float(results["torch"][3].abs().max()) > 0
    for a, b in zip(results["cupy"], results["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    kind = "culif" if "culif" in neuron_type else neuron_type
    key = ("cpu", f"{kind}_backward")
    assert counts[2].get(key, 0) == counts[1].get(key, 0) + 2 and counts[1].get(key, 0) == counts[0].get(key, 0)


def test_rng_torch_is_read_as_philox_on_the_kernels(monkeypatch) -> None:  # noqa: ANN001
    """The kernels always draw Philox noise: rng='torch' gives the rng='philox' result under the same seed."""
    import sjframe.neurons.base as kernel_neurons
    from sjframe.neurons.lif import LIF

    monkeypatch.setattr(kernel_neurons, "_require_cuda", lambda module, x: None)
    grads = []
    for rng in ("torch", "philox"):
        layer = LIF(tau_m=5.0, gradient={"mode": "localzo", "delta": 0.3, "rng": rng})
        layer.backend = "cupy"
        x = (torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(0)) + 0.5).requires_grad_()
        torch.manual_seed(9)
        grads.append(torch.autograd.grad(layer(x).sum(), x)[0])
    assert torch.equal(grads[0], grads[1]) and float(grads[0].abs().max()) > 0


def test_no_grad_forward_draws_the_keys_too() -> None:
    """The torch reference draws its keys even without autograd; the kernel path does the same (RNG in step)."""
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    torch.manual_seed(1)
    with torch.no_grad():
        run_adlif(x, None, 0.9, 0.95, 0.1, 0.2, 1.0, None, True, zo())
    a = torch.randint(0, 2**62, (1,))
    torch.manual_seed(1)
    for _ in range(4):
        lz.draw_key(None)
    assert torch.equal(a, torch.randint(0, 2**62, (1,)))


# ------------------------------------------------------------------------------------ validation
def test_validation_of_the_localzo_arguments() -> None:
    x = torch.randn(4, 6)
    z = torch.zeros(6)
    p = torch.full((1,), 0.8)
    table = lz.quantile_table("normal")
    with pytest.raises(ValueError, match="zo_keys must be an int64 tensor"):
        kernels.neuron_ops("lif").fwd(x, z, z, p, 1.0, "0.0f", True, torch.zeros(3, dtype=torch.int64), table, 0, 1, 0.1)
    with pytest.raises(ValueError, match="zo_table"):
        kernels.neuron_ops("lif").fwd(x, z, z, p, 1.0, "0.0f", True, torch.zeros(4, dtype=torch.int64), None, 0, 1, 0.1)
    with pytest.raises(ValueError, match="zo_dist"):
        kernels.neuron_ops("lif").fwd(x, z, z, p, 1.0, "0.0f", True, torch.zeros(4, dtype=torch.int64), table, 9, 1, 0.1)
    with pytest.raises(ValueError, match="gradient must be"):
        run_lif(x.reshape(4, 2, 3), None, 0.9, 1.0, get_surrogate(), True, "localzo")
    with pytest.raises(ValueError, match="generator must be"):
        run_lif(x.reshape(4, 2, 3), None, 0.9, 1.0, get_surrogate(), True, zo(), 5)
    with pytest.raises(ValueError, match="surrogate must be"):
        run_lif(x.reshape(4, 2, 3), None, 0.9, 1.0, None, True, GradientSpec(mode="sparse"))
    with pytest.raises(ValueError, match="rng='philox'"):
        Case("lif", 2, 1, (3,), gradient=GradientSpec(mode="localzo"))


def test_laws_without_a_table_need_none() -> None:
    """laplace and uniform have closed-form quantiles: no table is passed (a null pointer in the kernel)."""
    x = (torch.randn(5, 2, 7, dtype=torch.float64) + 0.8).requires_grad_()
    for dist in ("laplace", "uniform"):
        out = run_lif(x, None, 0.9, 1.0, None, True, zo(dist, 0.5, 1), torch.Generator().manual_seed(0))
        (g,) = torch.autograd.grad(out.spikes.sum(), x)
        assert bool(torch.isfinite(g).all()) and float(g.abs().max()) > 0


def test_the_localzo_specialisation_ignores_the_surrogate() -> None:
    from cupy_neurons import kernels

    a = kernels.specialisation("lif", "float32", get_surrogate("arctan").cuda_expr("u"), True, localzo=True)
    b = kernels.specialisation("lif", "float32", get_surrogate().cuda_expr("u"), True, localzo=True)
    assert a == b and dict(a.defines)["SJ_LOCALZO"] == 1
    with pytest.raises(ValueError, match="localzo must be a bool"):
        kernels.specialisation("lif", "float32", "0.0f", True, localzo=1)


# ------------------------------------------------------------------------------------ mutation
MUTATIONS = [
    ("sparse/localzo.cuh", "acc = acc + ((ua < law.delta * z) ? z : 0.0f);",
     "acc = acc + ((ua < law.delta * z) ? 1.0f : 0.0f);", Case("culif", 6, 2, (40,), seed=3, gradient=zo())),
    ("lif.cu", "spike_grad(h - theta, n, t, zo_keys, law)", "spike_grad(h - theta, n, 0, zo_keys, law)",
     Case("lif", 6, 2, (40,), seed=3, gradient=zo("uniform", 0.4, 1))),
    ("adlif.cu", "spike_grad(h - theta, n, t, zo_keys, law)", "spike_grad(h, n, t, zo_keys, law)",
     Case("adlif", 6, 2, (40,), seed=3, gradient=zo("laplace", 0.3, 2))),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m[0]}:{m[2].strip()}")
def test_a_typo_in_the_localzo_path_fails(mutation: tuple, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    assert_mutation_fails(mutation, tmp_path, monkeypatch)


def test_expected_value_of_the_kernel_estimate() -> None:
    """Averaged over many seeds, the kernel's spike derivative approaches the law's expected surrogate."""
    delta, n = 0.2, 400
    u = torch.linspace(-0.5, 0.5, n, dtype=torch.float64)
    h0 = (u + 1.0).reshape(1, n)  # T = 1 CuLIF, lam = 1/2, v0 = i0 = h0: h = h0, u = h - 1; dL/dv0 = g / 2
    total = torch.zeros(n, dtype=torch.float64)
    reps = 200
    gen = torch.Generator().manual_seed(0)
    for _ in range(reps):
        v0 = h0.clone().requires_grad_()
        out = run_culif(torch.zeros(1, 1, n, dtype=torch.float64), (v0, h0.clone()), 0.5, 0.9, 1.0, None, True,
                        zo("normal", delta, 1), gen)
        (dv0,) = torch.autograd.grad(out.spikes.sum(), v0)
        total += 2 * dv0[0]
    mean = total / reps
    expected = lz.expected_estimate(u, "normal", delta)
    # standard error of a mean of reps draws of |z| 1{..} / (2 delta) (second moment <= E z^2 / (4 delta^2))
    se = math.sqrt(1.0 / (4 * delta**2) / reps)
    assert float((mean - expected).abs().max()) < 5 * se
    assert float(mean[n // 2 - 5:n // 2 + 5].mean()) > 0.5 * float(expected.max())


def test_single_step_mode_draws_one_key_per_call(monkeypatch) -> None:  # noqa: ANN001
    """step_mode='s' (T = 1 per call, e.g. recurrent layers): backend='cupy' equals backend='torch'."""
    from spikingjelly.activation_based import functional

    import sjframe.neurons.base as kernel_neurons
    from sjframe.neurons.culif import CuLIF

    monkeypatch.setattr(kernel_neurons, "_require_cuda", lambda module, x: None)
    x = (torch.randn(7, 3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 1.5 + 0.8)
    grads = []
    for backend in ("torch", "cupy"):
        layer = CuLIF(tau_m=4.0, tau_s=3.0, gradient=zo("uniform", 0.4, 2), step_mode="s")
        layer.backend = backend
        xs = x.clone().requires_grad_()
        functional.reset_net(layer)
        torch.manual_seed(4)
        out = torch.stack([layer(xs[t]) for t in range(xs.shape[0])])
        grads.append(torch.autograd.grad((out * torch.arange(1.0, 8.0, dtype=torch.float64)[:, None, None]).sum(), xs)[0])
    assert float(grads[0].abs().max()) > 0
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12)
