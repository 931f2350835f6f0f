"""torch.library custom ops around the neuron kernels (forward, backward, fake tensors, autograd).

The ops work on flattened, contiguous time-major tensors: ``x [T, N]`` (``N`` = batch x
features), states ``[N]``, parameters ``[P]`` in the accumulation dtype (float32; float64 for
float64 storage) with ``P = 1`` (one per layer) or ``P = F`` (one per feature; neuron ``n`` uses
entry ``n % P``). Storage dtypes: float32, float64, float16, bfloat16.

=========================== ================================================================
op                          returns
=========================== ================================================================
``sjframe::culif_fwd``      ``s [T,N], h [T,N], v_last [N], i_last [N], iprev [T,N] or [0]``
``sjframe::culif_bwd``      ``dx, dv0, di0, dlam_part [N] or [0], dgam_part``
``sjframe::adlif_fwd``      ``s, h, v_last, w_last, wprev [T,N] or [0]``
``sjframe::adlif_bwd``      ``dx, dv0, dw0, dh0, ds0, dalpha/dbeta/da/db partials [N] or [0]``
``sjframe::lif_fwd``        ``s, h``
``sjframe::lif_bwd``        ``dx, dh0, dx0, dbeta_part [N] or [0]``
=========================== ================================================================

LocalZO: every forward op takes the optional ``zo_keys`` (int64 ``[T]``, one Philox key per time
step; None = the surrogate gradient), ``zo_table`` (the float32 quantile table of the noise law,
:func:`sjframe.spike.localzo.quantile_table`; None for laplace / uniform), ``zo_dist`` (the
law's code, ``localzo.DIST_CODES``), ``zo_samples`` and ``zo_delta``. The forward kernels ignore
them; they are saved for the backward kernels, which then use the LocalZO estimate of
``u = h - theta`` with the noise of (counter n, key ``zo_keys[t]``) as the spike derivative
(``SJ_LOCALZO`` specialisation), so no noise tensor is stored.

Forward ops save for backward only what the backward kernels read: ``h`` (spikes are
recomputed from it) and, when parameter gradients are needed, the extra sequences
(``iprev = I_{t-1}`` for PCuLIF, ``wprev = w_{t-1}`` and ``x`` for AdLIF). The per-neuron
parameter partials are summed over the batch here (``[N] -> [N/P, P] -> [P]``), so no kernel
needs atomics. The same ops run CUDA tensors through CuPy and CPU tensors through the host build
of the same kernel text (see :mod:`cupy_neurons.launch`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cupy_neurons import kernels
from cupy_neurons.launch import launch
from sjframe.spike import localzo as lz

__all__ = ["DTYPE_NAMES", "acc_dtype", "adlif_fwd", "culif_fwd", "lif_fwd"]

DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation (and parameter) dtype of a storage dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _spec(neuron: str, x: Tensor, surrogate: str, detach_reset: bool, zo_keys: Tensor | None = None) -> Any:
    return kernels.specialisation(neuron, DTYPE_NAMES[x.dtype], surrogate, detach_reset, zo_keys is not None)


def _check_zo(t_steps: int, like: Tensor, zo_keys: Tensor | None, zo_table: Tensor | None, zo_dist: int,
              zo_samples: int, zo_delta: float) -> None:
    """Validate the LocalZO arguments of an op (a clear error instead of a kernel reading out of bounds)."""
    if zo_keys is None:
        return
    if zo_keys.dtype != torch.int64 or zo_keys.shape != (t_steps,) or zo_keys.device != like.device:
        raise ValueError(f"zo_keys must be an int64 tensor [T] = [{t_steps}] on {like.device}, got "
                         f"{zo_keys.dtype} {tuple(zo_keys.shape)} on {zo_keys.device}")
    if zo_dist not in lz.DIST_CODES.values():
        raise ValueError(f"zo_dist must be one of {sorted(lz.DIST_CODES.values())} (localzo.DIST_CODES), got {zo_dist}")
    tabulated = zo_dist in (lz.DIST_CODES[name] for name in lz.TABULATED)
    if tabulated and (zo_table is None or zo_table.dtype != torch.float32 or zo_table.shape != (lz.TABLE_INTERVALS + 1,)
                      or zo_table.device != like.device):
        raise ValueError(f"zo_table must be the float32 quantile table [{lz.TABLE_INTERVALS + 1}] on {like.device} "
                         f"for LocalZO law code {zo_dist}")
    if not (isinstance(zo_samples, int) and zo_samples >= 1):
        raise ValueError(f"zo_samples must be an int >= 1, got {zo_samples!r}")
    if not zo_delta > 0:
        raise ValueError(f"zo_delta must be > 0, got {zo_delta!r}")


def _zo_args(zo_keys: Tensor | None, zo_table: Tensor | None, zo_dist: int, zo_samples: int,
             zo_delta: float) -> list[Any]:
    """The kernel arguments ``kernels.ZO_PARAMS`` (null pointers and zeros without LocalZO)."""
    if zo_keys is None:
        return [None, None, 0, 0.0, 0.0, 0, 0, 0.0, 0.0]
    table = zo_table.contiguous() if zo_table is not None else None
    return [zo_keys.contiguous(), table, lz.TABLE_INTERVALS, lz.W_MAX, lz.TABLE_INTERVALS / lz.W_MAX, zo_samples,
            zo_dist, zo_delta, 1.0 / (2.0 * zo_delta * zo_samples)]


def _run(neuron: str, which: int, spec: Any, n: int, args: list[Any]) -> None:
    sigs = kernels.kernel_sigs(neuron)
    launch(spec, sigs[which], n, args, sigs)


def _opt(t: Tensor | None) -> Tensor | None:
    """Incoming gradient as a contiguous tensor, or None (= zero) when absent."""
    return None if t is None else t.contiguous()


def _reduce_partial(part: Tensor, p: int, like: Tensor) -> Tensor:
    """Per-neuron partials ``[N]`` -> parameter gradient ``[P]`` (sum over the batch)."""
    return part.view(-1, p).sum(0).to(like.dtype)


def _empty_if(flag: bool, like: Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
    return like.new_empty(shape if flag else (0,), dtype=dtype or like.dtype)


# =============================================================================== CuLIF / PCuLIF
@torch.library.custom_op("sjframe::culif_fwd", mutates_args=())
def culif_fwd(
    x: Tensor, v0: Tensor, i0: Tensor, lam: Tensor, gam: Tensor,
    theta: float, surrogate: str, detach_reset: bool, save_current: bool,
    zo_keys: Tensor | None = None, zo_table: Tensor | None = None, zo_dist: int = 0, zo_samples: int = 1,
    zo_delta: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    t_steps, n = x.shape
    _check_zo(t_steps, x, zo_keys, zo_table, zo_dist, zo_samples, zo_delta)
    s, h = torch.empty_like(x), torch.empty_like(x)
    v_last, i_last = torch.empty_like(v0), torch.empty_like(i0)
    iprev = _empty_if(save_current, x, (t_steps, n))
    _run("culif", 0, _spec("culif", x, surrogate, detach_reset, zo_keys), n,
         [x, v0, i0, lam, gam, theta, t_steps, n, lam.numel(), s, h, v_last, i_last, iprev if save_current else None])
    return s, h, v_last, i_last, iprev


@culif_fwd.register_fake
def _(x, v0, i0, lam, gam, theta, surrogate, detach_reset, save_current,  # noqa: ANN001, ANN202
      zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05):  # noqa: ANN001
    return (torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0), torch.empty_like(i0),
            _empty_if(save_current, x, tuple(x.shape)))


@torch.library.custom_op("sjframe::culif_bwd", mutates_args=())
def culif_bwd(
    gs: Tensor | None, gh: Tensor | None, gv: Tensor | None, gi: Tensor | None,
    h: Tensor, v0: Tensor, iprev: Tensor, lam: Tensor, gam: Tensor,
    theta: float, surrogate: str, detach_reset: bool, param_grads: bool,
    zo_keys: Tensor | None = None, zo_table: Tensor | None = None, zo_dist: int = 0, zo_samples: int = 1,
    zo_delta: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    t_steps, n = h.shape
    _check_zo(t_steps, h, zo_keys, zo_table, zo_dist, zo_samples, zo_delta)
    dx, dv0, di0 = torch.empty_like(h), torch.empty_like(v0), torch.empty_like(v0)
    dlam = _empty_if(param_grads, h, (n,), lam.dtype)
    dgam = _empty_if(param_grads, h, (n,), lam.dtype)
    _run("culif", 1, _spec("culif", h, surrogate, detach_reset, zo_keys), n,
         [_opt(gs), _opt(gh), _opt(gv), _opt(gi), h, v0, iprev if param_grads else None, lam, gam,
          theta, t_steps, n, lam.numel(), *_zo_args(zo_keys, zo_table, zo_dist, zo_samples, zo_delta),
          dx, dv0, di0, dlam if param_grads else None, dgam if param_grads else None])
    return dx, dv0, di0, dlam, dgam


@culif_bwd.register_fake
def _(gs, gh, gv, gi, h, v0, iprev, lam, gam, theta, surrogate, detach_reset, param_grads,  # noqa: ANN001, ANN202
      zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05):  # noqa: ANN001
    n = h.shape[1]
    return (torch.empty_like(h), torch.empty_like(v0), torch.empty_like(v0),
            _empty_if(param_grads, h, (n,), lam.dtype), _empty_if(param_grads, h, (n,), lam.dtype))


def _culif_setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    _x, v0, _i0, lam, gam, theta, surrogate, detach_reset, save_current, *zo = inputs
    _s, h, _v, _i, iprev = output
    zo_keys, zo_table, *zo_law = _zo_inputs(zo)
    ctx.set_materialize_grads(False)  # unused outputs: None (a null pointer, read as 0), not a zero [T, N] tensor
    ctx.save_for_backward(h, v0, iprev, lam, gam, zo_keys, zo_table)
    ctx.options = (theta, surrogate, detach_reset, save_current, *zo_law)


def _culif_backward(ctx: Any, gs: Tensor, gh: Tensor, gv: Tensor, gi: Tensor, _giprev: Tensor) -> tuple:
    h, v0, iprev, lam, gam, zo_keys, zo_table = ctx.saved_tensors
    theta, surrogate, detach_reset, params, *zo_law = ctx.options
    dx, dv0, di0, dlam, dgam = culif_bwd(gs, gh, gv, gi, h, v0, iprev, lam, gam, theta, surrogate, detach_reset, params,
                                         zo_keys, zo_table, *zo_law)
    p = lam.numel()
    return (dx, dv0, di0,
            _reduce_partial(dlam, p, lam) if params else None,
            _reduce_partial(dgam, p, gam) if params else None,
            None, None, None, None, None, None, None, None, None)


torch.library.register_autograd("sjframe::culif_fwd", _culif_backward, setup_context=_culif_setup)


def _zo_inputs(zo: list[Any]) -> tuple[Any, ...]:
    """The forward op's trailing LocalZO inputs with their defaults filled in (keys, table, dist, samples, delta)."""
    defaults = [None, None, 0, 1, 0.05]
    return tuple(zo) + tuple(defaults[len(zo):])


