"""Fused ``Linear (no bias) + LIF`` layer with the S3GD sparse backward (and LocalZO on top of it).

Shapes are time-major: input spikes ``x [T, B, N_in]``, weight ``W [N, N_in]`` (``nn.Linear``
layout), output spikes ``s [T, B, N]``. The neuron is the LIF of S3GD / LocalZO
(:func:`sjframe.neurons.lif.lif_multi_step`, zero initial state)::

    I_t = x_t W^T
    h_t = beta h_{t-1} + I_{t-1} - theta s_{t-1}      (h_0 = 0, reset detached)
    s_t = H(u_t),  u_t = h_t - theta

**Forward** runs the time loop, the input trace ``tr_t = beta tr_{t-1} + x_{t-1}`` (``tr_0 = 0``)
and records the *active set*: the entries ``(t, b, j)`` where the spike derivative is nonzero,
``|u| < b_th`` for ``sparse`` (S3GD), ``g != 0`` for ``localzo`` (the estimate drawn in this
forward). Only the active flat indices and ``u`` (or ``g``) at them are saved, plus the trace.

**Backward** (reset detached, so ``dL/ds_t`` comes only from downstream), with ``e = dL/ds * g(u)``
nonzero only on the active set ``A``:

1. ``e`` at the active entries (a gather of ``dL/ds``);
2. ``dW[j, i] = sum_{(t,b,j) in A} e[t,b,j] tr[t,b,i]`` (a sparse ``[N, T B]`` by dense
   ``[T B, N_in]`` product: work ``|A| N_in``);
3. ``dL/dx[k,b,i] = sum_j W[j,i] D[k,b,j]`` with the decayed delta
   ``D[k] = sum_{t>k} beta^(t-1-k) e[t] = beta D[k+1] + e[k+1]``, computed **only at the entries
   active in the previous layer** (``in_active``: all the previous layer's backward reads), walking
   time backwards with a running ``[B, N]`` delta (work ``T B N`` for the decay, ``|A_in| N`` for
   the products). With ``in_active=None`` and an input that needs a gradient, the full
   ``dL/dx`` is computed (``T`` products ``[B, N] @ [N, N_in]``).

What is truly sparse here: the saved state (indices and values on ``A`` plus the trace), ``e``,
``dW`` (``|A| N_in``) and the input gradient restricted to ``A_in``. On the torch path the input
gradient of a time step uses one BLAS product over the needed rows ``(k, b)`` when ``A_in`` fills
more than ``1/GATHER_COST`` of them (on a CPU gathers run ~180x below BLAS speed), else per-entry
dot products; the CUDA kernel walks the active events per ``(b, j)`` as the original does.

This is exactly the dense surrogate gradient with the band-truncated surrogate (or the same
LocalZO draw), up to float summation order: tests check it for stacks of 2-3 layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sjframe.neurons.base import BACKENDS, check_backend, kernel_backend
from sjframe.neurons.lif import LIF, lif_multi_step
from sjframe.neurons.params import check_tau, decay
from sjframe.spike import GradientSpec, make_spike_fn
from sjframe.spike.localzo import draw_key, localzo_estimate, localzo_estimate_kernel, localzo_estimate_with
from sjframe.spike.surrogate import Surrogate, get_surrogate, surrogate_from_config

__all__ = ["ActiveSet", "SparseLinearLIF", "SparseLIFOutput", "sparse_linear_lif"]

_CHUNK = 1 << 22  # elements of a temporary [a, N] product
# Input gradient at step k on the CPU/torch path: per-entry gather-dot products (work |A_in,k| N,
# memory-bound) unless the needed entries fill more than 1/GATHER_COST of their rows, where one
# BLAS product over the needed rows (work rows N N_in) is faster (measured ~180x more flop/s).
GATHER_COST = 100


@dataclass(frozen=True)
class ActiveSet:
    """Active entries of a ``[T, B, N]`` layer output (where its spike derivative is nonzero).

    Attributes:
        index: int64 ``[a]`` flat row-major indices into ``shape``, ascending (so sorted by time).
        shape: ``(T, B, N)``.
    """

    index: torch.Tensor
    shape: tuple[int, int, int]

    @property
    def count(self) -> int:
        return int(self.index.numel())

    @property
    def fraction(self) -> float:
        """Active entries over ``T B N``."""
        return self.count / max(1, math.prod(self.shape))


@dataclass(frozen=True)
class SparseLIFOutput:
    """Output of the fused layer: spikes ``[T, B, N]`` and the active set (None in dense mode)."""

    spikes: torch.Tensor
    active: ActiveSet | None


@dataclass(frozen=True)
class _OpConfig:
    beta: float
    theta: float
    surrogate: Surrogate  # band-truncated in sparse mode
    gradient: GradientSpec
    backend: str


def _check_args(x: torch.Tensor, weight: torch.Tensor, in_active: ActiveSet | None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor [T, B, N_in], got {getattr(x, 'shape', type(x))}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.shape[1] != x.shape[2]:
        raise ValueError(
            f"weight must be [N, N_in] with N_in = x.shape[2] = {x.shape[2]}, got {tuple(getattr(weight, 'shape', ()))}"
        )
    if weight.dtype != x.dtype or weight.device != x.device:
        raise ValueError(f"weight ({weight.dtype}, {weight.device}) must match x ({x.dtype}, {x.device})")
    if not torch.isfinite(x.detach()).all():
        raise ValueError("x contains NaN or inf")
    if in_active is not None:
        if not isinstance(in_active, ActiveSet):
            raise ValueError(f"in_active must be an ActiveSet or None, got {type(in_active).__name__}")
        if tuple(in_active.shape) != tuple(x.shape):
            raise ValueError(f"in_active.shape {tuple(in_active.shape)} must equal x.shape {tuple(x.shape)}")
        if in_active.index.device != x.device or in_active.index.dtype != torch.int64:
            raise ValueError("in_active.index must be an int64 tensor on x's device")


def _forward_loop(
    current: torch.Tensor, cfg: _OpConfig, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LIF time loop on the input current ``[T, B, N]``: spikes, active flat index, derivative data.

    The derivative data is ``u`` at the active entries (sparse) or the LocalZO ``g`` there.
    The arithmetic is the one of :func:`lif_multi_step` (same expression order), so the spikes
    and ``u`` are bit-identical to the dense reference. LocalZO noise: ``rng='torch'`` draws per
    step (the same stream as the dense core's spike function); ``rng='philox'`` draws one key per
    forward and evaluates all ``[T, B, N]`` entries at once (counter = flat index), in torch or in
    the kernel (``backend='cupy'``), bit-identically.
    """
    T = current.shape[0]
    h = torch.zeros_like(current[0])
    x_prev = torch.zeros_like(current[0])
    s = torch.zeros_like(current[0])
    spikes = torch.empty_like(current)
    keep = torch.empty_like(current)  # u, then (localzo) g; dense only during the forward
    spec = cfg.gradient
    per_step_noise = spec.mode == "localzo" and spec.rng == "torch"
    for t in range(T):
        h = cfg.beta * h + x_prev - cfg.theta * s
        u = h - cfg.theta
        s = (u >= 0).to(current.dtype)
        if per_step_noise:
            keep[t] = localzo_estimate(u, spec.distribution, spec.delta, spec.samples, spec.k, spec.rng, generator)
        else:
            keep[t] = u
        spikes[t] = s
        x_prev = current[t]
    if spec.mode == "localzo" and not per_step_noise:
        key = draw_key(generator)
        if cfg.backend != "torch":
            keep = localzo_estimate_kernel(keep, spec.distribution, spec.delta, spec.samples, spec.k, key)
        else:
            keep = localzo_estimate_with(keep, spec.distribution, spec.delta, spec.samples, spec.k, "philox", None, key)
    flat = keep.reshape(-1)
    mask = flat != 0 if spec.mode == "localzo" else flat.abs() < spec.b_th
    index = mask.nonzero().squeeze(1)
    return spikes, index, flat[index]


