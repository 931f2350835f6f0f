"""The CPU backend (``backend='cpu'``, and ``'auto'`` on CPU tensors): the fast host build of the kernel text.

The kernel-vs-reference suites (``test_kernels_cpu.py``, ``test_kernels_localzo.py``,
``test_gradients_kernels.py``) run the ``fast`` build (the default for CPU tensors). Here:

* every neuron variant, gradient mode (dense, sparse, LocalZO) and dtype (float32, float64), odd shapes
  (one chunk of lanes, several, a partial last one), against the torch reference in each host build
  (``check``: the sequential model of a GPU launch; ``fast``: the backend; ``fma``: with contraction)
  at 1 and 2 threads;
* ``fast`` against ``check`` within a few ulps (each element's arithmetic is the same, in the same order;
  the builds differ in vectorisation and threads) and the thread count not changing a neuron kernel's result;
* the modules with ``backend='cpu'`` / ``'auto'`` against ``backend='torch'`` (states carried, ``h_seq``,
  parameter gradients), ``torch.compile`` of a module, the sparse ``Linear + LIF`` layer;
* the one-line error without a C++ compiler, and the pre-build command filling the disk cache.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from cupy_neurons import build, kernels, launch
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import get_surrogate
from tests.support.kernel_cases import (
    VARIANTS,
    Case,
    assert_close_ulps,
    case_specs,
    check_case,
    kernel_localzo_estimate,
    run_case,
    run_module_two_chunks,
)

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ for the host builds")

ROOT = Path(__file__).resolve().parents[1]
# odd shapes: N = 1, 15, 300 (a full chunk of 256 lanes and a partial one), 771 (three chunks)
SHAPES = [(1, 1, (1,)), (7, 3, (5,)), (3, 2, (150,)), (2, 3, (257,))]
MODES = {
    "dense": None,
    "sparse": GradientSpec(mode="sparse", b_th=0.5),
    "localzo": GradientSpec(mode="localzo", delta=0.3, samples=2, distribution="laplace", rng="philox"),
}


def _cases() -> list[Case]:
    out = []
    for v in VARIANTS:
        for mode, grad in MODES.items():
            for dtype in (torch.float64, torch.float32):
                for i, (t, b, f) in enumerate(SHAPES):
                    if dtype == torch.float32 and i % 2:  # float32: every other shape (the suites run the rest)
                        continue
                    out.append(Case(v, t, b, f, dtype, get_surrogate("arctan" if mode == "sparse" else "fast_sigmoid"),
                                    detach_reset=(i % 2 == 0), seed=5 + i, gradient=grad))
    return out


CASES = _cases()


@pytest.fixture
def threads():  # noqa: ANN201
    """Set torch's thread count for one test (restored after)."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _bundles() -> None:
    """Build every specialisation of the cases in each host build once (one compiler run per build)."""
    for kind in build.HOST_BUILDS:
        launch.preload_host(case_specs(CASES), kind)