# =============================================================================== AdLIF
@torch.library.custom_op("sjframe::adlif_fwd", mutates_args=())
def adlif_fwd(
    x: Tensor, v0: Tensor, w0: Tensor, h0: Tensor, s0: Tensor,
    alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor,
    theta: float, surrogate: str, detach_reset: bool, save_w: bool,
    zo_keys: Tensor | None = None, zo_table: Tensor | None = None, zo_dist: int = 0, zo_samples: int = 1,
    zo_delta: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    t_steps, n = x.shape
    _check_zo(t_steps, x, zo_keys, zo_table, zo_dist, zo_samples, zo_delta)
    s, h = torch.empty_like(x), torch.empty_like(x)
    v_last, w_last = torch.empty_like(v0), torch.empty_like(w0)
    wprev = _empty_if(save_w, x, (t_steps, n))
    _run("adlif", 0, _spec("adlif", x, surrogate, detach_reset, zo_keys), n,
         [x, v0, w0, h0, s0, alpha, beta, a, b, theta, t_steps, n, alpha.numel(),
          s, h, v_last, w_last, wprev if save_w else None])
    return s, h, v_last, w_last, wprev


@adlif_fwd.register_fake
def _(x, v0, w0, h0, s0, alpha, beta, a, b, theta, surrogate, detach_reset, save_w,  # noqa: ANN001, ANN202
      zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05):  # noqa: ANN001
    return (torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0), torch.empty_like(w0),
            _empty_if(save_w, x, tuple(x.shape)))


