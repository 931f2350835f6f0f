"""The S3GD / LocalZO CUDA kernels (cupy_neurons/sparse/s3gd.cu): compiled by nvcc for sm_80 and
sm_90, and their arithmetic checked on the CPU through the host-C++ build against the torch reference,
for float32, float64, float16 and bfloat16 storage (float32 accumulation for the 16-bit types)."""

from __future__ import annotations

import pytest
import torch

from cupy_neurons import build
from cupy_neurons.sparse import kernels as K
from sjframe.layers import sparse_linear_lif as sparse_layer
from sjframe.layers.sparse_linear_lif import (
    _OpConfig,
    _SparseLinearLIFFn,
)
from sjframe.spike import GradientSpec
from sjframe.spike import localzo as lz
from sjframe.spike.philox import philox_uniform, philox_words
from sjframe.spike.surrogate import get_surrogate
from tests.support.kernel_cases import (
    SIXTEEN_BIT_RTOL,
    check_localzo_estimate,
    check_sparse_backward_16bit,
    kernel_localzo_estimate,
)

BAND_SURROGATES = {
    "fast_sigmoid": get_surrogate("fast_sigmoid", rho=100.0).with_band(0.4),
    "arctan": get_surrogate("arctan", alpha=3.0).with_band(0.3),
}


DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@pytest.mark.skipif(build.nvcc_path() is None, reason="nvcc not found")
def test_kernels_compile_with_nvcc_for_sm80_and_sm90() -> None:
    """Every storage dtype in one nvcc run (one specialisation per dtype, suffix _s<i>); warnings are errors."""
    specs = [K.specialisation(dtype, BAND_SURROGATES["fast_sigmoid"].cuda_expr("u")) for dtype in DTYPES]
    out = build.compile_nvcc(build.render_device_bundle(specs), ("sm_80", "sm_90"), kind="fatbin")
    for i in range(len(specs)):
        for name in K.KERNELS:  # every extern "C" kernel of every dtype is in the binary
            assert f"{name}_s{i}".encode() in out


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("dist", lz.LOCALZO_DISTRIBUTIONS)
def test_localzo_kernel_equals_torch_philox(dist: str, dtype: torch.dtype) -> None:
    """The kernel's estimate is the torch estimate (rng='philox', same key) up to their log: elementwise
    within the derived ulp bound, samples at the indicator's discontinuity handled by the stated
    argument (tests.support.kernel_cases.check_localzo_estimate); bit-identical for the uniform law (no log)."""
    u = (torch.randn(5, 7, 11) * 0.08).to(dtype)
    key = 0x1234_5678_9ABC_DEF0
    g_kernel = lz.localzo_estimate_kernel(u, dist, 0.05, 3, 100.0, key)
    assert g_kernel.dtype == dtype
    counts = check_localzo_estimate(g_kernel, u, dist, 0.05, 3, 100.0, key, f"{dist} {dtype}")
    assert counts["nonzero"] > 10
    if dist == "uniform":
        assert torch.equal(g_kernel, lz.localzo_estimate_with(u, dist, 0.05, 3, 100.0, "philox", None, key))


@pytest.mark.parametrize("samples", [1, 3])
def test_kernel_philox_stream_is_the_torch_stream_exactly(samples: int) -> None:
    """The kernel's Philox uniforms are those of the integer words, bit for bit: at u = 0 every sample
    counts, and the uniform law with delta = 1/2 has scale 1/samples and z = fl((1 - p) sqrt3) with
    1 - p exact (p = ((w >> 9) + 0.5) 2^-23 has 24 significant bits), so g is float32 additions and one
    product of the words' uniforms: no transcendental, the same correctly rounded operations."""
    n, key = 1000, 0x0FED_CBA9_8765_4321
    g = lz.localzo_estimate_kernel(torch.zeros(n), "uniform", 0.5, samples, 100.0, key)
    acc = torch.zeros(n)
    for s in range(samples):
        words = philox_words(n, key, s)
        assert torch.equal(philox_uniform(n, key, s), ((words >> 9).float() + 0.5) * 2.0**-23)
        p = ((words >> 9).float() + 0.5) * 2.0**-23
        acc = acc + (1.0 - p) * torch.tensor(3.0**0.5, dtype=torch.float32)
    assert torch.equal(g, acc * torch.tensor(1.0 / samples, dtype=torch.float32))
    assert len(set(g.tolist())) > 0.99 * n  # the draws differ (element and stream in the counter)


SHAPES = [(1, 2, 3, 4), (9, 3, 7, 5), (13, 2, 5, 300)]  # T = 1; odd sizes; N above one block


def _layer_grads(backend: str, x, ws, spec, surrogate, seed: int, pass_active: bool):
    cfg = _OpConfig(0.85, 1.0, spec.surrogate_for(surrogate), spec, backend)
    gen = torch.Generator().manual_seed(seed)
    s, idx, outs = x, None, []
    for w in ws:
        s, idx = _SparseLinearLIFFn.apply(s, w, cfg, idx if pass_active else None, gen)
        outs.append(s)
    rgen = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=rgen, dtype=o.dtype)).sum() for o in outs)
    return torch.autograd.grad(loss, [x, *ws]), outs


