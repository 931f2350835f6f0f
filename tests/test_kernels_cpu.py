"""CPU checks of the CUDA kernels: the same kernel text compiled as host C++ (host_shim.h).

Kernel outputs, final states and every gradient (input, initial states, raw parameters) are
compared with the torch reference cores under random-weighted losses on every output, over odd
shapes (T = 1, N = 1, N not a multiple of the 256-thread block, multi-block), every surrogate
(and a band-truncated one), both reset modes, and the four storage dtypes. A mutation test shows
that a one-token change in a kernel's math fails these comparisons.
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from cupy_neurons import build, kernels, launch
from sjframe.neurons.adlif import run_adlif
from sjframe.neurons.culif import CuLIF, run_culif
from sjframe.neurons.lif import run_lif
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import SURROGATE_TABLE, get_surrogate
from tests.support.kernel_cases import (
    VARIANTS,
    Case,
    assert_mutation_fails,
    case_specs,
    check_case,
    run_case,
    run_module_two_chunks,
)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ for the host build")

SHAPES = [(1, 1, (1,)), (7, 3, (5,)), (5, 2, (3, 37)), (3, 2, (150,)), (2, 3, (257,))]
SURROGATES = [get_surrogate(name) for name in SURROGATE_TABLE] + [get_surrogate("fast_sigmoid", rho=100.0, band=0.2)]

CASES_F64_SHAPES = [Case(v, t, b, f, torch.float64, get_surrogate(), det)
                    for v in VARIANTS for (t, b, f) in SHAPES for det in (True, False)]
CASES_F64_SURROGATES = [Case(v, 6, 2, (40,), torch.float64, s, det, seed=3)
                        for v in VARIANTS for s in SURROGATES for det in (True, False)]
CASES_F32 = [Case(v, t, b, f, torch.float32, get_surrogate("arctan"), True, seed=1)
             for v in VARIANTS for (t, b, f) in SHAPES]
CASES_16 = [Case(v, t, b, f, dt, get_surrogate(), det, seed=2)
            for v in VARIANTS for dt in (torch.float16, torch.bfloat16)
            for (t, b, f), det in (((1, 1, (1,)), True), ((9, 3, (70,)), True), ((6, 2, (90,)), False))]
ALL_CASES = CASES_F64_SHAPES + CASES_F64_SURROGATES + CASES_F32 + CASES_16


@pytest.fixture(scope="module", autouse=True)
def _host_bundle() -> None:
    """One g++ run for every specialisation the tests need (cached on disk by source hash)."""
    launch.preload_host(case_specs(ALL_CASES) + [(kernels.ROUNDTRIP_SPEC, (kernels.ROUNDTRIP_SIG,))])


# ------------------------------------------------------------------------------------ arithmetic
@pytest.mark.parametrize("case", CASES_F64_SHAPES, ids=str)
def test_float64_shapes(case: Case) -> None:
    check_case(case)


@pytest.mark.parametrize("case", CASES_F64_SURROGATES, ids=str)
def test_float64_every_surrogate(case: Case) -> None:
    check_case(case)


@pytest.mark.parametrize("case", CASES_F32, ids=str)
def test_float32(case: Case) -> None:
    check_case(case)


@pytest.mark.parametrize("case", CASES_16, ids=str)
def test_float16_bfloat16(case: Case) -> None:
    check_case(case)


def test_16bit_conversions_match_torch() -> None:
    """common.cuh's binary16 / bfloat16 rounding equals torch's (every half value, random floats, edges)."""
    every_half = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    g = torch.Generator().manual_seed(0)
    wide = torch.randn(100_000, generator=g) * torch.exp(torch.randn(100_000, generator=g) * 8)
    ties = (every_half[:31744] + torch.nextafter(every_half[:31744], torch.tensor(math.inf))) / 2  # near midpoints
    edges = torch.tensor([65504.0, 65519.99, 65520.0, 1e10, -1e10, math.inf, -math.inf, math.nan, 2**-25,
                          2**-25 * 1.0001, 2**-24 * 1.5, 2**-24 * 2.5, 0.0, -0.0, 3.4e38, 1.0 + 2**-11, 1.0 + 3 * 2**-11])
    x = torch.cat([every_half, wide, ties, edges]).contiguous()
    half_rt, bf16_rt = torch.empty_like(x), torch.empty_like(x)
    launch.launch(kernels.ROUNDTRIP_SPEC, kernels.ROUNDTRIP_SIG, x.numel(), [x, half_rt, bf16_rt, x.numel()])
    for got, want in ((half_rt, x.half().float()), (bf16_rt, x.bfloat16().float())):
        nan = want.isnan()
        assert torch.equal(got.isnan(), nan)
        assert torch.equal(got[~nan], want[~nan])
        assert torch.equal(torch.signbit(got[~nan]), torch.signbit(want[~nan]))


def test_double_precision_expr() -> None:
    expr = get_surrogate("laplace").cuda_expr("u")
    assert "fabsf" in expr and "expf" in expr
    out = build.double_precision_expr(expr)
    assert "fabsf" not in out and "expf" not in out and "0.05f" not in out and "0.05" in out


# ------------------------------------------------------------------------------------ mutation
MUTATIONS = [
    ("culif.cu", "    i = gam * i + x;", "    i = lam * i + x;", Case("pculif_neuron", 6, 2, (40,))),
    ("culif.cu", "di = gam * di + ((acc_t)1 - lam) * dh;", "di = gam * di + lam * dh;", Case("culif", 6, 2, (40,))),
    ("adlif.cu", "    ch = a * dw;", "    ch = b * dw;", Case("adlif", 6, 2, (40,))),
    ("lif.cu", "    dh -= theta * dn * sg;", "    dh += theta * dn * sg;",
     Case("lif", 6, 2, (40,), detach_reset=False)),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: f"{m[0]}:{m[2].strip()}")
def test_a_typo_in_a_kernel_fails(mutation: tuple, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    assert_mutation_fails(mutation, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------------ glue
def test_noncontiguous_input_and_state_give_the_same_result() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, 3, 5, generator=g, dtype=torch.float64) + 0.5  # [T, F1, B, F2]
    x_nc = base.transpose(1, 2)  # [T, B=3, 8, 5], not contiguous
    v0 = torch.randn(5, 8, 3, generator=g, dtype=torch.float64).permute(2, 1, 0)  # [3, 8, 5] non-contiguous
    i0 = torch.zeros(3, 8, 5, dtype=torch.float64)
    sur = get_surrogate()
    a = run_culif(x_nc, (v0, i0), 0.8, 0.7, 1.0, sur)
    b = run_culif(x_nc.contiguous(), (v0.contiguous(), i0), 0.8, 0.7, 1.0, sur)
    assert not x_nc.is_contiguous()
    for u, w in zip((a.spikes, a.h_seq, *a.state), (b.spikes, b.h_seq, *b.state)):
        assert torch.equal(u, w)


def test_parameter_broadcast_per_channel() -> None:
    """A (C, 1) parameter broadcasts over the feature shape (C, L) and its gradient sums back."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(5, 2, 3, 4, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    beta_c = torch.full((3, 1), 0.8, dtype=torch.float64, requires_grad=True)
    out = run_lif(x, None, beta_c, 1.0, get_surrogate())
    (grad_c,) = torch.autograd.grad((out.h_seq ** 2).sum(), beta_c)
    beta_full = beta_c.detach().expand(3, 4).clone().requires_grad_()
    out2 = run_lif(x, None, beta_full, 1.0, get_surrogate())
    (grad_full,) = torch.autograd.grad((out2.h_seq ** 2).sum(), beta_full)
    assert grad_c.shape == (3, 1)
    torch.testing.assert_close(grad_c, grad_full.sum(1, keepdim=True), rtol=1e-12, atol=1e-12)


