"""Surrogates: values, normalisation, band truncation, errors, and the generated C expression."""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from sjframe.spike.surrogate import SURROGATE_TABLE, Surrogate, get_surrogate, spike, surrogate_from_config

NORMALISED = ["sigmoid", "arctan", "gaussian", "triangle", "laplace", "uniform"]


def test_fast_sigmoid_is_the_papers_superspike() -> None:
    sur = get_surrogate("fast_sigmoid")  # rho = 5 by default
    u = torch.tensor([0.0, 0.1, -0.3, 2.0], dtype=torch.float64)
    expected = 1.0 / (5.0 * u.abs() + 1.0) ** 2
    torch.testing.assert_close(sur.derivative(u), expected)


@pytest.mark.parametrize("name", NORMALISED)
def test_normalised_surrogates_integrate_to_one(name: str) -> None:
    sur = get_surrogate(name)
    scale = max(sur.values.values())
    u = torch.linspace(-60 * scale, 60 * scale, 400_001, dtype=torch.float64)
    integral = torch.trapezoid(sur.derivative(u), u).item()
    assert integral == pytest.approx(1.0, abs=2e-3), name


def test_fast_sigmoid_integral_is_two_over_rho() -> None:
    sur = get_surrogate("fast_sigmoid", rho=4.0)
    u = torch.linspace(-1e4, 1e4, 2_000_001, dtype=torch.float64)
    assert torch.trapezoid(sur.derivative(u), u).item() == pytest.approx(0.5, rel=2e-3)


def test_sigmoid_primitive_derivative_matches() -> None:
    sur = get_surrogate("sigmoid", alpha=3.0)
    u = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(sur.primitive(u).sum(), u)
    torch.testing.assert_close(grad, sur.derivative(u.detach()))


def test_band_truncates() -> None:
    sur = get_surrogate("fast_sigmoid", rho=100.0, band=0.2)
    u = torch.tensor([-0.25, -0.2, -0.19, 0.0, 0.19, 0.2, 0.5])
    g = sur.derivative(u)
    assert (g[[0, 1, 5, 6]] == 0).all()
    assert (g[[2, 3, 4]] > 0).all()


def test_spike_forward_and_backward() -> None:
    sur = get_surrogate("arctan")
    u = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
    s = spike(u, sur)
    assert s.tolist() == [0.0, 1.0, 1.0]  # spike when u >= 0
    s.sum().backward()
    torch.testing.assert_close(u.grad, sur.derivative(u.detach()))


def test_config_forms_and_errors() -> None:
    assert surrogate_from_config(None) == get_surrogate("fast_sigmoid")
    assert surrogate_from_config("normal").name == "gaussian"
    assert surrogate_from_config({"name": "sigmoid", "alpha": 2}).values["alpha"] == 2.0
    with pytest.raises(ValueError, match="unknown surrogate 'nope'"):
        get_surrogate("nope")
    with pytest.raises(ValueError, match="has no parameter 'beta'.*valid: \\['alpha'\\]"):
        get_surrogate("sigmoid", beta=1.0)
    with pytest.raises(ValueError, match="positive"):
        get_surrogate("sigmoid", alpha=-1.0)
    with pytest.raises(ValueError, match="'name' key"):
        surrogate_from_config({"alpha": 1.0})
    # hashable: keys kernel caches
    assert len({get_surrogate("sigmoid"), get_surrogate("sigmoid"), get_surrogate("sigmoid", alpha=1.0)}) == 2


# ----------------------------------------------------------------- generated C expressions
def _build_c_library(tmp: Path, surrogates: list[Surrogate]) -> ctypes.CDLL:
    """Compile each surrogate's ``cuda_expr`` as a host C function with the kernels' helpers."""
    kernels = Path(__file__).resolve().parents[1] / "cupy_neurons"
    # the kernels' own helpers (sj_sq, sj_sigmoid, sj_max0), through the host shim they are tested with
    lines = [f'#include "{kernels / "host_shim.h"}"', f'#include "{kernels / "common.cuh"}"']
    for k, sur in enumerate(surrogates):
        lines.append(
            f'extern "C" void sur{k}(const float* in, float* out, int n) '
            f"{{ for (int i = 0; i < n; ++i) {{ float u = in[i]; out[i] = {sur.cuda_expr('u')}; }} }}"
        )
    src = tmp / "sur.cpp"
    src.write_text("\n".join(lines) + "\n")
    lib = tmp / "libsur.so"
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_cuda_expressions_match_torch(tmp_path: Path) -> None:
    surrogates = [get_surrogate(name) for name in SURROGATE_TABLE]
    surrogates += [get_surrogate("fast_sigmoid", rho=100.0, band=0.2), get_surrogate("gaussian", sigma=0.05)]
    lib = _build_c_library(tmp_path, surrogates)
    u = np.linspace(-1.5, 1.5, 1001, dtype=np.float32)
    for k, sur in enumerate(surrogates):
        out = np.empty_like(u)
        fn = getattr(lib, f"sur{k}")
        fn(u.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(u.size))
        ref = sur.derivative(torch.from_numpy(u)).numpy()
        np.testing.assert_allclose(out, ref, rtol=2e-5, atol=1e-6, err_msg=f"{sur.name} {sur.values}")


def test_cuda_expression_inlines_parameters() -> None:
    expr = get_surrogate("fast_sigmoid", rho=5.0).cuda_expr("u")
    assert "5.0f" in expr and "rho" not in expr and "fabsf" in expr
    assert math.isclose(float(get_surrogate("sigmoid", alpha=2.5).values["alpha"]), 2.5)


def test_derivatives_compile_without_graph_break() -> None:
    """``torch.compile`` traces every surrogate's derivative (with a band) in one graph, same numbers."""
    u = torch.linspace(-2.0, 2.0, 41)
    for name in SURROGATE_TABLE:
        sur = get_surrogate(name, band=1.5)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(sur.derivative)(u)
        assert explained.graph_break_count == 0 and explained.graph_count == 1, name
    torch._dynamo.reset()
