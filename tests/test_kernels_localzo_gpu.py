"""GPU checks of the LocalZO / sparse kernel paths and of the 16-bit sparse kernels (skipped without CUDA + CuPy).

The CPU twins of these checks (tests/test_kernels_localzo.py, tests/test_gradients_kernels.py) run
the same kernel text through the host-C++ build; these run it through CuPy on the device:

* fused neuron kernels with the LocalZO backward (Philox noise in the kernel) against the torch
  reference cores with ``rng: philox`` and the same seed: every variant, dtype, reset, odd shapes
  (T = 1, N = 1, N not a multiple of the block), every noise law;
* the estimate the kernel uses equals the torch estimate within the derived ulp bound (the Philox
  stream exactly; ``tests.support.kernel_cases.check_localzo_estimate``);
* device == host build (forward identical, gradients to an ulp-level tolerance);
* the modules with ``backend='cupy'`` and ``gradient: localzo`` / ``sparse`` against
  ``backend='torch'``, with a proof that the CuPy kernels ran;
* the S3GD / LocalZO sparse kernels in float16 and bfloat16 (float32 accumulation) against the
  float64 gradient of the same active set, and the fused sparse layer on both backends.
"""

from __future__ import annotations

import pytest
import torch

from cupy_neurons import launch
from sjframe.neurons.culif import run_culif
from sjframe.spike import GradientSpec
from sjframe.spike import localzo as lz
from sjframe.spike.surrogate import get_surrogate
from tests.conftest import requires_gpu
from tests.support.kernel_cases import (
    SIXTEEN_BIT_RTOL,
    VARIANTS,
    Case,
    check_case,
    check_localzo_estimate,
    check_sparse_backward_16bit,
    kernel_localzo_estimate,
    run_case,
)

pytestmark = requires_gpu


@pytest.fixture(autouse=True)
def _check_host_build(monkeypatch) -> None:  # noqa: ANN001
    """The host side of a device-vs-host comparison is the ``check`` build: the sequential ``-O2`` model of a launch
    (no FMA contraction, like the device's ``--fmad=false``), not the vectorised CPU backend."""
    monkeypatch.setenv(launch.HOST_BUILD_ENV, "check")

DEVICE = "cuda"
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
SHAPES = [(1, 1, (1,)), (7, 3, (5,)), (5, 2, (3, 37)), (16, 8, (1000,))]
def zo(dist: str = "normal", delta: float = 0.3, samples: int = 2) -> GradientSpec:
    return GradientSpec(mode="localzo", delta=delta, samples=samples, distribution=dist, rng="philox")


PER_LAYER = ("pculif", "adlif_layer")


def _cancelling(v: str, dt: torch.dtype, shape: tuple, det: bool) -> bool:
    """16-bit storage, one parameter for the whole layer, 128k terms, no detach: the layer's parameter
    gradient is a sum of 16-bit-rounded saved values with heavy cancellation, so its error relative to
    the (small) sum exceeds the dtype tolerance although no spike or LocalZO indicator differs (measured
    on the host build: bfloat16 adlif_layer 9e-2 for a sum 1.1 of terms ~65). Those cases are checked
    device == host build below instead, where both sides round alike."""
    return dt in SIXTEEN_BIT_RTOL and v in PER_LAYER and shape == SHAPES[-1] and not det


@pytest.mark.parametrize("case", [Case(v, t, b, f, dt, get_surrogate(), det, gradient=zo())
                                  for v in VARIANTS for dt in DTYPES for (t, b, f) in SHAPES for det in (True, False)
                                  if not _cancelling(v, dt, (t, b, f), det)], ids=str)
def test_cuda_localzo_matches_reference(case: Case) -> None:
    check_case(case, device=DEVICE)


@pytest.mark.parametrize("case", [Case(v, 6, 2, (40,), torch.float32, get_surrogate(), True, seed=3, gradient=zo(d))
                                  for v in VARIANTS for d in lz.LOCALZO_DISTRIBUTIONS], ids=str)
def test_cuda_localzo_every_law(case: Case) -> None:
    check_case(case, device=DEVICE)


@pytest.mark.parametrize("case", [Case(v, 6, 2, (40,), dt, get_surrogate("arctan"), True, seed=4,
                                       gradient=GradientSpec(mode="sparse", b_th=0.5))
                                  for v in VARIANTS for dt in DTYPES], ids=str)
def test_cuda_sparse_mode_matches_reference(case: Case) -> None:
    check_case(case, device=DEVICE)


