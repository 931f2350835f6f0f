"""Every kernel source compiles for the GPU without a GPU: nvcc (sm_80, sm_90) and NVRTC (CuPy's path).

Instantiations: every neuron source x every storage dtype x both reset modes (with the default
surrogate), and the same with the LocalZO backward (``SJ_LOCALZO = 1``: Philox noise in the kernel),
through nvcc to real sm_80 and sm_90 code (ptxas runs, so inline PTX is checked);
every surrogate (and a band-truncated one) in float and double precision through nvcc to PTX for
both architectures (the surrogate is the only part of a kernel that differs between them); and
the single-specialisation texts that CuPy's ``RawModule`` compiles at run time through NVRTC.
Warnings are errors.
"""

from __future__ import annotations

import pytest

from cupy_neurons import build, kernels
from sjframe.spike.surrogate import SURROGATE_TABLE, get_surrogate

NEURONS = ("culif", "adlif", "lif")
requires_nvcc = pytest.mark.skipif(build.nvcc_path() is None, reason="nvcc not found")


def _nvrtc():  # noqa: ANN202 - the cupy_backends nvrtc module or None
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception:  # noqa: BLE001 - any import / loading failure means NVRTC is not usable here
        return None
    return nvrtc


@requires_nvcc
@pytest.mark.slow
def test_nvcc_every_neuron_dtype_and_reset_sm80_sm90() -> None:
    specs = [kernels.specialisation(n, d, get_surrogate().cuda_expr("u"), det)
             for n in NEURONS for d in build.DTYPES for det in (True, False)]
    specs.append(kernels.ROUNDTRIP_SPEC)
    fatbin = build.compile_nvcc(build.render_device_bundle(specs), ("sm_80", "sm_90"), "fatbin")
    assert len(fatbin) > 10_000


@requires_nvcc
@pytest.mark.slow
def test_nvcc_localzo_every_neuron_dtype_and_reset_sm80_sm90() -> None:
    specs = [kernels.specialisation(n, d, "0.0f", det, localzo=True)
             for n in NEURONS for d in build.DTYPES for det in (True, False)]
    fatbin = build.compile_nvcc(build.render_device_bundle(specs), ("sm_80", "sm_90"), "fatbin")
    for i, spec in enumerate(specs):
        name = spec.source.removesuffix(".cu")
        assert f"{name}_backward_s{i}".encode() in fatbin and f"{name}_forward_s{i}".encode() in fatbin


@requires_nvcc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvcc_every_surrogate_float_and_double(arch: str) -> None:
    surrogates = [get_surrogate(name) for name in SURROGATE_TABLE] + [get_surrogate("fast_sigmoid", band=0.2)]
    specs = [kernels.specialisation(n, d, s.cuda_expr("u"), True)
             for s in surrogates for d in ("float32", "float64") for n in ("lif",)]
    ptx = build.compile_nvcc(build.render_device_bundle(specs), (arch,), "ptx").decode()
    for i in range(len(specs)):  # every instantiation made it into the PTX
        assert f"lif_backward_s{i}" in ptx and f"lif_forward_s{i}" in ptx


@requires_nvcc
def test_nvcc_reports_errors() -> None:
    bad = build.render_device(kernels.specialisation("lif", "float32", "undefined_function(u)", True))
    with pytest.raises(build.KernelCompileError, match="undefined_function"):
        build.compile_nvcc(bad, ("sm_80",), "ptx")


def _nvrtc_ptx(text: str, name: str) -> str:
    """PTX of ``text`` compiled by NVRTC with CuPy's options (compute_80); a compile error fails the test with the log."""
    nvrtc = _nvrtc()
    prog = nvrtc.createProgram(text, f"{name}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, ["-arch=compute_80", *build.NVRTC_OPTIONS])
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"NVRTC failed on {name}: {exc}\n{nvrtc.getProgramLog(prog)}")
    ptx = nvrtc.getPTX(prog)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@pytest.mark.skipif(_nvrtc() is None, reason="NVRTC (cupy_backends) not loadable")
@pytest.mark.parametrize("neuron", NEURONS)
def test_nvrtc_compiles_the_runtime_texts(neuron: str) -> None:
    """The exact texts (and options) ``cupy.RawModule`` compiles when a layer first runs."""
    for dtype, localzo in [(d, False) for d in build.DTYPES] + [(d, True) for d in build.DTYPES]:
        spec = kernels.specialisation(neuron, dtype, get_surrogate("sigmoid").cuda_expr("u"), True, localzo)
        ptx = _nvrtc_ptx(build.render_device(spec), f"{neuron}_{dtype}")
        assert f"{neuron}_forward" in ptx and f"{neuron}_backward" in ptx


@pytest.mark.skipif(_nvrtc() is None, reason="NVRTC (cupy_backends) not loadable")
def test_nvrtc_compiles_the_sparse_runtime_texts() -> None:
    """The S3GD / LocalZO kernels' runtime texts (every storage dtype) through NVRTC, as CuPy compiles them."""
    import torch

    from cupy_neurons.sparse import kernels as sparse_kernels

    sur = get_surrogate("fast_sigmoid", rho=100.0, band=0.2).cuda_expr("u")
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        ptx = _nvrtc_ptx(sparse_kernels.device_text(sparse_kernels.specialisation(dtype, sur)), f"s3gd_{dtype}")
        assert all(name in ptx for name in sparse_kernels.KERNELS)
