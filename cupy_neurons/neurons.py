"""Entry point of the kernel backend: validate, flatten, call a neuron's generated ops, reshape back.

:func:`run_neuron` takes plain tensors and numbers (no sjframe type): the time-major input
``x_seq [T, B, *F]``, the initial states (``[B, *F]`` each, in the kernel's order, or None for
zeros), the parameters by name (a float, a one-element tensor (per layer) or a tensor broadcastable
to ``F`` (per neuron)), the threshold, the surrogate derivative as a C expression in ``u``
(``Surrogate.cuda_expr`` on the sjframe side) and the LocalZO keyword arguments of the ops (empty:
the surrogate). It returns ``(spikes [T, B, *F], final states [B, *F] (tuple, the kernel's
``<state>_last`` outputs), h_seq [T, B, *F])``; the caller (the neuron's folder in
``sjframe/neurons``) wraps them in its state type. CUDA tensors run the CuPy kernels, CPU tensors
the host build of the same kernel text (the CPU check of the arithmetic).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from cupy_neurons.kernels import neuron_ops
from cupy_neurons.launch import DTYPE_NAMES, acc_dtype
from cupy_neurons.ops import zo_arguments

__all__ = ["run_neuron"]


# ----------------------------------------------------------------------------------- validation
def _check_x(x_seq: Any, who: str) -> None:
    if not isinstance(x_seq, Tensor):
        raise ValueError(f"{who}: x_seq must be a torch.Tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(f"{who}: x_seq must be time-major [T, B, ...] with at least 2 dims, got {tuple(x_seq.shape)}")
    if x_seq.dtype not in DTYPE_NAMES:
        raise ValueError(f"{who}: x_seq dtype {x_seq.dtype} not supported; valid: {[str(d) for d in DTYPE_NAMES]}")
    if x_seq.shape[0] < 1:
        raise ValueError(f"{who}: x_seq needs at least one time step, got shape {tuple(x_seq.shape)}")
    if x_seq.shape[0] >= 2**31:
        raise ValueError(f"{who}: x_seq has too many time steps ({x_seq.shape[0]})")
    if x_seq.device.type not in ("cuda", "cpu"):
        raise ValueError(f"{who}: x_seq on {x_seq.device} is not supported (cuda, or cpu for the host build)")


def _state(state: Any, x_seq: Tensor, names: tuple[str, ...], who: str) -> list[Tensor]:
    """Initial states as contiguous ``[B, *F]`` tensors of x's dtype (zeros when ``state`` is None)."""
    if state is None:
        return [x_seq.new_zeros(x_seq.shape[1:]) for _ in names]
    if len(state) != len(names):
        raise ValueError(f"{who}: state must have {len(names)} tensors {names}, got {len(state)}")
    out = []
    for name, s in zip(names, state):
        if not isinstance(s, Tensor):
            raise ValueError(f"{who}: state {name} must be a tensor, got {type(s).__name__}")
        if s.shape != x_seq.shape[1:]:
            raise ValueError(f"{who}: state {name} has shape {tuple(s.shape)}, expected {tuple(x_seq.shape[1:])} "
                             "(= x_seq[0])")
        if s.device != x_seq.device:
            raise ValueError(f"{who}: state {name} is on {s.device}, x_seq on {x_seq.device}")
        # the common case (x's dtype, contiguous) as it is: each torch call costs several microseconds here
        out.append(s if s.dtype == x_seq.dtype and s.is_contiguous() else s.to(x_seq.dtype).contiguous())
    return out


