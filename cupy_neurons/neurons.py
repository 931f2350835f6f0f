"""Neuron entry points of the kernel backend: validate, flatten, call the custom ops, reshape back.

``run_culif / run_adlif / run_lif`` take the same arguments as the torch functional cores
(:mod:`sjframe.neurons.functional`) except the spike function, which is replaced by the
surrogate (a :class:`sjframe.surrogate.Surrogate`) and the gradient mode (a
:class:`sjframe.gradients.GradientSpec`, default dense), and return the same
:class:`NeuronOutput` ``(spikes [T, B, *F], state, h_seq [T, B, *F])``. They run on CUDA tensors
(CuPy kernels) and on CPU tensors (the host build of the same kernel text: the CPU check of the
arithmetic). ``culif / adlif / lif(module, ...)`` are what ``sjframe.neurons.backends`` calls for
``backend='cupy'``: they read the module's threshold, surrogate, gradient mode and reset flag,
and require CUDA tensors.

Gradient modes, all through the fused kernels (every neuron, every dtype):

* ``dense``: the surrogate ``g(u)``, ``u = h - theta``;
* ``sparse`` (S3GD): the surrogate truncated to ``|u| < b_th`` (masked-dense, as the torch
  reference cores; the truly sparse backward is ``sjframe.gradients.sparse_layer``);
* ``localzo``: the LocalZO estimate, its noise from Philox inside the backward kernel. One 64-bit
  key per time step is drawn in the forward from ``generator`` (None: torch's global RNG) exactly
  as the torch reference draws them with ``rng: philox`` (:func:`sjframe.gradients.localzo.draw_key`,
  once per step, in step order; here all ``T`` at once by :func:`~sjframe.gradients.localzo.draw_keys`,
  the same keys without a device synchronisation), and element ``n`` of step ``t`` uses counter ``n`` and key ``t``:
  given the same seed the kernels and ``backend='torch'`` with ``rng: philox`` produce the same
  noise bit for bit. The kernels always use Philox: ``rng: torch`` (``torch.rand``) has no kernel
  twin, so on this backend it is read as ``philox`` (same law, another random stream). The noise
  is not stored: the backward kernel regenerates it from the ``T`` keys.

Shapes: ``x_seq [T, B, *F]`` (any strides: made contiguous), states ``[B, *F]``, parameters a
float, or a tensor of one element (per layer), or broadcastable to ``F`` (per neuron).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from cupy_neurons import ops
from sjframe.gradients import GradientSpec
from sjframe.gradients import localzo as lz
from sjframe.neurons.functional import AdLIFState, CuLIFState, LIFState, NeuronOutput
from sjframe.surrogate import Surrogate

__all__ = ["adlif", "culif", "lif", "run_adlif", "run_culif", "run_lif"]


# ----------------------------------------------------------------------------------- validation
def _check_x(x_seq: Any, who: str) -> None:
    if not isinstance(x_seq, Tensor):
        raise ValueError(f"{who}: x_seq must be a torch.Tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(f"{who}: x_seq must be time-major [T, B, ...] with at least 2 dims, got {tuple(x_seq.shape)}")
    if x_seq.dtype not in ops.DTYPE_NAMES:
        raise ValueError(f"{who}: x_seq dtype {x_seq.dtype} not supported; valid: {[str(d) for d in ops.DTYPE_NAMES]}")
    if x_seq.shape[0] < 1:
        raise ValueError(f"{who}: x_seq needs at least one time step, got shape {tuple(x_seq.shape)}")
    if x_seq.shape[0] >= 2**31:
        raise ValueError(f"{who}: x_seq has too many time steps ({x_seq.shape[0]})")
    if x_seq.device.type not in ("cuda", "cpu"):
        raise ValueError(f"{who}: x_seq on {x_seq.device} is not supported (cuda, or cpu for the host build)")


def _state(state: Any, x_seq: Tensor, names: tuple[str, ...], who: str) -> list[Tensor]:
    """Initial states as contiguous ``[N]`` tensors of x's dtype (zeros when ``state`` is None)."""
    n = x_seq[0].numel()
    if state is None:
        return [x_seq.new_zeros(n) for _ in names]
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
        out.append(s.to(x_seq.dtype).reshape(n).contiguous())
    return out