# ------------------------------------------------------------------------------------ against the reference
@pytest.mark.parametrize(("kind", "n_threads"), [("fast", 1), ("fast", 2), ("check", 1), ("fma", 2)])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_build_against_the_reference(case: Case, kind: str, n_threads: int, threads, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv(launch.HOST_BUILD_ENV, kind)
    threads(n_threads)
    check_case(case)


@pytest.mark.parametrize("case", [c for c in CASES if c.T > 1], ids=str)
def test_fast_build_equals_check_build_within_ulps(case: Case, monkeypatch) -> None:  # noqa: ANN001
    """Same text, same per-element operations in the same order (no FMA contraction in either): the vectorised,
    multi-threaded build stays within 2 ulps of the sequential one on every output and gradient."""
    results = {}
    for kind in ("check", "fast"):
        monkeypatch.setenv(launch.HOST_BUILD_ENV, kind)
        results[kind] = run_case(case)
    for key in ("k_out", "k_grads"):
        for i, (a, b) in enumerate(zip(results["fast"][key], results["check"][key], strict=True)):
            assert_close_ulps(a, b, 2, case.dtype, f"{case} {key}[{i}]")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_thread_count_does_not_change_a_neuron_kernel(variant: str, threads, monkeypatch) -> None:  # noqa: ANN001
    """Each neuron's arithmetic is independent of how the blocks are shared among threads: the same build at 1 and 2
    threads gives the same values (N = 771: three chunks of lanes, split between the threads)."""
    monkeypatch.setenv(launch.HOST_BUILD_ENV, "fast")
    case = Case(variant, 9, 3, (257,), torch.float32, get_surrogate(), True, seed=2)
    results = []
    for n in (1, 2):
        threads(n)
        results.append(run_case(case))
    for key in ("k_out", "k_grads"):
        for a, b in zip(results[0][key], results[1][key], strict=True):
            assert torch.equal(a, b), f"{variant}: {key} differs between 1 and 2 threads"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_steps_per_pass_do_not_change_a_neuron_kernel(variant: str, monkeypatch) -> None:  # noqa: ANN001
    """A backward kernel's ``SJ_STEPS`` steps per pass over its lanes (common.cuh) only keep each lane's state in
    registers between steps: 1 and :data:`build.CPU_STEPS` steps give the same values bit for bit (the same build, the
    same per-element operations in the same order). T = 9: two passes of 4 steps, then step 0 alone; reset not
    detached (its extra term), the parameter gradients included. (It fails when a pass of several steps hands its
    step function a wrong flag: checked by hand.)"""
    monkeypatch.setenv(launch.HOST_BUILD_ENV, "fast")
    cases = [Case(variant, 9, 3, (257,), torch.float32, get_surrogate(), False, seed=4)]
    results = {}
    try:
        for steps in sorted({1, build.CPU_STEPS}):
            monkeypatch.setattr(build, "CPU_STEPS", steps)
            monkeypatch.setattr(launch, "_REGISTRY", launch._Registry())  # the launcher caches its host functions
            build._host_library.cache_clear()  # cached per items and flags, not per rendered text
            results[steps] = [run_case(case) for case in cases]
    finally:
        build._host_library.cache_clear()
    first, *others = results.values()
    for steps, res in zip(list(results)[1:], others, strict=True):
        for case, a_res, b_res in zip(cases, first, res, strict=True):
            for key in ("k_out", "k_grads"):
                assert len(a_res[key]) == len(b_res[key]) > 1
                for i, (a, b) in enumerate(zip(a_res[key], b_res[key], strict=True)):
                    assert torch.equal(a, b), f"{case} {key}[{i}]: {steps} steps per pass differ from 1"


def _spy_host_calls(monkeypatch) -> list[tuple[str, tuple]]:  # noqa: ANN001
    """Record every call of a fast host wrapper as ``(kernel name, wrapper arguments)``: the wrappers take ``(grid,
    block, threads, lanes, <kernel arguments>)``. Starts from an empty launcher registry, which caches the functions
    it looked up."""
    monkeypatch.setenv(launch.HOST_BUILD_ENV, "fast")
    seen: list[tuple[str, tuple]] = []
    real = build.HostLibrary.function

    def spy(self, spec, sig):  # noqa: ANN001, ANN202
        fn = real(self, spec, sig)
        return lambda *args: (seen.append((sig.name, args)), fn(*args))

    monkeypatch.setattr(build.HostLibrary, "function", spy)
    monkeypatch.setattr(launch, "_REGISTRY", launch._Registry())
    return seen


def test_launches_use_torch_thread_count(threads, monkeypatch) -> None:  # noqa: ANN001
    """The fast build's wrappers take the OpenMP thread count: torch.get_num_threads() at the launch."""
    calls = _spy_host_calls(monkeypatch)
    for n in (1, 2):
        threads(n)
        run_case(Case("culif", 3, 2, (5,), torch.float32))
    seen = [args[2] for _, args in calls]
    assert seen and set(seen[:2]) == {1} and set(seen[-2:]) == {2}


def test_lane_count_per_kernel(monkeypatch) -> None:  # noqa: ANN001
    """A forward neuron kernel is launched with build.CPU_FORWARD_LANES neurons per call, a backward one with
    build.CPU_LANES (the size of the lane arrays), and the grid covers N with them (N = 300); the sparse kernels (no
    lanes) run one element per thread."""
    from cupy_neurons.sparse import kernels as sparse_kernels

    calls = _spy_host_calls(monkeypatch)
    run_case(Case("lif", 3, 2, (150,), torch.float32))
    seen = [(name, args[0], args[3]) for name, args in calls]
    assert build.CPU_FORWARD_LANES <= build.CPU_LANES
    assert ("lif_forward", -(-300 // build.CPU_FORWARD_LANES), build.CPU_FORWARD_LANES) in seen
    assert ("lif_backward", -(-300 // build.CPU_LANES), build.CPU_LANES) in seen
    assert all(build.cpu_lanes(sig) == 1 for sig in sparse_kernels.KERNELS.values())
    monkeypatch.setattr(build, "CPU_FORWARD_LANES", 2 * build.CPU_LANES)  # more than the lane arrays hold
    with pytest.raises(ValueError, match="lanes per call"):
        build.cpu_lanes(kernels.neuron_ops("lif").kernel.forward)


# ------------------------------------------------------------------------------------ modules
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("neuron_type", ["culif", "pculif", "pculif_neuron", "adlif", "lif"])
def test_modules_cpu_and_auto_equal_torch(neuron_type: str, mode: str, monkeypatch) -> None:  # noqa: ANN001
    """backend='cpu' and 'auto' (CPU tensors) against backend='torch': two calls with carried states, h_seq,
    input and parameter gradients (LocalZO: the same Philox keys from the same seed; the torch backend takes the
    kernels' estimate, checked elementwise against its own within the ulp bound of their logarithms, so that the
    backends differ only in float64 arithmetic)."""

    import sjframe.spike.gradient
    import sjframe.spike.localzo

    def estimate_of_the_kernels(u, distribution, delta, samples, k, rng, generator):  # noqa: ANN001, ANN202
        assert rng == "philox"  # the key drawn as sjframe.spike.localzo.localzo_estimate draws it
        return kernel_localzo_estimate(u, distribution, delta, samples, k, sjframe.spike.localzo.draw_key(generator))

    monkeypatch.setattr(sjframe.spike.gradient, "localzo_estimate", estimate_of_the_kernels)
    grad = MODES[mode]
    results, counts = {}, []
    for backend in ("torch", "cpu", "auto"):
        counts.append(launch.launch_counts())
        results[backend] = run_module_two_chunks(neuron_type, backend, gradient=grad)
    counts.append(launch.launch_counts())
    assert 0.01 < float(results["torch"][0].detach().mean()) < 0.99
    for backend in ("cpu", "auto"):
        for a, b in zip(results[backend], results["torch"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    kind = "culif" if "culif" in neuron_type else neuron_type
    for which in ("forward", "backward"):  # torch: no kernel; cpu and auto: two of each
        key = ("cpu", f"{kind}_{which}")
        assert counts[1].get(key, 0) == counts[0].get(key, 0)
        assert counts[2].get(key, 0) == counts[1].get(key, 0) + 2
        assert counts[3].get(key, 0) == counts[2].get(key, 0) + 2


def test_model_config_accepts_cpu_and_auto() -> None:
    from sjframe.layers.common import SpikingOptions

    for backend in ("cpu", "auto"):
        assert SpikingOptions(backend=backend).backend == backend
    with pytest.raises(ValueError, match="unknown"):
        SpikingOptions(backend="gpu")


def test_torch_compile_of_a_cpu_module_matches_eager() -> None:
    from sjframe.neurons.culif import PCuLIF

    torch.manual_seed(0)
    layer = PCuLIF(tau_m=3.0, tau_s=2.0, per_neuron=True, num_neurons=7, backend="cpu")
    x = torch.randn(5, 3, 7) * 1.5 + 0.7

    def run(fn):  # noqa: ANN001, ANN202
        layer.reset()
        xx = x.clone().requires_grad_()
        out = fn(xx)
        (out * torch.arange(7.0)).sum().backward()
        grads = [xx.grad, *(p.grad.clone() for p in layer.parameters())]
        layer.zero_grad()
        return out, grads

    eager = run(layer)
    compiled = run(torch.compile(layer))
    torch.testing.assert_close(compiled[0], eager[0])
    for a, b in zip(compiled[1], eager[1], strict=True):
        torch.testing.assert_close(a, b)


def test_sparse_linear_lif_on_the_cpu_backend(threads) -> None:  # noqa: ANN001
    """The fused Linear + LIF layer with backend='cpu' against torch: the dense mode through the LIF kernel, the sparse
    mode through the torch sparse backward (faster than the S3GD kernels on a CPU; the kernels themselves run in the
    fast build, 2 threads with atomic sums, in test_gradients_kernels.py)."""
    from sjframe.layers.sparse_linear_lif import sparse_linear_lif

    threads(2)
    g = torch.Generator().manual_seed(0)
    x = ((torch.rand(8, 4, 30, generator=g) < 0.3).double()).requires_grad_()
    w = (torch.randn(20, 30, generator=g, dtype=torch.float64) * 0.6).requires_grad_()
    grads = {}
    for mode in ("dense", "sparse"):
        before = launch.launch_counts().get(("cpu", "lif_backward"), 0)
        for backend in ("torch", "cpu"):
            out = sparse_linear_lif(x, w, 0.85, 1.0, gradient={"mode": mode, "b_th": 0.5} if mode == "sparse" else mode,
                                    backend=backend)
            r = torch.randn(out.spikes.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
            grads[backend] = (out.spikes, *torch.autograd.grad((out.spikes * r).sum(), [x, w]))
        assert 0.0 < float(grads["torch"][0].detach().mean()) < 1.0
        for a, b in zip(grads["cpu"], grads["torch"], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
        ran = launch.launch_counts().get(("cpu", "lif_backward"), 0) - before
        assert ran == (1 if mode == "dense" else 0)


# ------------------------------------------------------------------------------------ errors, pre-build
def test_no_compiler_is_a_one_line_error(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    from sjframe.neurons.culif import CuLIF

    monkeypatch.setenv("CXX", "no-such-compiler-sjframe")
    with pytest.raises(RuntimeError) as info:
        CuLIF(backend="cpu")
    msg = str(info.value)
    assert "\n" not in msg and "no C++ compiler" in msg and "no-such-compiler-sjframe" in msg
    layer = CuLIF(backend="auto")  # auto: checked per call, for the input's device
    with pytest.raises(RuntimeError, match="backend='cpu' cannot run here: no C\\+\\+ compiler"):
        layer(torch.ones(2, 1, 3))
    monkeypatch.setenv("SJFRAME_KERNEL_CACHE", str(tmp_path))  # nothing cached: the launch must compile
    with pytest.raises(build.KernelCompileError) as info:
        build.compile_host_source("int x;", build.HOST_BUILDS["fast"][0])
    assert "\n" not in str(info.value) and "no C++ compiler" in str(info.value)


def test_prebuild_fills_the_cache_the_launch_reads(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    monkeypatch.setenv("SJFRAME_KERNEL_CACHE", str(tmp_path))
    spec = kernels.specialisation("lif", "float64", get_surrogate().cuda_expr("u"), True)
    items = [(spec, kernels.NEURON_KERNELS["lif"])]
    (path,) = build.prebuild(items, "fast", jobs=1)
    assert path.parent == tmp_path and path.is_file()

    cxx = build.os.environ.get("CXX", "g++")
    version, target = build._compiler_version(cxx), build._native_target(cxx)

    def no_compiler(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError(f"compiled again: {args[0]}")

    monkeypatch.setattr(build.subprocess, "run", no_compiler)
    monkeypatch.setattr(build, "_compiler_version", lambda c: version)
    monkeypatch.setattr(build, "_native_target", lambda c: target)
    lib = build._host_library.__wrapped__(tuple((s, tuple(k)) for s, k in items), "fast", build.host_flags("fast"))
    assert lib.path == path


def test_prebuild_script_lists_every_neuron_and_the_sparse_kernels() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import prebuild_cpu_kernels as script
    finally:
        sys.path.pop(0)
    items = script.items(all_surrogates=False)
    sources = {spec.source for spec, _ in items}
    assert sources == {"culif.cu", "adlif.cu", "lif.cu", "sparse/s3gd.cu"}
    assert len(items) == len({spec for spec, _ in items})
    assert len(script.items(all_surrogates=True)) > len(items)
