"""GPU checks of the CuPy kernels (skipped without CUDA + CuPy; run them on a device machine).

* kernel vs torch reference on CUDA: outputs, final states and every gradient under random-weighted
  losses on every output, odd shapes (T = 1, N = 1, N not a multiple of the block, > 2^24
  elements), every dtype with its tolerance (tests.support.kernel_cases.TOLERANCES);
* the device arithmetic equals the host build's (forward bit for bit; no FMA contraction);
* 64-bit indexing: T x N > 2^31 elements;
* non-contiguous inputs; the modules with backend='cupy' against backend='torch';
* a proof that the CuPy kernels ran (launch counter); torch.compile (inductor) of a model.
"""

from __future__ import annotations

import pytest
import torch

from cupy_neurons import kernels, launch
from sjframe.neurons.adlif import run_adlif
from sjframe.neurons.culif import run_culif
from sjframe.neurons.lif import run_lif
from sjframe.spike.surrogate import SURROGATE_TABLE, get_surrogate
from tests.conftest import requires_gpu
from tests.support.kernel_cases import SIXTEEN_BIT_RTOL, VARIANTS, Case, check_case, run_case

pytestmark = requires_gpu


@pytest.fixture(autouse=True)
def _check_host_build(monkeypatch) -> None:  # noqa: ANN001
    """The host side of a device-vs-host comparison is the ``check`` build: the sequential ``-O2`` model of a launch
    (no FMA contraction, like the device's ``--fmad=false``), not the vectorised CPU backend."""
    monkeypatch.setenv(launch.HOST_BUILD_ENV, "check")

DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
SHAPES = [(1, 1, (1,)), (7, 3, (5,)), (5, 2, (3, 37)), (3, 2, (150,)), (16, 8, (1000,))]


@pytest.mark.parametrize("case", [Case(v, t, b, f, dt, get_surrogate(), det)
                                  for v in VARIANTS for dt in DTYPES for (t, b, f) in SHAPES for det in (True, False)],
                         ids=str)
def test_cuda_matches_reference(case: Case) -> None:
    check_case(case, device="cuda")


@pytest.mark.parametrize("case", [Case(v, 6, 2, (40,), torch.float32, get_surrogate(s), True, seed=3)
                                  for v in VARIANTS for s in SURROGATE_TABLE], ids=str)
def test_cuda_every_surrogate(case: Case) -> None:
    check_case(case, device="cuda")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["lif", "pculif_neuron"])
def test_cuda_more_than_2pow24_elements(variant: str) -> None:
    """N = 2^24 + 3 neurons (x has > 2^25 elements): a multi-wave grid with a partial last block."""
    check_case(Case(variant, 2, 1, (2**24 + 3,), torch.float32, get_surrogate(), True), device="cuda")


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_device_arithmetic_equals_host_build(variant: str, dtype: torch.dtype) -> None:
    """Same inputs on CUDA and on the CPU host build: forward identical, gradients within an ulp-level tolerance.

    The device's expf may differ from the C library's by an ulp, which can flip the final 16-bit rounding
    of a gradient: for float16 / bfloat16 the bound is two ulps of the storage type relative to
    max(1, max |host|) (as in test_kernels_localzo_gpu.py)."""
    case = Case(variant, 9, 4, (300,), dtype, get_surrogate("sigmoid"), True, seed=5)
    gpu, cpu = run_case(case, "cuda"), run_case(case, "cpu")
    for a, b in zip(gpu["k_out"], cpu["k_out"]):
        assert torch.equal(a.cpu(), b), f"{case}: forward differs between device and host build"
    sixteen = {dt: 2 * rtol for dt, rtol in SIXTEEN_BIT_RTOL.items()}  # two ulps of the storage type
    for i, (a, b) in enumerate(zip(gpu["k_grads"], cpu["k_grads"])):
        a, b = a.cpu().double(), b.double()
        if dtype in sixteen:
            err = float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
            assert err <= sixteen[dtype], f"{case}: gradient {i} differs between device and host build by {err:.2e}"
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_16bit_conversions_on_device() -> None:
    every_half = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    wide = torch.randn(100_000) * torch.exp(torch.randn(100_000) * 4)
    x = torch.cat([every_half, wide]).cuda()
    half_rt, bf16_rt = torch.empty_like(x), torch.empty_like(x)
    launch.launch(kernels.ROUNDTRIP_SPEC, kernels.ROUNDTRIP_SIG, x.numel(), [x, half_rt, bf16_rt, x.numel()])
    for got, want in ((half_rt, x.half().float()), (bf16_rt, x.bfloat16().float())):
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan) and torch.equal(got[~nan], want[~nan])


