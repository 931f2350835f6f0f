"""Launchers of the S3GD / LocalZO kernels (``cupy_neurons/sparse/s3gd.cu``) on torch tensors.

The same launcher runs the kernels

* on CUDA tensors through CuPy (NVRTC module of the rendered source, cached per specialisation),
  on torch's current stream, and
* on CPU tensors through the host build of the same source (``cupy_neurons/host_shim.h``,
  compiled by ``g++`` and loaded with ctypes) — a sequential, exact model of the launch used by
  the tests to check the kernels' arithmetic without a GPU.

Signatures (parsed from ``s3gd.cu``), rendering, compiling, caching and launching are those of
the neuron kernels (``cupy_neurons/build.py``, ``cupy_neurons/launch.py``).

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

import functools
from collections.abc import Sequence

import torch

from cupy_neurons import build, zo
from cupy_neurons.build import KernelSig, Specialisation
from cupy_neurons.launch import BLOCK, DTYPE_NAMES, acc_dtype
from cupy_neurons.launch import launch as launch_kernel

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

#: the kernels of ``s3gd.cu`` by name, their signatures parsed from the source (:func:`cupy_neurons.build.kernel_sigs`)
KERNELS: dict[str, KernelSig] = {sig.name: sig for sig in build.kernel_sigs(SOURCE)}


def specialisation(dtype: torch.dtype, surrogate_expr: str = "0.0f") -> Specialisation:
    """The specialisation of ``s3gd.cu`` for a storage dtype and a surrogate C expression.

    Storage dtypes: float32, float64, float16, bfloat16; the arithmetic and the accumulation
    buffers (``e``, ``dW``, ``dL/dx``, ``beta^n``) are float32 (float64 for float64 storage).
    """
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"the sparse kernels support {[str(d) for d in DTYPE_NAMES]}, got {dtype}")
    return Specialisation(SOURCE, DTYPE_NAMES[dtype], surrogate_expr)


def device_text(spec: Specialisation) -> str:
    """CUDA text of one specialisation (common header + kernels), for NVRTC or nvcc."""
    return build.render_device(spec)


def host_text(specs: Sequence[Specialisation]) -> str:
    """Host C++ text: shim + common + each specialisation (suffix ``_s<i>``) + ``sjhost_`` wrappers."""
    return build.render_host_bundle([(spec, tuple(KERNELS.values())) for spec in specs])


def launch(spec: Specialisation, name: str, n_threads: int, args: Sequence[object]) -> None:
    """Run kernel ``name`` with ``n_threads`` threads on the tensors' device (:func:`cupy_neurons.launch.launch`:
    CuPy on CUDA tensors, the host build on CPU tensors; pointers must be tensors here)."""
    sig = KERNELS[name]
    for (kind, pname), value in zip(sig.params, args, strict=False):
        if kind.endswith("ptr") and not isinstance(value, torch.Tensor):
            raise ValueError(f"kernel {sig.name}: {pname} must be a tensor")
    launch_kernel(spec, sig, n_threads, args, tuple(KERNELS.values()))


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
