"""torch.library custom ops of the neuron kernels, generated from the kernels' declared signatures.

A neuron kernel source ``<name>.cu`` declares two kernels, ``<name>_forward`` and
``<name>_backward``; their argument lists are written once, in the source, and read by
:func:`cupy_neurons.build.kernel_sigs`. :class:`NeuronKernel` gives each argument its role from its
name and kind (the conventions below), and :func:`register_neuron_ops` generates from it the forward
and backward custom ops, their fake (meta) functions, the launchers and the autograd formula. So a
new neuron kernel needs its ``.cu`` file and one :func:`register_neuron_ops` call (in
:mod:`cupy_neurons.kernels`), nothing else here.

Naming conventions of a neuron kernel's arguments (in this order):

================ ==============================================================================
forward          ``x_seq`` (``const scalar*``); the initial states ``<s>0`` (``const scalar*``);
                 the parameters (``const acc*``, ``[P]``); ``theta, T, N, P``; outputs
                 ``s_seq, h_seq`` then the final states ``<s>_last`` (``scalar*``, ``[N]``) and at
                 most one extra sequence ``<...>prev_seq`` (``[T, N]``, saved for the parameter
                 gradients, may be null)
backward         the incoming gradients ``gs_seq, gh_seq, g<final>`` (``const scalar*``, may be null),
                 the saved tensors (``const scalar*``: forward inputs or outputs by name; ``x_seq``
                 and ``<...>prev_seq`` are read only for parameter gradients and passed null
                 otherwise), the parameters, ``theta, T, N, P``, ``SJ_ZO_PARAMS``; outputs
                 ``dx_seq``, ``d<state>`` for each initial state, ``d<param>_part`` (``acc*``,
                 ``[N]``, null: no parameter gradient)
================ ==============================================================================

Generated ops (``N`` = batch x features, contiguous time-major tensors):

* ``sjframe::<name>_fwd(x_seq, *states, *params, theta, surrogate, detach_reset[, save_extra],
  zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05)`` ->
  ``(s [T,N], h [T,N], *finals [N][, extra [T,N] or [0]])``. With an extra sequence the
  ``save_extra`` flag (the caller's "parameter gradients needed") decides whether it is written
  and whether the backward computes parameter gradients; without one the backward decides from
  ``needs_input_grad``.
* ``sjframe::<name>_bwd(*grads, *saved, *params, theta, surrogate, detach_reset, param_grads,
  zo...)`` -> the backward kernel's outputs (partials ``[N]``, or ``[0]`` without
  ``param_grads``).

Parameters are ``[P]`` tensors in the accumulation dtype (float32; float64 for float64 storage),
``P = 1`` (one per layer) or ``P = F`` (neuron ``n`` uses entry ``n % P``); the per-neuron partials
are summed over the batch in the autograd formula (``[N] -> [N/P, P] -> [P]``), so no kernel needs
atomics. LocalZO: ``zo_keys`` (int64 ``[T]``, one Philox key per step; None = the surrogate),
``zo_table`` (float32 quantile table, None for laplace / uniform), ``zo_dist``
(:data:`cupy_neurons.zo.DIST_CODES`), ``zo_samples``, ``zo_delta``: ignored by the forward kernel,
saved for the backward kernel (``SJ_LOCALZO`` specialisation), so no noise tensor is stored.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cupy_neurons import build, zo
from cupy_neurons.build import KernelSig, Specialisation
from cupy_neurons.launch import DTYPE_NAMES, acc_dtype, launch

__all__ = ["DTYPE_NAMES", "NeuronKernel", "NeuronOps", "acc_dtype", "neuron_specialisation", "register_neuron_ops"]

SIZES = ("theta", "T", "N", "P")
_P = inspect.Parameter
_ZO_OPTIONS = (("zo_keys", Tensor | None, None), ("zo_table", Tensor | None, None), ("zo_dist", int, 0),
               ("zo_samples", int, 1), ("zo_delta", float, 0.05))


@dataclass(frozen=True)
class NeuronKernel:
    """The roles of a neuron kernel's arguments, read from its two signatures (see the module docstring)."""

    name: str
    source: str
    forward: KernelSig
    backward: KernelSig
    states: tuple[str, ...]
    params: tuple[str, ...]
    finals: tuple[str, ...]
    extra: str | None
    grads: tuple[str, ...]
    saved: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def from_source(cls, name: str, source: str) -> NeuronKernel:
        sigs = {sig.name: sig for sig in build.kernel_sigs(source)}
        fwd, bwd = sigs.get(f"{name}_forward"), sigs.get(f"{name}_backward")
        if fwd is None or bwd is None:
            raise ValueError(f"{source} must declare kernels {name}_forward and {name}_backward, found {sorted(sigs)}")

        def bad(sig: KernelSig, why: str) -> ValueError:
            return ValueError(f"{source}: kernel {sig.name} does not follow the neuron conventions of "
                              f"cupy_neurons/ops.py: {why}; parameters {[n for _, n in sig.params]}")

        kinds = dict((n, k) for k, n in fwd.params)
        names = [n for _, n in fwd.params]
        if names[0] != "x_seq" or kinds["x_seq"] != "const_scalar_ptr":
            raise bad(fwd, "the first parameter must be const scalar_t* x_seq")
        states = tuple(n for k, n in fwd.params[1:] if k == "const_scalar_ptr")
        params = tuple(n for k, n in fwd.params if k == "const_acc_ptr")
        outs = [n for k, n in fwd.params if k == "scalar_ptr"]
        if names[1 + len(states) + len(params):][:4] != list(SIZES) or outs[:2] != ["s_seq", "h_seq"]:
            raise bad(fwd, "expected x_seq, states, parameters, theta, T, N, P, s_seq, h_seq, ...")
        finals = tuple(n for n in outs[2:] if n.endswith("_last"))
        extras = [n for n in outs[2:] if n.endswith("prev_seq")]
        if len(finals) + len(extras) != len(outs) - 2 or len(extras) > 1 or not all(s.endswith("0") for s in states):
            raise bad(fwd, "outputs after h_seq must be <state>_last then at most one <...>prev_seq; states end in 0")
        bkinds = dict((n, k) for k, n in bwd.params)
        reads = [n for k, n in bwd.params if k == "const_scalar_ptr"]
        grads = tuple(["gs_seq", "gh_seq", *(f"g{f}" for f in finals)])
        if tuple(reads[:len(grads)]) != grads:
            raise bad(bwd, f"the first parameters must be the incoming gradients {list(grads)}")
        saved = tuple(reads[len(grads):])
        known = {"x_seq", "h_seq", *states, *extras}
        if not set(saved) <= known:
            raise bad(bwd, f"saved tensors {sorted(set(saved) - known)} are not forward inputs or outputs")
        if tuple(n for k, n in bwd.params if k == "const_acc_ptr") != params:
            raise bad(bwd, f"the parameters must be {list(params)} as in the forward")
        outputs = tuple(n for k, n in bwd.params if k in ("scalar_ptr", "acc_ptr"))
        want = ("dx_seq", *(f"d{s}" for s in states), *(f"d{p}_part" for p in params))
        if outputs != want or any(bkinds[f"d{p}_part"] != "acc_ptr" for p in params):
            raise bad(bwd, f"the outputs must be {list(want)} (partials acc_t*)")
        return cls(name, source, fwd, bwd, states, params, finals, extras[0] if extras else None, grads, saved, outputs)