def test_no_grad_forward_skips_saved_sequences() -> None:
    x = torch.randn(4, 2, 3)
    w = torch.zeros(3, requires_grad=True)
    with torch.no_grad():
        out = run_culif(x, None, torch.sigmoid(w), torch.sigmoid(w), 1.0, get_surrogate())
    assert out.spikes.shape == (4, 2, 3) and not out.spikes.requires_grad
    culif_fwd = kernels.neuron_ops("culif").fwd
    _s, _h, _v, _i, iprev = culif_fwd(x.reshape(4, 6), x.new_zeros(6), x.new_zeros(6), torch.full((1,), 0.5),
                                      torch.full((1,), 0.5), 1.0, get_surrogate().cuda_expr("u"), True, False)
    assert iprev.numel() == 0


def test_validation_errors() -> None:
    sur = get_surrogate()
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="x_seq dtype"):
        run_lif(x.to(torch.int32), None, 0.9, 1.0, sur)
    with pytest.raises(ValueError, match="at least 2 dims"):
        run_lif(torch.randn(4), None, 0.9, 1.0, sur)
    with pytest.raises(ValueError, match="at least one time step"):
        run_lif(torch.randn(0, 2, 3), None, 0.9, 1.0, sur)
    with pytest.raises(ValueError, match="state v has shape"):
        run_culif(x, (torch.zeros(2, 4), torch.zeros(2, 3)), 0.9, 0.8, 1.0, sur)
    with pytest.raises(ValueError, match="state must have 4 tensors"):
        run_adlif(x, (torch.zeros(2, 3),), 0.9, 0.8, 0.1, 0.1, 1.0, sur)
    with pytest.raises(ValueError, match="parameter alpha of shape"):
        run_adlif(x, None, torch.rand(4), 0.8, 0.1, 0.1, 1.0, sur)
    with pytest.raises(ValueError, match="parameter beta must be finite"):
        run_lif(x, None, math.nan, 1.0, sur)
    with pytest.raises(ValueError, match="theta must be a finite number"):
        run_lif(x, None, 0.9, math.inf, sur)
    with pytest.raises(ValueError, match="surrogate must be"):
        run_lif(x, None, 0.9, 1.0, "fast_sigmoid")