DEVICE_HOST_CASES = (
    [Case(v, 9, 4, (300,), dt, get_surrogate(), True, seed=5, gradient=zo("sigmoid", 0.3, 2))
     for v in VARIANTS for dt in DTYPES]
    + [Case(v, t, b, f, dt, get_surrogate(), False, gradient=zo())
       for v in PER_LAYER for dt in SIXTEEN_BIT_RTOL for (t, b, f) in SHAPES[-1:]]
)


@pytest.mark.parametrize("case", DEVICE_HOST_CASES, ids=str)
def test_localzo_device_arithmetic_equals_host_build(case: Case) -> None:
    """Forward bit for bit; gradients to a few ulps of the storage type (the device's expf / logf may differ
    from the C library's by an ulp, which can flip a 16-bit rounding), relative to max(1, max |host|)."""
    gpu, cpu = run_case(case, DEVICE), run_case(case, "cpu")
    for a, b in zip(gpu["k_out"], cpu["k_out"]):
        assert torch.equal(a.cpu(), b), f"{case}: forward differs between device and host build"
    tol = {torch.float64: 1e-6, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[case.dtype]
    for i, (a, b) in enumerate(zip(gpu["k_grads"], cpu["k_grads"])):
        a, b = a.cpu().double(), b.double()
        err = float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
        assert err <= tol, f"{case}: gradient {i} differs between device and host build by {err:.2e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dist", lz.LOCALZO_DISTRIBUTIONS)
def test_cuda_kernel_estimate_is_the_torch_estimate(dist: str, dtype: torch.dtype) -> None:
    """T = 1 CuLIF, lam = 1/2, loss = sum(spikes): dL/dv0 = g / 2; g equals the torch estimate on the device."""
    gen = torch.Generator().manual_seed(11)
    n = 3 * 1000 + 7
    v0 = (torch.randn(1, n, generator=gen) * 0.3 + 1.0).to(DEVICE, dtype).requires_grad_()
    i0 = (torch.randn(1, n, generator=gen) * 0.3 + 1.0).to(DEVICE, dtype)
    spec = GradientSpec(mode="localzo", delta=0.2, samples=3, distribution=dist, k=50.0, rng="philox")
    out = run_culif(torch.zeros(1, 1, n, dtype=dtype, device=DEVICE), (v0, i0), 0.5, 0.9, 1.0, None, True, spec,
                    torch.Generator().manual_seed(7))
    (dv0,) = torch.autograd.grad(out.spikes.sum(), v0)
    g_kernel = 2 * dv0.float()
    key = lz.draw_key(torch.Generator().manual_seed(7))
    u = out.h_seq[0].float() - 1.0 if dtype in SIXTEEN_BIT_RTOL else out.h_seq[0] - 1.0
    # CUDA logf vs torch's CUDA log: elementwise within the derived ulp bound (check_localzo_estimate), not
    # bit equality of two log implementations; g_kernel = 2 * (g / 2) in the storage dtype is exact.
    counts = check_localzo_estimate(g_kernel.to(dtype), u, dist, 0.2, 3, 50.0, key, f"{dist} {dtype}", storage=dtype)
    assert counts["nonzero"] > 50


def _estimate_of_the_kernels(u, distribution, delta, samples, k, rng, generator):  # noqa: ANN001, ANN202
    """sjframe.spike.localzo_estimate (rng='philox') with the kernels' estimate of the same key."""
    assert rng == "philox"
    return kernel_localzo_estimate(u, distribution, delta, samples, k, lz.draw_key(generator))