def neuron_specialisation(source: str, dtype: str, surrogate_expr: str, detach_reset: bool,
                          localzo: bool = False) -> Specialisation:
    """The compiled variant of a neuron source for (storage dtype name, surrogate C expression, detach_reset, localzo).

    With ``localzo=True`` the surrogate is not used: its expression is normalised to ``0.0f`` so
    that every surrogate shares one compiled LocalZO variant.
    """
    for name, flag in (("detach_reset", detach_reset), ("localzo", localzo)):
        if not isinstance(flag, bool):  # checked before the cache: 1 == True would hit True's entry
            raise ValueError(f"{name} must be a bool, got {flag!r}")
    return _specialisation(source, dtype, surrogate_expr, detach_reset, localzo)


@functools.lru_cache(maxsize=256)  # called at every launch; the arguments are strings and bools
def _specialisation(source: str, dtype: str, surrogate_expr: str, detach_reset: bool, localzo: bool) -> Specialisation:
    expr = "0.0f" if localzo else surrogate_expr
    defines = (("SJ_DETACH_RESET", int(detach_reset)), ("SJ_LOCALZO", int(localzo)))
    return Specialisation(source, dtype, expr, defines)


def _signature(args: list[tuple[str, Any, Any]], returns: int) -> inspect.Signature:
    params = [_P(n, _P.POSITIONAL_OR_KEYWORD, annotation=tp, default=default) for n, tp, default in args]
    return inspect.Signature(params, return_annotation=tuple[(Tensor,) * returns])