def test_parameter_shape_check_follows_torch_broadcasting() -> None:
    """A parameter passes iff ``torch.broadcast_shapes(shape, feat) == feat`` (the check is written by hand)."""
    from cupy_neurons.neurons import _params

    for feat in [(3,), (2, 3), (1, 3), (2, 1)]:
        x = torch.zeros(2, 4, *feat)
        for shape in [(3,), (1,), (2,), (1, 3), (2, 3), (2, 1), (3, 1), (1, 1, 3), (4, 3), (2, 2, 3), (1, 2, 3)]:
            if math.prod(shape) == 1:
                continue  # a one-element tensor is a scalar parameter
            try:
                expected = torch.broadcast_shapes(shape, feat) == torch.Size(feat)
            except RuntimeError:
                expected = False
            if expected:
                (out,) = _params({"beta": torch.rand(shape)}, x, "test")
                assert out.shape == (math.prod(feat),), (feat, shape)
            else:
                with pytest.raises(ValueError, match="parameter beta of shape"):
                    _params({"beta": torch.rand(shape)}, x, "test")


def test_module_entry_requires_cuda_in_every_gradient_mode() -> None:
    for mode in ("dense", "sparse", "localzo"):
        module = CuLIF(gradient=GradientSpec(mode=mode))
        module.backend = "cupy"  # set after construction: check_backend refuses 'cupy' without a GPU
        with pytest.raises(ValueError, match="must be a CUDA tensor"):
            module(torch.randn(3, 2, 4))