def _input_trace(x: torch.Tensor, beta: float) -> torch.Tensor:
    """``tr_t = beta tr_{t-1} + x_{t-1}``, ``tr_0 = 0`` (``[T, B, N_in]``)."""
    tr = torch.empty_like(x)
    acc = torch.zeros_like(x[0])
    for t in range(x.shape[0]):
        tr[t] = acc
        acc = beta * acc + x[t]
    return tr


def _weight_grad(e: torch.Tensor, index: torch.Tensor, tr: torch.Tensor, N: int) -> torch.Tensor:
    """``dW[j, i] = sum_active e * tr[t, b, i]`` as a sparse ``[N, T B]`` x dense ``[T B, N_in]`` product."""
    T, B, n_in = tr.shape
    tb = index // N
    j = index % N
    if e.numel() == 0:
        return torch.zeros(N, n_in, dtype=tr.dtype, device=tr.device)
    # CUDA's sparse x dense product has no float16 / bfloat16 kernel ("addmm_sparse_cuda" not implemented for
    # 'Half'): 16-bit storage is multiplied in float32 (as the kernels accumulate) and rounded once
    acc = torch.float32 if tr.dtype in (torch.float16, torch.bfloat16) else tr.dtype
    mat = torch.sparse_coo_tensor(torch.stack([j, tb]), e.to(acc), (N, T * B), is_coalesced=False,
                                  check_invariants=False)
    return torch.sparse.mm(mat, tr.reshape(T * B, n_in).to(acc)).to(tr.dtype)