def _empty_if(flag: bool, like: Tensor, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> Tensor:
    return like.new_empty(shape if flag else (0,), dtype=dtype or like.dtype)


_REQ = inspect.Parameter.empty


class NeuronOps:
    """The generated custom ops ``fwd`` / ``bwd`` of one :class:`NeuronKernel` (registered on creation)."""

    def __init__(self, kernel: NeuronKernel, namespace: str = "sjframe") -> None:
        self.kernel = k = kernel
        opts = [("theta", float, _REQ), ("surrogate", str, _REQ), ("detach_reset", bool, _REQ)]
        fwd_args = [(n, Tensor, _REQ) for n in ("x_seq", *k.states, *k.params)] + opts
        if k.extra is not None:
            fwd_args.append(("save_extra", bool, _REQ))
        self.fwd_sig = _signature(fwd_args + list(_ZO_OPTIONS), 2 + len(k.finals) + (k.extra is not None))
        bwd_args = ([(n, Tensor | None, _REQ) for n in k.grads] + [(n, Tensor, _REQ) for n in (*k.saved, *k.params)]
                    + opts + [("param_grads", bool, _REQ)] + list(_ZO_OPTIONS))
        self.bwd_sig = _signature(bwd_args, len(k.outputs))
        self.fwd = self._op(f"{namespace}::{k.name}_fwd", self._fwd_impl, self._fwd_fake, self.fwd_sig)
        self.bwd = self._op(f"{namespace}::{k.name}_bwd", self._bwd_impl, self._bwd_fake, self.bwd_sig)
        torch.library.register_autograd(f"{namespace}::{k.name}_fwd", self._backward, setup_context=self._setup)

    @staticmethod
    def _op(name: str, impl: Any, fake: Any, sig: inspect.Signature) -> Any:
        def op_impl(*args: Any, **kwargs: Any) -> Any:
            return impl(*args, **kwargs)

        op_impl.__signature__ = sig  # type: ignore[attr-defined]  # the schema torch.library infers
        op_impl.__name__ = name.split("::")[1]
        op = torch.library.custom_op(name, op_impl, mutates_args=())
        op.register_fake(fake)
        return op

    def _bind(self, sig: inspect.Signature, args: tuple, kwargs: dict | None = None) -> dict[str, Any]:
        names = sig.parameters
        if not kwargs and len(args) <= len(names):
            # torch passes the arguments positionally (all of them to the implementations, the caller's to the
            # autograd set-up): zip them and fill the trailing defaults, without inspect's general binding
            out = dict(zip(names, args))
            if len(args) == len(names):
                return out
            tail = list(names.values())[len(args):]
            if all(q.default is not inspect.Parameter.empty for q in tail):
                out.update((q.name, q.default) for q in tail)
                return out
        bound = sig.bind(*args, **(kwargs or {}))
        bound.apply_defaults()
        return dict(bound.arguments)

    def specialisation(self, a: dict[str, Any], like: Tensor) -> Specialisation:
        return neuron_specialisation(self.kernel.source, DTYPE_NAMES[like.dtype], a["surrogate"], a["detach_reset"],
                                     a["zo_keys"] is not None)

    def _run(self, sig: KernelSig, a: dict[str, Any], like: Tensor, values: dict[str, Any]) -> None:
        t_steps, n = like.shape
        zo.check_zo(t_steps, like, a["zo_keys"], a["zo_table"], a["zo_dist"], a["zo_samples"], a["zo_delta"])
        values = {**values, "theta": a["theta"], "T": t_steps, "N": n, "P": a[self.kernel.params[0]].numel()}
        zo_names = [name for _, name in sig.params if name.startswith("zo_")]
        if zo_names:  # the backward kernels' SJ_ZO_PARAMS (the forward kernels take none)
            zo_values = zo.zo_kernel_args(a["zo_keys"], a["zo_table"], a["zo_dist"], a["zo_samples"], a["zo_delta"])
            values.update(zip(zo_names, zo_values, strict=True))
        spec = self.specialisation(a, like)
        launch(spec, sig, n, [values[name] for _, name in sig.params], (self.kernel.forward, self.kernel.backward))

    # ------------------------------------------------------------------------------ forward
    def _fwd_outputs(self, a: dict[str, Any]) -> dict[str, Tensor]:
        x = a["x_seq"]
        out = {"s_seq": torch.empty_like(x), "h_seq": torch.empty_like(x)}
        out.update({f: torch.empty_like(x[0]) for f in self.kernel.finals})
        if self.kernel.extra is not None:
            out[self.kernel.extra] = _empty_if(a["save_extra"], x, tuple(x.shape))
        return out

    def _fwd_impl(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        a = self._bind(self.fwd_sig, args, kwargs)
        out = self._fwd_outputs(a)
        values = {**{n: a[n] for n in ("x_seq", *self.kernel.states, *self.kernel.params)}, **out}
        if self.kernel.extra is not None and not a["save_extra"]:
            values[self.kernel.extra] = None
        self._run(self.kernel.forward, a, a["x_seq"], values)
        return tuple(out.values())

    def _fwd_fake(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        return tuple(self._fwd_outputs(self._bind(self.fwd_sig, args, kwargs)).values())

    # ------------------------------------------------------------------------------ backward
    def _bwd_outputs(self, a: dict[str, Any]) -> dict[str, Tensor]:
        h = a["h_seq"]
        k = self.kernel
        out = {"dx_seq": torch.empty_like(h)}
        out.update({f"d{s}": h.new_empty(h.shape[1:]) for s in k.states})
        out.update({f"d{p}_part": _empty_if(a["param_grads"], h, (h.shape[1],), a[p].dtype) for p in k.params})
        return out

    def _bwd_impl(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        a = self._bind(self.bwd_sig, args, kwargs)
        k = self.kernel
        out = self._bwd_outputs(a)
        values: dict[str, Any] = {g: None if a[g] is None else a[g].contiguous() for g in k.grads}
        for name in (*k.saved, *k.params):
            param_only = name == "x_seq" or name.endswith("prev_seq")
            values[name] = None if param_only and not a["param_grads"] else a[name]
        values.update(out)
        if not a["param_grads"]:
            values.update({f"d{p}_part": None for p in k.params})
        self._run(k.backward, a, a["h_seq"], values)
        return tuple(out.values())

    def _bwd_fake(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        return tuple(self._bwd_outputs(self._bind(self.bwd_sig, args, kwargs)).values())

    # ------------------------------------------------------------------------------ autograd
    def _setup(self, ctx: Any, inputs: tuple, output: tuple) -> None:
        k = self.kernel
        a = self._bind(self.fwd_sig, inputs)
        produced = dict(zip(("s_seq", "h_seq", *k.finals, *((k.extra,) if k.extra else ())), output, strict=True))
        save = k.extra is None or a["save_extra"]
        tensors = []
        for name in k.saved:
            value = produced[name] if name in produced else a[name]
            param_only = name == "x_seq" or name.endswith("prev_seq")
            tensors.append(value if save or not param_only else value.new_empty(0))
        ctx.set_materialize_grads(False)  # unused outputs: None (a null pointer, read as 0), not zero tensors
        ctx.save_for_backward(*tensors, *(a[p] for p in k.params), a["zo_keys"], a["zo_table"])
        ctx.options = {n: a[n] for n in ("theta", "surrogate", "detach_reset", "zo_dist", "zo_samples", "zo_delta")}
        ctx.save_extra = None if k.extra is None else a["save_extra"]

    def _backward(self, ctx: Any, *grads: Tensor | None) -> tuple:
        k = self.kernel
        saved = ctx.saved_tensors
        n_saved = len(k.saved)
        params = saved[n_saved:n_saved + len(k.params)]
        zo_keys, zo_table = saved[-2:]
        first_param = 1 + len(k.states)
        want = ctx.save_extra if k.extra is not None else any(ctx.needs_input_grad[first_param:first_param + len(params)])
        want = bool(want)
        res = self.bwd(*grads[:len(k.grads)], *saved[:n_saved], *params, ctx.options["theta"], ctx.options["surrogate"],
                       ctx.options["detach_reset"], want, zo_keys, zo_table, ctx.options["zo_dist"],
                       ctx.options["zo_samples"], ctx.options["zo_delta"])
        n_in = 1 + len(k.states)
        param_grads = [part.view(-1, p.numel()).sum(0).to(p.dtype) if want else None
                       for part, p in zip(res[n_in:], params, strict=True)]
        n_options = len(self.fwd_sig.parameters) - n_in - len(params)
        return (*res[:n_in], *param_grads, *(None,) * n_options)


def register_neuron_ops(name: str, source: str | None = None, namespace: str = "sjframe") -> NeuronOps:
    """Read ``<name>.cu`` (or ``source``), check its conventions and register its custom ops."""
    return NeuronOps(NeuronKernel.from_source(name, source or f"{name}.cu"), namespace)