def test_modules_refuse_cupy_backend_without_gpu() -> None:
    from sjframe.neurons.base import cupy_unavailable_reason
    from sjframe.neurons.culif import CuLIF

    if cupy_unavailable_reason() is None:
        pytest.skip("CUDA and CuPy are available here")
    with pytest.raises(RuntimeError, match="backend='cupy' cannot run here"):
        CuLIF(backend="cupy")


# ------------------------------------------------------------------------------------ torch.library
def test_opcheck_custom_ops() -> None:
    """Schema, fake tensors, autograd registration and AOT dispatch of the three forward ops (dense and LocalZO)."""
    g = torch.Generator().manual_seed(0)
    T, N = 4, 6
    x = (torch.randn(T, N, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
    z = [torch.zeros(N, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    p = [torch.full((N,), 0.7, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    expr = get_surrogate().cuda_expr("u")
    torch.library.opcheck(kernels.neuron_ops("culif").fwd, (x, z[0], z[1], p[0], p[1], 1.0, expr, True, True))
    torch.library.opcheck(kernels.neuron_ops("adlif").fwd, (x, z[0], z[1], z[2], z[3], *p, 1.0, expr, False, True))
    torch.library.opcheck(kernels.neuron_ops("lif").fwd, (x, z[0], z[1], p[0], 1.0, expr, True))
    # with the LocalZO inputs (keys [T], quantile table or None, law code, samples, delta)
    from sjframe.spike import localzo as lz

    keys = torch.tensor([11, 22, 33, 44], dtype=torch.int64)
    zo = (keys, lz.quantile_table("normal"), lz.DIST_CODES["normal"], 2, 0.4)
    torch.library.opcheck(kernels.neuron_ops("culif").fwd, (x, z[0], z[1], p[0], p[1], 1.0, expr, True, True, *zo))
    torch.library.opcheck(kernels.neuron_ops("adlif").fwd, (x, z[0], z[1], z[2], z[3], *p, 1.0, expr, False, True, *zo))
    torch.library.opcheck(kernels.neuron_ops("lif").fwd, (x, z[0], z[1], p[0], 1.0, expr, True, keys, None,
                                                          lz.DIST_CODES["laplace"], 1, 0.4))


def test_torch_compile_matches_eager() -> None:
    """A Linear + kernel-neuron net under torch.compile (aot_eager: fake tensors + autograd graph)."""
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(6, 5, bias=False, dtype=torch.float64)
    w_m = torch.nn.Parameter(torch.full((5,), 1.2, dtype=torch.float64))
    sur = get_surrogate()

    def net(x: torch.Tensor) -> torch.Tensor:
        out = run_culif(lin(x), None, torch.sigmoid(w_m), torch.sigmoid(w_m) * 0.9, 0.5, sur)
        out2 = run_lif(out.h_seq, None, 0.8, 0.5, sur)
        return (out.spikes * 0.3 + out2.h_seq).sum()

    x = torch.randn(5, 3, 6, generator=g, dtype=torch.float64) * 2 + 0.5
    eager = net(x)
    grads_eager = torch.autograd.grad(eager, [lin.weight, w_m])
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    comp = compiled(x)
    grads_comp = torch.autograd.grad(comp, [lin.weight, w_m])
    torch.testing.assert_close(comp, eager, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_comp, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def _op_arguments(neuron: str, x: torch.Tensor, zo: tuple, gen: torch.Generator) -> tuple:
    """Arguments of ``neuron``'s forward op: random states and per-neuron parameters requiring grad."""
    nops = kernels.neuron_ops(neuron)
    T, N = x.shape
    states = [(torch.randn(N, generator=gen, dtype=x.dtype) * 0.3).requires_grad_() for _ in nops.kernel.states]
    params = [torch.empty(N, dtype=x.dtype).uniform_(0.2, 0.9, generator=gen).requires_grad_()
              for _ in nops.kernel.params]
    extra = (True,) if nops.kernel.extra is not None else ()
    return (x, *states, *params, 1.0, get_surrogate().cuda_expr("u"), False, *extra, *zo)


@pytest.mark.parametrize("localzo", [False, True])
@pytest.mark.parametrize("neuron", ["culif", "adlif", "lif"])
def test_eager_entry_equals_the_custom_op(neuron: str, localzo: bool) -> None:
    """NeuronOps.forward in eager mode (the autograd.Function that skips the custom-op machinery) gives the custom
    op's outputs and every gradient bit for bit: the same kernels with the same arguments (all outputs used, a
    loss on each, so that every incoming gradient and the parameter partials are exercised)."""
    from sjframe.spike import localzo as lz

    nops = kernels.neuron_ops(neuron)
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(6, 40, generator=gen, dtype=torch.float64) + 0.6).requires_grad_()
    zo = (torch.tensor([5, 6, 7, 8, 9, 10]), lz.quantile_table("normal"), lz.DIST_CODES["normal"], 2, 0.3) \
        if localzo else (None, None, 0, 1, 0.05)
    args = _op_arguments(neuron, x, zo, gen)
    inputs = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in nops.fwd(*args)]
    results = []
    for call in (nops.fwd, nops.forward):
        before = launch.launch_counts().get(("cpu", f"{neuron}_backward"), 0)
        out = call(*args)
        loss = sum((o * w).sum() for o, w in zip(out, weights, strict=True))
        grads = torch.autograd.grad(loss, inputs)
        assert launch.launch_counts()[("cpu", f"{neuron}_backward")] == before + 1
        results.append((out, grads))
    (out_op, grads_op), (out_eager, grads_eager) = results
    assert all(g.abs().sum() > 0 for g in grads_op)  # every gradient reached (a parameter partial left null is 0)
    for a, b in zip((*out_op, *grads_op), (*out_eager, *grads_eager), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("path", ["op", "eager"])
def test_no_second_derivative_through_the_kernels(path: str) -> None:
    """A second derivative through a kernel neuron is an error on both paths (the kernels have no double backward),
    not a silently missing term: the eager entry's backward is once-differentiable."""
    nops = kernels.neuron_ops("lif")
    x = torch.randn(4, 6, requires_grad=True)
    z = torch.zeros(6)
    args = (x, z, z, torch.tensor([0.8]), 1.0, get_surrogate().cuda_expr("u"), True, None, None, 0, 1, 0.05)
    h = (nops.fwd if path == "op" else nops.forward)(*args)[1]
    (g,) = torch.autograd.grad((h**2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="autograd formula|differentiate twice"):
        g.sum().backward()


def test_eager_entry_calls_the_custom_op_under_compile(monkeypatch) -> None:  # noqa: ANN001
    """Under torch.compile NeuronOps.forward is the custom op (the compiler sees it, its fake function and its
    autograd formula); the eager autograd.Function is not used there, and is used in eager mode."""
    torch._dynamo.reset()
    nops = kernels.neuron_ops("lif")
    used = []
    real_apply = nops.eager_function.apply
    monkeypatch.setattr(nops.eager_function, "apply", lambda *a: (used.append(1), real_apply(*a))[1])
    x = torch.randn(4, 6, dtype=torch.float64) + 0.6
    args = (torch.zeros(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64),
            torch.tensor([0.8], dtype=torch.float64), 1.0, get_surrogate().cuda_expr("u"), True, None, None, 0, 1, 0.05)

    def f(x: torch.Tensor) -> torch.Tensor:
        return nops.forward(x, *args)[1]

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)(x)
    assert not used
    eager = f(x)
    assert used
    assert torch.equal(compiled, eager)
    with pytest.raises(ValueError, match="lif forward takes 12 arguments"):
        nops.forward(x)


def test_launch_counter_counts_host_launches() -> None:
    before = launch.launch_counts().get(("cpu", "lif_forward"), 0)
    run_lif(torch.randn(3, 2, 2), None, 0.9, 1.0, get_surrogate())
    assert launch.launch_counts()[("cpu", "lif_forward")] == before + 1


def test_run_case_returns_every_gradient() -> None:
    res = run_case(Case("adlif", 3, 2, (4,)))
    assert len(res["k_grads"]) == 1 + 4 + 4  # input, four states, four raw parameters


@pytest.mark.parametrize("which", ["spikes", "h_seq", "state"])
def test_loss_on_one_output_only(which: str) -> None:
    """Absent output gradients reach the kernels as null pointers (= zero) and give the reference result."""
    from sjframe.neurons.adlif import adlif_multi_step
    from sjframe.spike import make_spike_fn

    g = torch.Generator().manual_seed(0)
    x = (torch.randn(8, 3, 20, generator=g, dtype=torch.float64) * 2.5 + 1.0).requires_grad_()
    raw = torch.rand(4, 20, generator=g, dtype=torch.float64).requires_grad_()
    sur = get_surrogate()

    def pick(out):  # noqa: ANN001, ANN202
        return {"spikes": out.spikes, "h_seq": out.h_seq, "state": out.state[1]}[which]

    params = lambda: (torch.sigmoid(raw[0] + 1), torch.sigmoid(raw[1] + 2), raw[2], raw[3])  # noqa: E731
    k = pick(run_adlif(x, None, *params(), 1.0, sur))
    r = pick(adlif_multi_step(x, None, *params(), 1.0, make_spike_fn(sur)))
    w = torch.randn(r.shape, generator=g, dtype=torch.float64)
    gk = torch.autograd.grad((k * w).sum(), [x, raw])
    gr = torch.autograd.grad((r * w).sum(), [x, raw])
    for a, b in zip(gk, gr):
        assert float(b.abs().max()) > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_benchmark_exits_clearly_without_gpu(monkeypatch) -> None:  # noqa: ANN001
    import importlib.util
    import sys
    from pathlib import Path

    from sjframe.neurons.base import cupy_unavailable_reason

    if cupy_unavailable_reason() is None:
        pytest.skip("a GPU is present: the benchmark would run")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernels.py"
    spec = importlib.util.spec_from_file_location("bench_kernels", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", [str(script)])
    with pytest.raises(SystemExit) as info:
        bench.main()
    assert "needs a CUDA GPU" in str(info.value.code) and "Nothing was measured" in str(info.value.code)


@pytest.mark.parametrize("neuron_type", ["culif", "pculif", "pculif_neuron", "adlif", "lif"])
def test_modules_through_the_kernel_entry_points(neuron_type: str, monkeypatch) -> None:  # noqa: ANN001
    """The modules' cupy dispatch (sjframe.neurons.<neuron>.kernel -> cupy_neurons) on CPU tensors (host build):
    two calls with carried states, h_seq stored, parameter gradients, equal to backend='torch'."""

    import sjframe.neurons.base as kernel_neurons

    monkeypatch.setattr(kernel_neurons, "_require_cuda", lambda module, x: None)  # let CPU tensors through
    results, counts = {}, []
    for backend in ("torch", "cupy"):
        counts.append(launch.launch_counts())
        results[backend] = run_module_two_chunks(neuron_type, backend, assign_backend=True)
    counts.append(launch.launch_counts())
    assert 0.01 < float(results["torch"][0].detach().mean()) < 0.99
    for a, b in zip(results["cupy"], results["torch"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    kind = "culif" if "culif" in neuron_type else neuron_type
    for which in ("forward", "backward"):  # the torch run launched no kernel, the cupy run two of each
        key = ("cpu", f"{kind}_{which}")
        assert counts[1].get(key, 0) == counts[0].get(key, 0)
        assert counts[2].get(key, 0) == counts[1].get(key, 0) + 2