def _estimate_of_the_kernels(u, distribution, delta, samples, k, rng, generator, key):  # noqa: ANN001, ANN202
    """localzo_estimate_with for the torch backend: the kernels' estimate, checked against the torch one."""
    assert rng == "philox" and generator is None
    return kernel_localzo_estimate(u, distribution, delta, samples, k, key)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_backward_kernels_equal_torch(shape, dtype: torch.dtype, monkeypatch) -> None:  # noqa: ANN001
    """Both backends of the sparse layer stack: the same forward (spikes, active sets) and gradients.
    LocalZO: the torch backend takes the kernels' estimate (checked elementwise against its own, within
    the derived ulp bound, by kernel_localzo_estimate), so only float arithmetic of the same values
    separates the backends and the dtype's tolerance holds on every CPU."""
    monkeypatch.setattr(sparse_layer, "localzo_estimate_with", _estimate_of_the_kernels)
    T, B, n_in, n = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = (torch.rand(T, B, n_in, generator=gen) < 0.4).to(dtype).requires_grad_()
    ws = [(torch.randn(n, n_in, generator=gen) * 1.5 / n_in**0.5).to(dtype).requires_grad_(),
          (torch.randn(6, n, generator=gen) * 2.0 / n**0.5).to(dtype).requires_grad_()]
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    cases = [
        (GradientSpec(mode="sparse", b_th=0.4), BAND_SURROGATES["fast_sigmoid"]),
        (GradientSpec(mode="sparse", b_th=0.3), BAND_SURROGATES["arctan"]),
        (GradientSpec(mode="localzo", delta=0.3, samples=2, distribution="sigmoid", rng="philox"), None),
    ]
    for spec, sur in cases:
        sur = sur or BAND_SURROGATES["fast_sigmoid"]
        for pass_active in (True, False):
            ref, out_ref = _layer_grads("torch", x, ws, spec, sur, 3, pass_active)
            got, out_got = _layer_grads("cupy", x, ws, spec, sur, 3, pass_active)  # host build on CPU tensors
            for a, b in zip(out_ref, out_got, strict=True):
                assert torch.equal(a, b)
            for a, b in zip(ref, got, strict=True):
                assert torch.allclose(a, b, **tol), (spec.mode, pass_active, float((a - b).abs().max()))


def test_kernel_launcher_validates_arguments() -> None:
    spec = K.specialisation(torch.float32)
    with pytest.raises(ValueError, match="takes"):
        K.launch(spec, "s3gd_active_grad", 1, (torch.zeros(1),))
    with pytest.raises(ValueError, match="int64"):
        K.launch(spec, "s3gd_active_grad", 1, (torch.zeros(1), torch.zeros(1), torch.zeros(1), 1, 0, torch.zeros(1)))
    with pytest.raises(ValueError, match="sparse kernels support"):
        K.specialisation(torch.int32)
    with pytest.raises(ValueError, match="float32"):  # 16-bit storage: the accumulators are float32
        K.launch(K.specialisation(torch.float16), "s3gd_active_grad", 1,
                 (torch.zeros(1, dtype=torch.float16), torch.zeros(1, dtype=torch.int64),
                  torch.zeros(1, dtype=torch.float16), 1, 0, torch.zeros(1, dtype=torch.float16)))
    with pytest.raises(ValueError, match="distribution"):
        lz.localzo_estimate_kernel(torch.zeros(3), "cauchy", 0.05, 1, 100.0, 1)


def test_empty_active_sets() -> None:
    T, B, n_in, n = 4, 2, 3, 5
    w = torch.randn(n, n_in)
    grad_x, grad_w, _e = K.s3gd_backward_kernels(
        torch.randn(T, B, n), torch.zeros(0, dtype=torch.int64), torch.zeros(0), w, torch.rand(T, B, n_in),
        torch.arange(5), (T, B, n_in), 0.9, BAND_SURROGATES["fast_sigmoid"].cuda_expr("u"),
    )
    assert bool((grad_x == 0).all()) and bool((grad_w == 0).all())


# ------------------------------------------------------------------------------------ 16-bit storage
@pytest.mark.parametrize("dtype", list(SIXTEEN_BIT_RTOL), ids=str)
def test_sparse_backward_kernels_16bit_equal_the_exact_gradient_rounded(dtype: torch.dtype) -> None:
    """16-bit storage, float32 accumulation: dW and dL/dx are the float64 gradient of the same active set
    and data, up to the final rounding to the storage type (host build on CPU tensors)."""
    check_sparse_backward_16bit(dtype, "cpu", (13, 3, 40, 300), x_rate=0.4, min_active=500)


@pytest.mark.parametrize("dtype", list(SIXTEEN_BIT_RTOL), ids=str)
def test_sparse_layers_16bit_cupy_equal_torch(dtype: torch.dtype) -> None:
    """A 2-layer stack in 16-bit storage: the same forward (spikes, active sets) on both backends, and
    gradients of the 16-bit dtype that agree (the torch path accumulates partly in 16 bits)."""
    T, B, n_in, n = 13, 2, 5, 300
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, n_in, generator=gen) < 0.4).to(dtype).requires_grad_()
    ws = [(torch.randn(n, n_in, generator=gen) * 1.5 / n_in**0.5).to(dtype).requires_grad_(),
          (torch.randn(6, n, generator=gen) * 2.0 / n**0.5).to(dtype).requires_grad_()]
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    for spec in (GradientSpec(mode="sparse", b_th=0.4),
                 GradientSpec(mode="localzo", delta=0.3, samples=2, distribution="sigmoid", rng="philox")):
        ref, out_ref = _layer_grads("torch", x, ws, spec, BAND_SURROGATES["fast_sigmoid"], 3, True)
        got, out_got = _layer_grads("cupy", x, ws, spec, BAND_SURROGATES["fast_sigmoid"], 3, True)
        for a, b in zip(out_ref, out_got, strict=True):
            assert torch.equal(a, b)
        for a, b in zip(got, ref, strict=True):
            assert a.dtype == dtype and float(b.abs().max()) > 0
            err = float((a.double() - b.double()).abs().max() / b.double().abs().max())
            assert err < tol, (spec.mode, err)
