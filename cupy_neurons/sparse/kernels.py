"""Launchers of the S3GD / LocalZO kernels (``cupy_neurons/sparse/s3gd.cu``) on torch tensors.

The same launcher runs the kernels

* on CUDA tensors through CuPy (NVRTC module of the rendered source, cached per specialisation),
  on torch's current stream, and
* on CPU tensors through the host build of the same source (``cupy_neurons/host_shim.h``,
  compiled by ``g++`` and loaded with ctypes) — a sequential, exact model of the launch used by
  the tests to check the kernels' arithmetic without a GPU.

Rendering, compiling and caching reuse ``cupy_neurons/build.py`` (``Specialisation``,
``render_specialisation``, ``compile_host_source``, ``compile_nvcc``, ``cupy_module``); only the
host ``extern "C"`` wrappers are generated here, because these kernels take int64 index arrays
and float tables (parameter kinds ``build.KernelSig`` does not have).

Storage dtypes float32, float64, float16 and bfloat16; the arithmetic, ``e`` and the atomic
accumulators of ``dW`` and ``dL/dx`` are float32 (float64 for float64), and the results are
rounded to the storage dtype once at the end. The LocalZO arithmetic is float32 for every dtype
(as in the torch reference); ``g`` is rounded to the storage dtype.

High-level entry points (the torch reference is ``sjframe/layers/sparse_linear_lif.py``):

* :func:`localzo_estimate_kernel` — the LocalZO estimate with Philox noise;
* :func:`s3gd_backward_kernels` — ``e`` at the active entries, ``dW``, and ``dL/dx`` at the
  previous layer's active entries.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cupy_neurons import build, zo
from cupy_neurons.build import Specialisation
from cupy_neurons.launch import BLOCK, block_size, launch_cupy, sm_count

__all__ = [
    "BLOCK",
    "KERNELS",
    "SOURCE",
    "acc_dtype",
    "device_text",
    "host_text",
    "launch",
    "localzo_estimate_kernel",
    "s3gd_backward_kernels",
    "specialisation",
]

SOURCE = "sparse/s3gd.cu"

# parameter kind -> (C declaration, ctypes type for the host wrapper)
_KINDS: dict[str, tuple[str, object]] = {
    "scalar_ptr": ("SJ_SCALAR* __restrict__", ctypes.c_void_p),
    "const_scalar_ptr": ("const SJ_SCALAR* __restrict__", ctypes.c_void_p),
    "acc_ptr": ("SJ_ACC* __restrict__", ctypes.c_void_p),
    "const_acc_ptr": ("const SJ_ACC* __restrict__", ctypes.c_void_p),
    "const_index_ptr": ("const long long* __restrict__", ctypes.c_void_p),
    "const_float_ptr": ("const float* __restrict__", ctypes.c_void_p),
    "index": ("const long long", ctypes.c_longlong),
    "int": ("const int", ctypes.c_int),
    "float": ("const float", ctypes.c_float),
}


@dataclass(frozen=True)
class _Sig:
    name: str
    params: tuple[tuple[str, str], ...]


KERNELS: dict[str, _Sig] = {
    sig.name: sig
    for sig in (
        _Sig("localzo_estimate", (
            ("const_scalar_ptr", "u"), ("scalar_ptr", "g"), ("index", "n_total"), ("index", "key"),
            ("int", "samples"), ("float", "delta"), ("float", "scale"), ("int", "dist"),
            ("const_float_ptr", "table"), ("int", "intervals"), ("float", "w_max"), ("float", "w_scale"),
        )),
        _Sig("s3gd_active_grad", (
            ("const_scalar_ptr", "grad_out"), ("const_index_ptr", "index"), ("const_scalar_ptr", "data"),
            ("index", "a_total"), ("int", "given"), ("acc_ptr", "e"),
        )),
        _Sig("s3gd_weight_grad", (
            ("const_scalar_ptr", "tr"), ("const_index_ptr", "index"), ("const_acc_ptr", "e"),
            ("index", "a_total"), ("int", "n_out"), ("int", "n_in"), ("acc_ptr", "dw"),
        )),
        _Sig("s3gd_input_grad", (
            ("const_index_ptr", "ev_t"), ("const_acc_ptr", "ev_e"), ("const_index_ptr", "grp_bj"),
            ("const_index_ptr", "grp_start"), ("index", "n_groups"), ("const_index_ptr", "pair_k"),
            ("const_index_ptr", "pair_start"), ("const_index_ptr", "b_pair_start"), ("const_index_ptr", "need_i"),
            ("const_scalar_ptr", "weight"), ("const_acc_ptr", "beta_pow"), ("int", "T"), ("int", "B"),
            ("int", "n_out"), ("int", "n_in"), ("acc_ptr", "grad_in"),
        )),
    )
}

_DTYPE_NAME = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_TORCH_DTYPE = {name: dtype for dtype, name in _DTYPE_NAME.items()}


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of a storage dtype: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def specialisation(dtype: torch.dtype, surrogate_expr: str = "0.0f") -> Specialisation:
    """The specialisation of ``s3gd.cu`` for a storage dtype and a surrogate C expression.

    Storage dtypes: float32, float64, float16, bfloat16; the arithmetic and the accumulation
    buffers (``e``, ``dW``, ``dL/dx``, ``beta^n``) are float32 (float64 for float64 storage).
    """
    if dtype not in _DTYPE_NAME:
        raise ValueError(f"the sparse kernels support {[str(d) for d in _DTYPE_NAME]}, got {dtype}")
    return Specialisation(SOURCE, _DTYPE_NAME[dtype], surrogate_expr)


def device_text(spec: Specialisation) -> str:
    """CUDA text of one specialisation (common header + kernels), for NVRTC or nvcc."""
    return build.render_device(spec)


def host_text(specs: Sequence[Specialisation]) -> str:
    """Host C++ text: shim + common + each specialisation (suffix ``_s<i>``) + ``sjhost_`` wrappers."""
    parts = ["// sjframe sparse kernels, host build", "#define SJ_HOST_BUILD 1",
             build.read_source("host_shim.h"), build.read_source("common.cuh")]
    for i, spec in enumerate(specs):
        suffix = f"_s{i}"
        scalar, acc = build.DTYPES[spec.dtype]
        parts.append(build.render_specialisation(spec, suffix))
        parts.append(f"#define SJ_SCALAR {scalar}\n#define SJ_ACC {acc}")
        for sig in KERNELS.values():
            params = ", ".join(f"{_KINDS[k][0]} {n}" for k, n in sig.params)
            args = ", ".join(n for _, n in sig.params)
            parts.append(
                f'extern "C" void sjhost_{sig.name}{suffix}(unsigned int sj_grid, unsigned int sj_block, {params}) {{\n'
                f"    sj_host_launch(sj_grid, sj_block, [&]() {{ {sig.name}{suffix}({args}); }});\n}}\n"
            )
        parts.append("#undef SJ_SCALAR\n#undef SJ_ACC")
    return "\n".join(parts) + "\n"


@functools.lru_cache(maxsize=32)
def _host_lib(spec: Specialisation) -> ctypes.CDLL:
    return ctypes.CDLL(str(build.compile_host_source(host_text([spec]))))


def _host_fn(spec: Specialisation, sig: _Sig):  # noqa: ANN202 - a ctypes function
    fn = getattr(_host_lib(spec), f"sjhost_{sig.name}_s0")
    fn.argtypes = [ctypes.c_uint, ctypes.c_uint, *(_KINDS[k][1] for k, _ in sig.params)]
    fn.restype = None
    return fn


def _check(spec: Specialisation, sig: _Sig, args: Sequence[object]) -> torch.device:
    if len(args) != len(sig.params):
        raise ValueError(f"kernel {sig.name} takes {len(sig.params)} arguments, got {len(args)}")
    storage = _TORCH_DTYPE[spec.dtype]
    acc = acc_dtype(storage)
    want = {"scalar_ptr": storage, "const_scalar_ptr": storage, "acc_ptr": acc, "const_acc_ptr": acc,
            "const_index_ptr": torch.int64, "const_float_ptr": torch.float32}
    device = None
    for (kind, name), value in zip(sig.params, args, strict=True):
        if kind in want:
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"kernel {sig.name}: {name} must be a tensor")
            if value.dtype != want[kind] or not value.is_contiguous():
                raise ValueError(f"kernel {sig.name}: {name} must be a contiguous {want[kind]} tensor, got {value.dtype}")
            if device is not None and value.device != device:
                raise ValueError(f"kernel {sig.name}: {name} is on {value.device}, other tensors on {device}")
            device = value.device
        elif isinstance(value, torch.Tensor):
            raise ValueError(f"kernel {sig.name}: {name} ({kind}) must be a number")
    assert device is not None
    return device


def launch(spec: Specialisation, name: str, n_threads: int, args: Sequence[object]) -> None:
    """Run kernel ``name`` with ``n_threads`` threads (1-D grid; blocks of :func:`cupy_neurons.launch.block_size`
    on a GPU, :data:`BLOCK` on the host) on the tensors' device."""
    sig = KERNELS[name]
    device = _check(spec, sig, args)
    if n_threads <= 0:
        return
    if device.type == "cpu":
        conv = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
        _host_fn(spec, sig)((n_threads + BLOCK - 1) // BLOCK, BLOCK, *conv)
        return
    # the neuron launcher's CuPy branch: pointers as data_ptr() (cupy.asarray refuses tensors that require grad,
    # e.g. the weight the sparse layer saves), scalars of the exact C types, the module cached per specialisation
    # (no re-rendering of the source per launch), torch's current stream, the block from the SM count
    index = device.index if device.index is not None else torch.cuda.current_device()
    block = block_size(n_threads, sm_count(index))
    launch_cupy(spec, name, sig.params, (n_threads + block - 1) // block, block, args, device)


# ---------------------------------------------------------------------------------- high level
@functools.lru_cache(maxsize=16)
def _placeholder_table(device: torch.device) -> torch.Tensor:
    """Two zeros on ``device``: the table argument of the laws that read none (laplace, uniform)."""
    return torch.zeros(2, device=device)


def localzo_estimate_kernel(
    u: torch.Tensor, dist_code: int, delta: float, samples: int, key: int, table: torch.Tensor | None
) -> torch.Tensor:
    """LocalZO estimate of ``u`` (any shape) with Philox noise under ``key``.

    ``dist_code``: the law's code (:data:`cupy_neurons.zo.DIST_CODES`); ``table``: its float32
    quantile table (``zo.TABLE_INTERVALS + 1`` entries; None for the laws that are not tabulated).
    :func:`sjframe.spike.localzo.localzo_estimate_kernel` computes both from a law's name and equals
    :func:`sjframe.spike.localzo.localzo_estimate_with` with ``rng='philox'`` and the same key.
    """
    if dist_code not in zo.DIST_CODES.values():
        raise ValueError(f"unknown LocalZO distribution code {dist_code!r}; valid: {zo.DIST_CODES}")
    u = u.detach().contiguous()
    g = torch.empty_like(u)
    # the table comes cached on the device from the caller (no host-to-device copy per call: one would also be
    # illegal under CUDA-graph capture); laplace / uniform read no table, a cached placeholder stands in
    if table is None:
        table = _placeholder_table(u.device)
    elif table.dtype != torch.float32 or table.device != u.device or not table.is_contiguous():
        raise ValueError(f"table must be a contiguous float32 tensor on {u.device}, got {table.dtype} on {table.device}")
    args = (u, g, u.numel(), key if key < 2**63 else key - 2**64, samples, delta, 1.0 / (2.0 * delta * samples),
            dist_code, table, zo.TABLE_INTERVALS, zo.W_MAX, zo.TABLE_INTERVALS / zo.W_MAX)
    launch(specialisation(u.dtype), "localzo_estimate", u.numel(), args)
    return g


def s3gd_backward_kernels(
    grad_spikes: torch.Tensor,
    index: torch.Tensor,
    data: torch.Tensor,
    weight: torch.Tensor,
    tr: torch.Tensor | None,
    in_index: torch.Tensor | None,
    shape_in: tuple[int, int, int],
    beta: float,
    surrogate_expr: str | None,
    need_weight: bool = True,
    need_input: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """Sparse backward of the fused Linear + LIF layer with the kernels: ``(dL/dx, dW, e)``.

    Args:
        grad_spikes: ``dL/ds`` ``[T, B, N]``.
        index: active flat indices (ascending) into ``[T, B, N]``.
        data: ``u`` at the active entries (S3GD; ``surrogate_expr`` is the band-truncated surrogate) or
            the LocalZO ``g`` (``surrogate_expr=None``).
        weight: ``[N, Nin]``; tr: input trace ``[T, B, Nin]`` (needed for ``dW``).
        in_index: the previous layer's active flat indices into ``[T, B, Nin]`` (ascending); the
            input gradient is computed only there. None: no input gradient from the kernels (``dL/dx``
            is None): the caller computes the full one from ``e`` with torch ops.

    ``e`` (``[a]``, accumulation dtype) is ``dL/ds * g`` at the active entries.
    """
    T, B, n_in = shape_in
    N = weight.shape[0]
    spec = specialisation(weight.dtype, surrogate_expr or "0.0f")
    dtype, device = weight.dtype, weight.device
    acc = acc_dtype(dtype)
    a = index.numel()
    e = torch.empty(a, dtype=acc, device=device)
    launch(spec, "s3gd_active_grad",
           a, (grad_spikes.contiguous(), index, data.contiguous(), a, 1 if surrogate_expr is None else 0, e))
    grad_w = None
    if need_weight:
        if tr is None:
            raise ValueError("the weight gradient needs the input trace tr")
        grad_w = torch.zeros(N, n_in, dtype=acc, device=device)
        launch(spec, "s3gd_weight_grad", a * n_in, (tr.contiguous(), index, e, a, N, n_in, grad_w))
        grad_w = grad_w.to(dtype)
    grad_x = None
    if need_input and in_index is not None:
        grad_x = torch.zeros(T * B * n_in, dtype=acc, device=device)
        if a and in_index.numel():
            t_ev = index // (B * N)
            bj = index % (B * N)
            order = torch.argsort(bj * T + t_ev)
            ev_t, ev_e, bj_sorted = t_ev[order].contiguous(), e[order].contiguous(), bj[order]
            grp_bj, counts = torch.unique_consecutive(bj_sorted, return_counts=True)
            grp_start = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
            k_in = in_index // (B * n_in)
            b_in = (in_index // n_in) % B
            i_in = in_index % n_in
            order_in = torch.argsort((b_in * T + k_in) * n_in + i_in)
            bk = (b_in * T + k_in)[order_in]
            pair_bk, pair_counts = torch.unique_consecutive(bk, return_counts=True)
            pair_start = torch.cat([pair_counts.new_zeros(1), pair_counts.cumsum(0)])
            b_pair_start = torch.searchsorted(pair_bk // T, torch.arange(B + 1, device=device))
            beta_pow = torch.tensor([beta**n for n in range(T + 1)], dtype=torch.float64).to(acc).to(device)
            launch(spec, "s3gd_input_grad", grp_bj.numel(), (
                ev_t, ev_e, grp_bj.contiguous(), grp_start.contiguous(), grp_bj.numel(), (pair_bk % T).contiguous(),
                pair_start.contiguous(), b_pair_start.contiguous(), i_in[order_in].contiguous(),
                weight.contiguous(), beta_pow.contiguous(), T, B, N, n_in, grad_x,
            ))
        grad_x = grad_x.reshape(T, B, n_in).to(dtype)
    return grad_x, grad_w, e