@pytest.mark.parametrize("neuron_type", ["culif", "pculif", "pculif_neuron", "adlif", "lif"])
@pytest.mark.parametrize("mode", ["localzo", "sparse"])
def test_modules_cupy_backend_match_torch_and_ran_kernels(neuron_type: str, mode: str, monkeypatch) -> None:  # noqa: ANN001
    from spikingjelly.activation_based import functional

    import sjframe.spike.gradient
    from sjframe.neurons import build_neuron

    # the torch backend's LocalZO estimate: the kernels' one, checked elementwise against torch's within the
    # derived ulp bound of their log (CUDA logf in the kernel, torch's CUDA log in the reference: two
    # implementations), so the two backends differ only in float64 arithmetic (as in the CPU twin)
    monkeypatch.setattr(sjframe.spike.gradient, "localzo_estimate", _estimate_of_the_kernels)
    gradient = zo("laplace", 0.3, 2) if mode == "localzo" else GradientSpec(mode="sparse", b_th=0.4)
    outs, grads, counts = {}, {}, []
    for backend in ("torch", "cupy"):
        counts.append(launch.launch_counts())
        torch.manual_seed(0)  # the same parameters and (LocalZO) the same keys from the global RNG
        layer = build_neuron(neuron_type, (4, 6), {"tau_m_steps": 4.0, "tau_s_steps": 3.0},
                             gradient=gradient, backend=backend,
                             store_h_seq=True).to(DEVICE, torch.float64)
        x = (torch.randn(12, 5, 4, 6, dtype=torch.float64) * 1.5 + 0.8).to(DEVICE).requires_grad_()
        functional.reset_net(layer)
        s1, s2 = layer(x[:6]), layer(x[6:])  # states carried across calls
        loss = (s1 * 0.7).sum() + (s2 * 1.3).sum() + (layer.h_seq ** 2).sum()
        grads[backend] = torch.autograd.grad(loss, [x, *layer.parameters()])
        outs[backend] = (s1, s2, layer.h_seq)
    counts.append(launch.launch_counts())
    for a, b in zip(outs["cupy"], outs["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert float(grads["torch"][0].abs().max()) > 0
    for a, b in zip(grads["cupy"], grads["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    kind = "culif" if "culif" in neuron_type else neuron_type
    key = (DEVICE, f"{kind}_backward")
    assert counts[2].get(key, 0) == counts[1].get(key, 0) + 2, "the CuPy backward kernel did not run"
    assert counts[1].get(key, 0) == counts[0].get(key, 0)


# ------------------------------------------------------------------------------------ sparse kernels, 16 bit
@pytest.mark.parametrize("dtype", list(SIXTEEN_BIT_RTOL), ids=str)
@pytest.mark.parametrize("dist", lz.LOCALZO_DISTRIBUTIONS)
def test_cuda_localzo_estimate_kernel_16bit(dist: str, dtype: torch.dtype) -> None:
    u = (torch.randn(5, 7, 311, generator=torch.Generator().manual_seed(0)) * 0.08).to(DEVICE, dtype)
    g_kernel = lz.localzo_estimate_kernel(u, dist, 0.05, 3, 100.0, 0x1234_5678_9ABC)
    assert g_kernel.dtype == dtype
    counts = check_localzo_estimate(g_kernel, u, dist, 0.05, 3, 100.0, 0x1234_5678_9ABC, f"{dist} {dtype}")
    assert counts["nonzero"] > 100


@pytest.mark.parametrize("dtype", list(SIXTEEN_BIT_RTOL), ids=str)
def test_cuda_sparse_backward_kernels_16bit(dtype: torch.dtype) -> None:
    check_sparse_backward_16bit(dtype, DEVICE, (40, 8, 64, 1000), x_rate=0.3, min_active=1000)


@pytest.mark.parametrize("dtype", list(SIXTEEN_BIT_RTOL), ids=str)
def test_cuda_sparse_layers_16bit_cupy_equal_torch(dtype: torch.dtype) -> None:
    from sjframe.layers.sparse_linear_lif import sparse_linear_lif

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(40, 8, 30, generator=gen) < 0.3).to(DEVICE, dtype)
    ws = [(torch.randn(o, i, generator=gen) * 2.0 / i**0.5).to(DEVICE, dtype).requires_grad_()
          for i, o in ((30, 20), (20, 10))]
    sur = get_surrogate("fast_sigmoid", rho=100.0)
    tol = {torch.float16: 5e-3, torch.bfloat16: 3e-2}[dtype]  # the torch path accumulates partly in 16 bits
    for spec in (GradientSpec(mode="sparse", b_th=0.3), GradientSpec(mode="localzo", delta=0.2, rng="philox")):
        grads, spikes = [], []
        for backend in ("torch", "cupy"):
            g = torch.Generator(device=DEVICE).manual_seed(5)
            s, active, outs = x, None, []
            for w in ws:
                o = sparse_linear_lif(s, w, 0.85, 1.0, sur, spec, in_active=active, generator=g, backend=backend)
                s, active = o.spikes, o.active
                outs.append(s)
            wgen = torch.Generator().manual_seed(1)
            loss = sum((o.double() * torch.randn(o.shape, generator=wgen, dtype=torch.float64).to(DEVICE)).sum()
                       for o in outs)
            grads.append(torch.autograd.grad(loss, ws))
            spikes.append(outs)
        for a, b in zip(*spikes, strict=True):
            assert torch.equal(a, b)
        for a, b in zip(grads[1], grads[0], strict=True):
            assert a.dtype == dtype and float(b.abs().max()) > 0
            assert float((a.double() - b.double()).abs().max() / b.double().abs().max()) < tol