def _params(values: dict[str, Any], x_seq: Tensor, who: str) -> list[Tensor]:
    """Parameters as contiguous ``[P]`` tensors of the accumulation dtype (P = 1 or prod(F))."""
    feat = tuple(x_seq.shape[2:])
    acc = acc_dtype(x_seq.dtype)
    scalar = True
    for name, value in values.items():
        if isinstance(value, Tensor):
            if value.device != x_seq.device:
                raise ValueError(f"{who}: parameter {name} is on {value.device}, x_seq on {x_seq.device}")
            if not value.is_floating_point():
                raise ValueError(f"{who}: parameter {name} must be floating point, got {value.dtype}")
            if value.numel() != 1:
                scalar = False
                shape = tuple(value.shape)
                # torch.broadcast_shapes(shape, feat) must be feat, checked by hand (the torch function costs about
                # a tenth of a millisecond per call): aligned from the right, each pair of sizes is equal or one is 1
                # (else no broadcast), and the result has feat's sizes (no extra dims, no size > 1 where feat has 1)
                pairs = list(zip(reversed(shape), reversed(feat)))
                if any(d != f and 1 not in (d, f) for d, f in pairs):
                    raise ValueError(
                        f"{who}: parameter {name} of shape {shape} does not broadcast to the feature "
                        f"shape {feat} of x_seq {tuple(x_seq.shape)}"
                    )
                if len(shape) > len(feat) or any(d != f and f == 1 for d, f in pairs):
                    raise ValueError(f"{who}: parameter {name} of shape {shape} is larger than the feature shape {feat}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{who}: parameter {name} must be finite, got {value!r}")
        else:
            raise ValueError(f"{who}: parameter {name} must be a float or a tensor, got {type(value).__name__}")
    out = []
    for value in values.values():
        if not isinstance(value, Tensor):
            t = torch.full((1,), float(value), dtype=acc, device=x_seq.device)
        elif value.dtype == acc and value.dim() == 1 and value.shape[0] == (1 if scalar else math.prod(feat)) and \
                value.is_contiguous():
            t = value  # already a contiguous [P] tensor of the accumulation dtype (a per-neuron parameter of 1-D features)
        else:
            t = value.to(acc)
            t = t.reshape(1) if scalar else t.expand(feat).reshape(-1)
            t = t.contiguous()
        out.append(t)
    return out


def _theta(theta: Any, who: str) -> float:
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta):
        raise ValueError(f"{who}: theta must be a finite number, got {theta!r}")
    return float(theta)


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)



# ----------------------------------------------------------------------------------- entry point
def run_neuron(neuron: str, x_seq: Tensor, state: Any, params: dict[str, Any], theta: float, surrogate_expr: str,
               detach_reset: bool = True, zo: dict[str, Any] | None = None) -> tuple[Tensor, tuple[Tensor, ...], Tensor]:
    """Run neuron kernel ``neuron`` (``culif`` | ``adlif`` | ``lif``) forward (backward through autograd).

    Args:
        x_seq: ``[T, B, *F]`` (any strides: made contiguous); float32 / float64 / float16 / bfloat16.
        state: initial states ``[B, *F]`` in the kernel's order (``NeuronOps.kernel.states``), or None (zeros).
        params: the kernel's parameters by name (``lam, gam`` / ``alpha, beta, a, b`` / ``beta``).
        theta: threshold; surrogate_expr: ``g(u)`` as a float C expression (unused with LocalZO).
        zo: the ops' LocalZO arguments ``zo_keys, zo_table, zo_dist, zo_samples, zo_delta`` (None: surrogate).

    Returns ``(spikes [T, B, *F], final states (the kernel's <state>_last outputs, [B, *F]), h_seq [T, B, *F])``.
    """
    nops = neuron_ops(neuron)
    k = nops.kernel
    who = f"{neuron} kernel"
    _check_x(x_seq, who)
    states = _state(state, x_seq, tuple(s.removesuffix("0") for s in k.states), who)
    if set(params) != set(k.params):
        raise ValueError(f"{who}: parameters must be {list(k.params)}, got {sorted(params)}")
    param_t = _params({name: params[name] for name in k.params}, x_seq, who)
    if not isinstance(surrogate_expr, str):
        raise ValueError(f"{who}: surrogate_expr must be a C expression (str), got {type(surrogate_expr).__name__}")
    extra = (_needs_grad(*param_t),) if k.extra is not None else ()
    # the ops keep x's shape ([T, *S] in, [T, *S] / [*S] out; the kernels see [T, N]): no reshape, no view, so no
    # view node in the autograd graph (each costs microseconds forward and backward)
    out = nops.forward(x_seq.contiguous(), *states, *param_t, _theta(theta, who), surrogate_expr, bool(detach_reset),
                       *extra, *zo_arguments(zo))
    return out[0], tuple(out[2:2 + len(k.finals)]), out[1]
