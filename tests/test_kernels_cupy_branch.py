"""CPU checks of the logic of the kernels' CuPy branch (the launch itself needs a GPU).

* ``cupy_neurons.launch.cupy_args`` (used by the neuron and the sparse launchers): every kernel argument
  gets the numpy type of its C declaration (CuPy passes each by value with that type's size);
* the custom ops pass a null pointer (None), not a zero ``[T, N]`` tensor, for the gradient of an
  unused output, so the backward kernels read no zeros (their minimum bytes moved).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cupy_neurons import build, ops
from cupy_neurons import kernels as neuron_kernels
from cupy_neurons.launch import cupy_args
from cupy_neurons.sparse import kernels as sparse_kernels
from sjframe.neurons.adlif import run_adlif
from sjframe.neurons.culif import run_culif
from sjframe.neurons.lif import run_lif
from sjframe.spike.surrogate import get_surrogate

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
INCOMING = ("gs_seq", "gh_seq", "gv_last", "gi_last", "gw_last")  # the backward kernels' incoming gradients


def _numpy_type_of_c_decl(decl: str, dtype: str) -> type:
    """The numpy type CuPy must receive for a C parameter declaration (pointers: a 64-bit address)."""
    if "*" in decl:
        return np.uint64
    base = decl.replace("const", "").strip()
    if base == "SJ_ACC":
        return np.float64 if dtype == "float64" else np.float32
    return {"float": np.float32, "int": np.int32, "long long": np.int64, "unsigned long long": np.uint64}[base]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cupy_args_have_the_kernels_c_types(dtype: torch.dtype) -> None:
    """Every neuron and sparse kernel: each argument has the numpy type of its C declaration, in order;
    pointers are data_ptr() even for a bfloat16 tensor or one that requires grad (cupy.asarray refuses
    those: the sparse layer's saved weight), None is a null pointer."""
    name = str(dtype).removeprefix("torch.")
    sigs = [(sig.params, dict(build._C_DECL)) for pair in neuron_kernels.NEURON_KERNELS.values() for sig in pair]
    sigs += [(sig.params, dict(build._C_DECL)) for sig in sparse_kernels.KERNELS.values()]
    weight = torch.zeros(3, dtype=dtype).requires_grad_()
    for params, decls in sigs:
        args = [(weight if i % 2 else None) if kind.endswith("ptr") else 3 for i, (kind, _) in enumerate(params)]
        out = cupy_args(name, params, args)
        assert len(out) == len(params)
        for (kind, pname), value, got in zip(params, args, out, strict=True):
            want = _numpy_type_of_c_decl(decls[kind], name)
            assert type(got) is want, f"{pname} ({decls[kind]}): {type(got).__name__}, want {want.__name__}"
            if kind.endswith("ptr"):
                assert int(got) == (0 if value is None else weight.data_ptr())
            else:
                assert got == 3
    with pytest.raises(ValueError, match="unknown parameter kind"):
        cupy_args(name, (("double", "x"),), (1.0,))


def _incoming_grads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, bool]]:
    """Spy on the backward launches: for each, which incoming-gradient pointers are tensors (True) or null."""
    seen: list[dict[str, bool]] = []
    launch = ops.launch

    def spy(spec, sig, n, args, all_sigs=()):  # noqa: ANN001, ANN202
        if sig.name.endswith("_backward"):
            seen.append({p: a is not None for (_, p), a in zip(sig.params, args) if p in INCOMING})
        return launch(spec, sig, n, args, all_sigs)

    monkeypatch.setattr(ops, "launch", spy)
    return seen


def test_unused_outputs_get_a_null_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _incoming_grads(monkeypatch)
    sur = get_surrogate()
    x = (torch.randn(6, 2, 5) + 0.8).requires_grad_()
    run_lif(x, None, 0.9, 1.0, sur).spikes.sum().backward()
    run_culif(x, None, 0.9, 0.8, 1.0, sur).h_seq.pow(2).sum().backward()
    out = run_adlif(x, None, 0.9, 0.95, 0.2, 0.3, 1.0, sur)
    (out.spikes.sum() + out.state.v.sum()).backward()
    assert seen[0] == {"gs_seq": True, "gh_seq": False}
    assert seen[1] == {"gs_seq": False, "gh_seq": True, "gv_last": False, "gi_last": False}
    # AdLIF's state h and s are copies of the last step of h_seq and spikes, so gh_seq is not used here
    assert seen[2] == {"gs_seq": True, "gh_seq": False, "gv_last": True, "gw_last": False}
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