def _params(values: dict[str, Any], x_seq: Tensor, who: str) -> list[Tensor]:
    """Parameters as contiguous ``[P]`` tensors of the accumulation dtype (P = 1 or prod(F))."""
    feat = tuple(x_seq.shape[2:])
    acc = ops.acc_dtype(x_seq.dtype)
    scalar = True
    for name, value in values.items():
        if isinstance(value, Tensor):
            if value.device != x_seq.device:
                raise ValueError(f"{who}: parameter {name} is on {value.device}, x_seq on {x_seq.device}")
            if not value.is_floating_point():
                raise ValueError(f"{who}: parameter {name} must be floating point, got {value.dtype}")
            if value.numel() != 1:
                scalar = False
                try:
                    torch.broadcast_shapes(value.shape, feat)
                except RuntimeError as exc:
                    raise ValueError(
                        f"{who}: parameter {name} of shape {tuple(value.shape)} does not broadcast to the feature "
                        f"shape {feat} of x_seq {tuple(x_seq.shape)}"
                    ) from exc
                if torch.broadcast_shapes(value.shape, feat) != torch.Size(feat):
                    raise ValueError(f"{who}: parameter {name} of shape {tuple(value.shape)} is larger than the "
                                     f"feature shape {feat}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ValueError(f"{who}: parameter {name} must be finite, got {value!r}")
        else:
            raise ValueError(f"{who}: parameter {name} must be a float or a tensor, got {type(value).__name__}")
    out = []
    for value in values.values():
        t = value if isinstance(value, Tensor) else torch.full((1,), float(value), dtype=acc, device=x_seq.device)
        t = t.to(acc)
        t = t.reshape(1) if scalar else t.expand(feat).reshape(-1)
        out.append(t.contiguous())
    return out


def _theta(theta: Any, who: str) -> float:
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta):
        raise ValueError(f"{who}: theta must be a finite number, got {theta!r}")
    return float(theta)


def _surrogate_expr(surrogate: Any, who: str) -> str:
    if not isinstance(surrogate, Surrogate):
        raise ValueError(f"{who}: surrogate must be a sjframe.surrogate.Surrogate, got {type(surrogate).__name__}")
    return surrogate.cuda_expr("u")