@torch.library.custom_op("sjframe::adlif_bwd", mutates_args=())
def adlif_bwd(
    gs: Tensor | None, gh: Tensor | None, gv: Tensor | None, gw: Tensor | None,
    h: Tensor, x: Tensor, wprev: Tensor, v0: Tensor, h0: Tensor, s0: Tensor,
    alpha: Tensor, beta: Tensor, a: Tensor, b: Tensor,
    theta: float, surrogate: str, detach_reset: bool, param_grads: bool,
    zo_keys: Tensor | None = None, zo_table: Tensor | None = None, zo_dist: int = 0, zo_samples: int = 1,
    zo_delta: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    t_steps, n = h.shape
    _check_zo(t_steps, h, zo_keys, zo_table, zo_dist, zo_samples, zo_delta)
    dx = torch.empty_like(h)
    dv0, dw0, dh0, ds0 = (torch.empty_like(v0) for _ in range(4))
    parts = [_empty_if(param_grads, h, (n,), alpha.dtype) for _ in range(4)]
    _run("adlif", 1, _spec("adlif", h, surrogate, detach_reset, zo_keys), n,
         [_opt(gs), _opt(gh), _opt(gv), _opt(gw), h,
          x if param_grads else None, wprev if param_grads else None, v0, h0, s0,
          alpha, beta, a, b, theta, t_steps, n, alpha.numel(),
          *_zo_args(zo_keys, zo_table, zo_dist, zo_samples, zo_delta),
          dx, dv0, dw0, dh0, ds0, *(p if param_grads else None for p in parts)])
    return (dx, dv0, dw0, dh0, ds0, *parts)


@adlif_bwd.register_fake
def _(gs, gh, gv, gw, h, x, wprev, v0, h0, s0, alpha, beta, a, b, theta, surrogate, detach_reset,  # noqa: ANN001, ANN202
      param_grads, zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05):  # noqa: ANN001
    n = h.shape[1]
    return (torch.empty_like(h), *(torch.empty_like(v0) for _ in range(4)),
            *(_empty_if(param_grads, h, (n,), alpha.dtype) for _ in range(4)))


def _adlif_setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    x, v0, _w0, h0, s0, alpha, beta, a, b, theta, surrogate, detach_reset, save_w, *zo = inputs
    _s, h, _v, _w, wprev = output
    zo_keys, zo_table, *zo_law = _zo_inputs(zo)
    ctx.set_materialize_grads(False)  # unused outputs: None (a null pointer, read as 0)
    ctx.save_for_backward(h, x if save_w else x.new_empty(0), wprev, v0, h0, s0, alpha, beta, a, b, zo_keys, zo_table)
    ctx.options = (theta, surrogate, detach_reset, save_w, *zo_law)


def _adlif_backward(ctx: Any, gs: Tensor, gh: Tensor, gv: Tensor, gw: Tensor, _gwprev: Tensor) -> tuple:
    h, x, wprev, v0, h0, s0, alpha, beta, a, b, zo_keys, zo_table = ctx.saved_tensors
    theta, surrogate, detach_reset, params, *zo_law = ctx.options
    dx, dv0, dw0, dh0, ds0, *parts = adlif_bwd(gs, gh, gv, gw, h, x, wprev, v0, h0, s0, alpha, beta, a, b,
                                               theta, surrogate, detach_reset, params, zo_keys, zo_table, *zo_law)
    p = alpha.numel()
    grads = [_reduce_partial(part, p, like) if params else None for part, like in zip(parts, (alpha, beta, a, b))]
    return (dx, dv0, dw0, dh0, ds0, *grads, None, None, None, None, None, None, None, None, None)


torch.library.register_autograd("sjframe::adlif_fwd", _adlif_backward, setup_context=_adlif_setup)


# =============================================================================== LIF
@torch.library.custom_op("sjframe::lif_fwd", mutates_args=())
def lif_fwd(
    x: Tensor, h0: Tensor, x0: Tensor, beta: Tensor, theta: float, surrogate: str, detach_reset: bool,
    zo_keys: Tensor | None = None, zo_table: Tensor | None = None, zo_dist: int = 0, zo_samples: int = 1,
    zo_delta: float = 0.05,
) -> tuple[Tensor, Tensor]:
    t_steps, n = x.shape
    _check_zo(t_steps, x, zo_keys, zo_table, zo_dist, zo_samples, zo_delta)
    s, h = torch.empty_like(x), torch.empty_like(x)
    _run("lif", 0, _spec("lif", x, surrogate, detach_reset, zo_keys), n,
         [x, h0, x0, beta, theta, t_steps, n, beta.numel(), s, h])
    return s, h


@lif_fwd.register_fake
def _(x, h0, x0, beta, theta, surrogate, detach_reset,  # noqa: ANN001, ANN202
      zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05):  # noqa: ANN001
    return torch.empty_like(x), torch.empty_like(x)


@torch.library.custom_op("sjframe::lif_bwd", mutates_args=())
def lif_bwd(
    gs: Tensor | None, gh: Tensor | None, h: Tensor, h0: Tensor, beta: Tensor,
    theta: float, surrogate: str, detach_reset: bool, param_grads: bool,
    zo_keys: Tensor | None = None, zo_table: Tensor | None = None, zo_dist: int = 0, zo_samples: int = 1,
    zo_delta: float = 0.05,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    t_steps, n = h.shape
    _check_zo(t_steps, h, zo_keys, zo_table, zo_dist, zo_samples, zo_delta)
    dx, dh0, dx0 = torch.empty_like(h), torch.empty_like(h0), torch.empty_like(h0)
    dbeta = _empty_if(param_grads, h, (n,), beta.dtype)
    _run("lif", 1, _spec("lif", h, surrogate, detach_reset, zo_keys), n,
         [_opt(gs), _opt(gh), h, h0, beta, theta, t_steps, n, beta.numel(),
          *_zo_args(zo_keys, zo_table, zo_dist, zo_samples, zo_delta), dx, dh0, dx0,
          dbeta if param_grads else None])
    return dx, dh0, dx0, dbeta


@lif_bwd.register_fake
def _(gs, gh, h, h0, beta, theta, surrogate, detach_reset, param_grads,  # noqa: ANN001, ANN202
      zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05):  # noqa: ANN001
    return (torch.empty_like(h), torch.empty_like(h0), torch.empty_like(h0),
            _empty_if(param_grads, h, (h.shape[1],), beta.dtype))


def _lif_setup(ctx: Any, inputs: tuple, output: tuple) -> None:
    _x, h0, _x0, beta, theta, surrogate, detach_reset, *zo = inputs
    zo_keys, zo_table, *zo_law = _zo_inputs(zo)
    ctx.set_materialize_grads(False)  # unused outputs: None (a null pointer, read as 0)
    ctx.save_for_backward(output[1], h0, beta, zo_keys, zo_table)
    ctx.options = (theta, surrogate, detach_reset, *zo_law)


def _lif_backward(ctx: Any, gs: Tensor, gh: Tensor) -> tuple:
    h, h0, beta, zo_keys, zo_table = ctx.saved_tensors
    theta, surrogate, detach_reset, *zo_law = ctx.options
    params = bool(ctx.needs_input_grad[3])
    dx, dh0, dx0, dbeta = lif_bwd(gs, gh, h, h0, beta, theta, surrogate, detach_reset, params, zo_keys, zo_table,
                                  *zo_law)
    return (dx, dh0, dx0, _reduce_partial(dbeta, beta.numel(), beta) if params else None,
            None, None, None, None, None, None, None, None)


torch.library.register_autograd("sjframe::lif_fwd", _lif_backward, setup_context=_lif_setup)