def _input_grad(
    e: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, beta: float, shape_in: tuple[int, int, int],
    in_index: torch.Tensor | None,
) -> torch.Tensor:
    """``dL/dx`` (``[T, B, N_in]``), only at ``in_index`` (all entries if None); zero elsewhere."""
    T, B, n_in = shape_in
    N = weight.shape[0]
    grad = torch.zeros(T * B * n_in, dtype=weight.dtype, device=weight.device)
    if e.numel() == 0 or (in_index is not None and in_index.numel() == 0):
        return grad.reshape(T, B, n_in)
    t_ev = index // (B * N)
    bj_ev = index % (B * N)
    ev_start = torch.searchsorted(t_ev, torch.arange(T + 1, device=index.device)).tolist()
    if in_index is not None:
        k_in = in_index // (B * n_in)
        in_start = torch.searchsorted(k_in, torch.arange(T + 1, device=index.device)).tolist()
        b_in = (in_index // n_in) % B
        i_in = in_index % n_in
        w_t = weight.t().contiguous()  # [N_in, N]
    t_max = int(t_ev[-1])
    delta = torch.zeros(B * N, dtype=weight.dtype, device=weight.device)
    grad2 = grad.view(T, B * n_in)
    for k in range(t_max - 1, -1, -1):
        # D[k] = beta D[k+1] + e[k+1]
        delta.mul_(beta)
        lo, hi = ev_start[k + 1], ev_start[k + 2]
        if hi > lo:
            delta.index_add_(0, bj_ev[lo:hi], e[lo:hi])
        d_kb = delta.view(B, N)
        if in_index is None:
            grad2[k] = (d_kb @ weight).reshape(-1)
            continue
        lo, hi = in_start[k], in_start[k + 1]
        if hi == lo:
            continue
        b_k, i_k = b_in[lo:hi], i_in[lo:hi]
        rows, inverse = torch.unique_consecutive(b_k, return_inverse=True)  # sorted by (k, b, i)
        if (hi - lo) * GATHER_COST > rows.numel() * n_in:
            # dense enough: one matmul over the needed rows only, then pick the needed columns
            grad[in_index[lo:hi]] = (d_kb[rows] @ weight)[inverse, i_k]
            continue
        step = max(1, _CHUNK // max(1, N))
        for c0 in range(lo, hi, step):
            c1 = min(hi, c0 + step)
            grad[in_index[c0:c1]] = (d_kb[b_in[c0:c1]] * w_t[i_in[c0:c1]]).sum(1)
    return grad.reshape(T, B, n_in)


class _SparseLinearLIFFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, cfg: _OpConfig, in_index: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        current = F.linear(x, weight)
        spikes, index, data = _forward_loop(current, cfg, generator)
        tr = _input_trace(x, cfg.beta) if weight.requires_grad else None
        ctx.cfg = cfg
        ctx.shape_in = tuple(x.shape)
        ctx.has_in_index = in_index is not None
        ctx.save_for_backward(index, data, weight, tr, in_index)
        ctx.mark_non_differentiable(index)
        return spikes, index

    @staticmethod
    def backward(ctx: Any, grad_spikes: torch.Tensor, _grad_index: Any) -> tuple:
        index, data, weight, tr, in_index = ctx.saved_tensors
        cfg: _OpConfig = ctx.cfg
        N = weight.shape[0]
        if cfg.backend != "torch":
            from cupy_neurons.sparse import s3gd_backward_kernels

            expr = None if cfg.gradient.mode == "localzo" else cfg.surrogate.cuda_expr("u")
            grad_x, grad_w, e = s3gd_backward_kernels(
                grad_spikes, index, data, weight, tr, in_index if ctx.has_in_index else None, ctx.shape_in, cfg.beta,
                expr, need_weight=ctx.needs_input_grad[1], need_input=ctx.needs_input_grad[0],
            )
            if ctx.needs_input_grad[0] and not ctx.has_in_index:  # the full input gradient: torch ops on e
                grad_x = _input_grad(e, index, weight.to(e.dtype), cfg.beta, ctx.shape_in, None).to(weight.dtype)
            return grad_x, grad_w, None, None, None
        g = data if cfg.gradient.mode == "localzo" else cfg.surrogate.derivative(data)
        e = grad_spikes.reshape(-1)[index] * g
        grad_w = _weight_grad(e, index, tr, N) if ctx.needs_input_grad[1] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(e, index, weight, cfg.beta, ctx.shape_in, in_index if ctx.has_in_index else None)
        return grad_x, grad_w, None, None, None


def sparse_linear_lif(
    x: torch.Tensor,
    weight: torch.Tensor,
    beta: float,
    theta: float = 1.0,
    surrogate: Surrogate | str | dict | None = None,
    gradient: GradientSpec | str | dict | None = "sparse",
    in_active: ActiveSet | None = None,
    generator: torch.Generator | None = None,
    backend: str = "torch",
) -> SparseLIFOutput:
    """``LIF(x W^T)`` with the backward chosen by ``gradient`` (see the module docstring).

    Args:
        x: input spikes (or any input) ``[T, B, N_in]``.
        weight: ``[N, N_in]``.
        beta: membrane decay per step, in (0, 1].
        theta: threshold (> 0); the reset subtracts ``theta``.
        surrogate: surrogate for ``dense``/``sparse`` (default ``fast_sigmoid`` with ``rho = 100``,
            the S3GD paper's); truncated to ``|u| < b_th`` in ``sparse`` mode.
        gradient: ``dense`` (plain autograd through the reference core), ``sparse`` or ``localzo``.
        in_active: the previous fused layer's active set (its input gradient is needed only
            there); None computes the full input gradient when ``x`` requires one.
        generator: LocalZO noise generator (None: torch's global RNG).
        backend: ``torch``, ``cupy`` (CUDA tensors), ``cpu`` (CPU tensors) or ``auto`` (``cupy`` / ``cpu`` by
            ``x``'s device). ``cupy``: the sparse backward kernels of ``cupy_neurons/sparse`` (LocalZO noise
            then comes from the kernel's Philox generator, i.e. ``rng`` is ``philox``); ``cpu``: the torch
            sparse backward (faster than the kernels on a CPU, see below), LocalZO noise Philox as well. In
            ``dense`` mode both run the fused LIF kernel of ``cupy_neurons`` with cuBLAS / the CPU BLAS.
    """
    _check_args(x, weight, in_active)
    if not (isinstance(beta, (int, float)) and 0.0 < beta <= 1.0):
        raise ValueError(f"beta must be in (0, 1], got {beta!r}")
    if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
        raise ValueError(f"theta must be a positive number, got {theta!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    backend = kernel_backend(backend, x, "sparse_linear_lif")
    if backend != "torch":
        check_backend(backend, "sparse_linear_lif")
        if x.device.type != ("cuda" if backend == "cupy" else "cpu"):
            raise ValueError(f"sparse_linear_lif(backend={backend!r}): x is on {x.device}")
    sur = get_surrogate("fast_sigmoid", rho=100.0) if surrogate is None else surrogate_from_config(surrogate)
    spec = GradientSpec.from_config(gradient)
    if spec.mode == "dense":
        if backend != "torch":  # the fused dense LIF kernel of cupy_neurons (tau from beta)
            neuron = LIF(tau_m=-1.0 / math.log(beta), theta=float(theta), surrogate=sur, gradient=spec, backend=backend)
            return SparseLIFOutput(neuron(F.linear(x, weight)), None)
        out = lif_multi_step(F.linear(x, weight), None, float(beta), float(theta), make_spike_fn(sur, spec))
        return SparseLIFOutput(out.spikes, None)
    if backend != "torch":
        if spec.mode == "localzo" and spec.rng != "philox":
            spec = GradientSpec(**{**spec.__dict__, "rng": "philox"})
    # On the CPU the S3GD / LocalZO kernels (atomic adds per (event, input) pair) lose to the torch ops of the same
    # backward (benchmarks/bench_gradients.py, T 100, N 1000, B 32, one thread: 3.2 s vs 0.17 s), which lose to the
    # dense backward (0.15 s; the BLAS products dominate): backend='cpu' runs the torch ops here (the same gradients,
    # Philox noise as on the kernels), the kernels only on CUDA.
    sparse_backend = "torch" if backend == "cpu" else backend
    cfg = _OpConfig(float(beta), float(theta), spec.surrogate_for(sur), spec, sparse_backend)
    in_index = None if in_active is None else in_active.index
    spikes, index = _SparseLinearLIFFn.apply(x, weight, cfg, in_index, generator)
    return SparseLIFOutput(spikes, ActiveSet(index, (x.shape[0], x.shape[1], weight.shape[0])))


class SparseLinearLIF(nn.Module):
    """``Linear(in_features -> out_features, no bias) + LIF`` with dense / sparse / LocalZO backward.

    ``forward(x [T, B, in_features], in_active=None) -> SparseLIFOutput``. Stateless across calls
    (zero initial state each call), so ``functional.reset_net`` is a no-op for it.

    Args:
        tau_m: membrane time constant in steps (``beta = exp(-1 / tau_m)``).
        theta: threshold (subtractive reset by ``theta``).
        surrogate, gradient, backend: see :func:`sparse_linear_lif`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        tau_m: float = 10.0,
        theta: float = 1.0,
        surrogate: Surrogate | str | dict | None = None,
        gradient: GradientSpec | str | dict | None = "sparse",
        backend: str = "torch",
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.tau_m = check_tau(tau_m, "tau_m")
        self.theta = float(theta)
        self.surrogate = get_surrogate("fast_sigmoid", rho=100.0) if surrogate is None else surrogate_from_config(surrogate)
        self.gradient = GradientSpec.from_config(gradient)
        self.backend = backend
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.uniform_(self.weight, -1.0 / math.sqrt(in_features), 1.0 / math.sqrt(in_features))
        self.generator: torch.Generator | None = None

    @property
    def beta(self) -> float:
        return decay(self.tau_m)

    def forward(self, x: torch.Tensor, in_active: ActiveSet | None = None) -> SparseLIFOutput:
        return sparse_linear_lif(
            x, self.weight, self.beta, self.theta, self.surrogate, self.gradient, in_active, self.generator, self.backend
        )

    def extra_repr(self) -> str:
        return (
            f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, tau_m={self.tau_m} steps, "
            f"theta={self.theta}, surrogate={self.surrogate.name}{self.surrogate.values}, "
            f"gradient={self.gradient.mode}, backend={self.backend}"
        )