def _gradient_args(surrogate: Any, gradient: Any, generator: Any, x_seq: Tensor, who: str) -> tuple[str, dict[str, Any]]:
    """The surrogate C expression and the ops' LocalZO keyword arguments for a gradient mode.

    ``localzo`` draws the ``T`` Philox keys here (one per step, as the torch reference does).
    """
    if gradient is None:
        gradient = GradientSpec()
    if not isinstance(gradient, GradientSpec):
        raise ValueError(f"{who}: gradient must be a sjframe.gradients.GradientSpec or None, got "
                         f"{type(gradient).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{who}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if gradient.mode != "localzo":
        if not isinstance(surrogate, Surrogate):
            raise ValueError(f"{who}: surrogate must be a sjframe.surrogate.Surrogate, got {type(surrogate).__name__}")
        return _surrogate_expr(gradient.surrogate_for(surrogate), who), {}
    # the T keys in one draw, no device synchronisation (draw_keys: bit for bit T draw_key calls); the table cached
    # on the device (no copy per call)
    keys = lz.draw_keys(generator, x_seq.shape[0], x_seq.device)
    table = lz.device_table(gradient.distribution, gradient.delta, gradient.k, x_seq.device)
    zo = {"zo_keys": keys, "zo_table": table, "zo_dist": lz.DIST_CODES[gradient.distribution],
          "zo_samples": int(gradient.samples), "zo_delta": float(gradient.delta)}
    return "0.0f", zo


def _flat(x_seq: Tensor) -> Tensor:
    return x_seq.reshape(x_seq.shape[0], -1).contiguous()


def _needs_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


# ----------------------------------------------------------------------------------- neurons
def run_culif(x_seq: Tensor, state: CuLIFState | None, lam: Any, gam: Any, theta: float, surrogate: Surrogate | None,
              detach_reset: bool = True, gradient: GradientSpec | None = None,
              generator: torch.Generator | None = None) -> NeuronOutput:
    """CuLIF / PCuLIF through the kernels (see ``culif.cu`` for the equations).

    ``gradient``: dense (None), sparse or localzo (see the module docstring; ``surrogate`` may be
    None for localzo). ``generator``: source of the LocalZO keys (None: torch's global RNG).
    Returns ``NeuronOutput(spikes [T, B, *F], CuLIFState(v, I) [B, *F], h_seq [T, B, *F])``.
    """
    who = "culif kernel"
    _check_x(x_seq, who)
    v0, i0 = _state(state, x_seq, ("v", "I"), who)
    lam_t, gam_t = _params({"lam": lam, "gam": gam}, x_seq, who)
    theta_f = _theta(theta, who)
    expr, zo = _gradient_args(surrogate, gradient, generator, x_seq, who)
    save = _needs_grad(lam_t, gam_t)
    s, h, v, i, _ = ops.culif_fwd(_flat(x_seq), v0, i0, lam_t, gam_t, theta_f, expr, bool(detach_reset), save, **zo)
    shape, feat = x_seq.shape, x_seq.shape[1:]
    return NeuronOutput(s.view(shape), CuLIFState(v.view(feat), i.view(feat)), h.view(shape))


def run_adlif(x_seq: Tensor, state: AdLIFState | None, alpha: Any, beta: Any, a: Any, b: Any, theta: float,
              surrogate: Surrogate | None, detach_reset: bool = True, gradient: GradientSpec | None = None,
              generator: torch.Generator | None = None) -> NeuronOutput:
    """AdLIF through the kernels (see ``adlif.cu``); ``gradient``, ``generator`` as in :func:`run_culif`.

    Returns ``NeuronOutput(spikes, AdLIFState(v, w, h, s) [B, *F], h_seq)``; the state's ``h``
    and ``s`` are copies of the last step of ``h_seq`` and ``spikes``.
    """
    who = "adlif kernel"
    _check_x(x_seq, who)
    v0, w0, h0, s0 = _state(state, x_seq, ("v", "w", "h", "s"), who)
    params = _params({"alpha": alpha, "beta": beta, "a": a, "b": b}, x_seq, who)
    theta_f = _theta(theta, who)
    expr, zo = _gradient_args(surrogate, gradient, generator, x_seq, who)
    save = _needs_grad(*params)
    s, h, v, w, _ = ops.adlif_fwd(_flat(x_seq), v0, w0, h0, s0, *params, theta_f, expr, bool(detach_reset), save,
                                  **zo)
    shape, feat = x_seq.shape, x_seq.shape[1:]
    spikes, h_seq = s.view(shape), h.view(shape)
    return NeuronOutput(spikes, AdLIFState(v.view(feat), w.view(feat), h_seq[-1].clone(), spikes[-1].clone()), h_seq)


def run_lif(x_seq: Tensor, state: LIFState | None, beta: Any, theta: float, surrogate: Surrogate | None,
            detach_reset: bool = True, gradient: GradientSpec | None = None,
            generator: torch.Generator | None = None) -> NeuronOutput:
    """LIF of S3GD / LocalZO through the kernels (see ``lif.cu``); ``gradient``, ``generator`` as in
    :func:`run_culif`.

    Returns ``NeuronOutput(spikes, LIFState(h, x) [B, *F], h_seq)``; the state is a copy of the
    last step of ``h_seq`` and of ``x_seq``.
    """
    who = "lif kernel"
    _check_x(x_seq, who)
    h0, x0 = _state(state, x_seq, ("h", "x"), who)
    (beta_t,) = _params({"beta": beta}, x_seq, who)
    theta_f = _theta(theta, who)
    expr, zo = _gradient_args(surrogate, gradient, generator, x_seq, who)
    s, h = ops.lif_fwd(_flat(x_seq), h0, x0, beta_t, theta_f, expr, bool(detach_reset), **zo)
    shape = x_seq.shape
    h_seq = h.view(shape)
    return NeuronOutput(s.view(shape), LIFState(h_seq[-1].clone(), x_seq[-1].clone()), h_seq)


# ----------------------------------------------------------------------------------- modules
def _require_cuda(module: Any, x_seq: Any) -> None:
    if isinstance(x_seq, Tensor) and x_seq.device.type != "cuda":
        raise ValueError(f"{type(module).__name__}(backend='cupy'): x_seq must be a CUDA tensor, got device "
                         f"{x_seq.device}; move the model and data to the GPU or use backend='torch'")


def culif(module: Any, x_seq: Tensor, state: CuLIFState, lam: Any, gam: Any) -> NeuronOutput:
    """``backend='cupy'`` forward of a CuLIF / PCuLIF module (any gradient mode)."""
    _require_cuda(module, x_seq)
    return run_culif(x_seq, state, lam, gam, module.theta, module.surrogate, module.detach_reset, module.gradient)


def adlif(module: Any, x_seq: Tensor, state: AdLIFState, alpha: Any, beta: Any, a: Any, b: Any) -> NeuronOutput:
    """``backend='cupy'`` forward of an AdLIF module (any gradient mode)."""
    _require_cuda(module, x_seq)
    return run_adlif(x_seq, state, alpha, beta, a, b, module.theta, module.surrogate, module.detach_reset,
                     module.gradient)


def lif(module: Any, x_seq: Tensor, state: LIFState, beta: Any) -> NeuronOutput:
    """``backend='cupy'`` forward of a LIF module (any gradient mode)."""
    _require_cuda(module, x_seq)
    return run_lif(x_seq, state, beta, module.theta, module.surrogate, module.detach_reset, module.gradient)