@pytest.mark.slow
def test_64bit_indexing_beyond_2pow31_elements() -> None:
    """T x N > 2^31 (float16, forward only): a few neurons equal the same neurons run alone."""
    t_steps, n = 130, 2**24 + 5
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs about 14 GiB of GPU memory")
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(t_steps, 1, n, generator=g, device="cuda", dtype=torch.float16) + 0.3)
    sur = get_surrogate()
    with torch.no_grad():
        full = run_lif(x, None, 0.9, 1.0, sur)
        cols = torch.tensor([0, 1, 12345, n // 2, n - 2, n - 1], device="cuda")
        part = run_lif(x[:, :, cols].contiguous(), None, 0.9, 1.0, sur)
    assert torch.equal(full.spikes[:, :, cols], part.spikes)
    assert torch.equal(full.h_seq[:, :, cols], part.h_seq)


def test_noncontiguous_inputs_on_device() -> None:
    base = torch.randn(6, 8, 3, 5, device="cuda") + 0.5
    x_nc = base.transpose(1, 2)
    sur = get_surrogate()
    alpha = torch.full((8, 5), 0.8, device="cuda")
    a = run_adlif(x_nc, None, alpha, 0.95, 0.2, 0.3, 1.0, sur)
    b = run_adlif(x_nc.contiguous(), None, alpha, 0.95, 0.2, 0.3, 1.0, sur)
    assert not x_nc.is_contiguous()
    for u, w in zip((a.spikes, a.h_seq, *a.state), (b.spikes, b.h_seq, *b.state)):
        assert torch.equal(u, w)


@pytest.mark.parametrize("neuron_type", ["culif", "pculif", "pculif_neuron", "adlif", "lif"])
def test_modules_cupy_backend_match_torch_and_ran_kernels(neuron_type: str) -> None:
    from spikingjelly.activation_based import functional

    from sjframe.neurons import build_neuron

    torch.manual_seed(0)
    layers = {}
    for backend in ("torch", "cupy"):
        torch.manual_seed(0)
        layers[backend] = build_neuron(neuron_type, (4, 6), {"tau_m_steps": 4.0, "tau_s_steps": 3.0}, backend=backend,
                                       store_h_seq=True).to("cuda", torch.float64)
    # float64: no spike can flip between the two backends' rounding orders
    x = (torch.randn(12, 5, 4, 6, device="cuda", dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
    before = launch.launch_counts()
    outs, grads = {}, {}
    for backend, layer in layers.items():
        functional.reset_net(layer)
        s1 = layer(x[:6])
        s2 = layer(x[6:])  # states carried across calls
        loss = (s1 * 0.7).sum() + (s2 * 1.3).sum() + (layer.h_seq ** 2).sum()
        params = [p for p in layer.parameters()]
        grads[backend] = torch.autograd.grad(loss, [x, *params])
        outs[backend] = (s1, s2, layer.h_seq)
    for a, b in zip(outs["cupy"], outs["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    for a, b in zip(grads["cupy"], grads["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    after = launch.launch_counts()
    kind = "culif" if "culif" in neuron_type else neuron_type
    for which in ("forward", "backward"):
        key = ("cuda", f"{kind}_{which}")
        assert after.get(key, 0) >= before.get(key, 0) + 2, f"the CuPy {key[1]} kernel did not run"


def test_torch_compile_inductor_model() -> None:
    from sjframe.neurons.culif import PCuLIF

    torch.manual_seed(0)
    lin = torch.nn.Linear(20, 16, bias=False).cuda()
    neuron = PCuLIF(tau_m=4.0, tau_s=3.0, theta=0.5, per_neuron=True, num_neurons=16, backend="cupy").cuda()

    def net(x: torch.Tensor) -> torch.Tensor:
        s = run_culif(lin(x), None, torch.sigmoid(neuron.w_m), torch.sigmoid(neuron.w_s), neuron.theta,
                      neuron.surrogate)
        return s.spikes.sum() + (s.h_seq ** 2).mean()

    x = torch.randn(10, 4, 20, device="cuda") + 0.3
    eager = net(x)
    g_eager = torch.autograd.grad(eager, [lin.weight, neuron.w_m])
    compiled = torch.compile(net, fullgraph=True)
    comp = compiled(x)
    g_comp = torch.autograd.grad(comp, [lin.weight, neuron.w_m])
    torch.testing.assert_close(comp, eager, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_comp, g_eager):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cpu_tensor_with_cupy_module_is_refused() -> None:
    from sjframe.neurons.lif import LIF

    layer = LIF(backend="cupy")
    with pytest.raises(ValueError, match="must be a CUDA tensor"):
        layer(torch.randn(3, 2, 4))
