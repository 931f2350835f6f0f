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

Generated ops (contiguous time-major tensors: ``x_seq [T, *S]``, the states and finals ``[*S]``, ``N = prod(S)``,
e.g. ``S = (B, *F)``; the kernels see ``[T, N]`` and ``[N]``, so the outputs have x's shape and no caller reshapes):

* ``sjframe::<name>_fwd(x_seq, *states, *params, theta, surrogate, detach_reset[, save_extra],
  zo_keys=None, zo_table=None, zo_dist=0, zo_samples=1, zo_delta=0.05)`` ->
  ``(s [T,*S], h [T,*S], *finals [*S][, extra [T,*S] or [0]])``. With an extra sequence the
  ``save_extra`` flag (the caller's "parameter gradients needed") decides whether it is written
  and whether the backward computes parameter gradients; without one the backward decides from
  ``needs_input_grad``.
* ``sjframe::<name>_bwd(*grads, *saved, *params, theta, surrogate, detach_reset, param_grads,
  zo...)`` -> the backward kernel's outputs (partials ``[N]``, or ``[0]`` without
  ``param_grads``).

The entry point is :meth:`NeuronOps.forward` (same arguments as the forward op): under
``torch.compile`` it calls the custom op (so the compiler sees one opaque op with its fake function
and autograd formula); in eager mode it calls the same implementation and the same autograd
formula through a ``torch.autograd.Function`` (:meth:`NeuronOps.eager_function`), which skips the
custom-op machinery (argument re-binding, two extra Python dispatches per op; about 0.3 ms a call on
the CPU with cold caches after a kernel has streamed its ``[T, N]`` sequences). Both run the same
kernels with the same arguments, so they give the same results bit for bit (checked by a test).
The kernel arguments are gathered by index plans computed once per op from the kernel's signature
(:meth:`NeuronOps.kernel_plan`), not by name at every call.

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
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cupy_neurons import build, zo
from cupy_neurons.build import KernelSig, Specialisation
from cupy_neurons.launch import DTYPE_NAMES, acc_dtype, launch

__all__ = ["DTYPE_NAMES", "NeuronKernel", "NeuronOps", "acc_dtype", "neuron_specialisation", "register_neuron_ops",
           "zo_arguments"]

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


def _param_only(name: str) -> bool:
    """A saved tensor the backward kernel reads only for parameter gradients (passed null otherwise)."""
    return name == "x_seq" or name.endswith("prev_seq")


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
        self._fwd_names = tuple(self.fwd_sig.parameters)
        self._bwd_names = tuple(self.bwd_sig.parameters)
        self._fwd_index = {name: i for i, name in enumerate(self._fwd_names)}
        self._bwd_index = {name: i for i, name in enumerate(self._bwd_names)}
        self._fwd_out_names = ("s_seq", "h_seq", *k.finals, *((k.extra,) if k.extra else ()))
        zo_names = tuple(name for _, name in k.backward.params if name.startswith("zo_"))
        self._fwd_plan = self.kernel_plan(k.forward, self._fwd_names, self._fwd_out_names, (), None)
        self._bwd_plans = {flag: self.kernel_plan(k.backward, self._bwd_names, k.outputs, zo_names, flag)
                           for flag in (False, True)}
        self._n_options = len(self._fwd_names) - 1 - len(k.states) - len(k.params)
        self.eager_function = self._make_eager_function()

    @staticmethod
    def _op(name: str, impl: Any, fake: Any, sig: inspect.Signature) -> Any:
        def op_impl(*args: Any, **kwargs: Any) -> Any:
            return impl(*args, **kwargs)

        op_impl.__signature__ = sig  # type: ignore[attr-defined]  # the schema torch.library infers
        op_impl.__name__ = name.split("::")[1]
        op = torch.library.custom_op(name, op_impl, mutates_args=())
        op.register_fake(fake)
        return op

    def kernel_plan(self, sig: KernelSig, arg_names: tuple[str, ...], out_names: tuple[str, ...],
                    zo_names: tuple[str, ...], param_grads: bool | None) -> tuple[int, ...]:
        """Where each argument of kernel ``sig`` comes from: indices into the call's pool.

        The pool of a call is ``(*op arguments, *outputs, T, N, P, None, *zo kernel values)`` (the op's
        arguments in its signature's order, the outputs in ``out_names``' order, the ``SJ_ZO_PARAMS`` values
        of :func:`cupy_neurons.zo.zo_kernel_args` in ``zo_names``' order). ``param_grads`` (a backward kernel's
        flag; None for a forward kernel): when False, the saved tensors read only for parameter gradients
        (``x_seq``, ``<...>prev_seq``) and the partials ``d<param>_part`` are the null slot. Computed once per
        op and flag, so a call gathers its kernel arguments by index.
        """
        n_args, n_out = len(arg_names), len(out_names)
        sizes = {name: n_args + n_out + i for i, name in enumerate(("T", "N", "P"))}
        null = n_args + n_out + 3
        where = {**{name: i for i, name in enumerate(arg_names)}, **{name: n_args + i for i, name in enumerate(out_names)},
                 **sizes, **{name: null + 1 + i for i, name in enumerate(zo_names)}}
        for_params = {*(n for n in self.kernel.saved if _param_only(n)), *(f"d{p}_part" for p in self.kernel.params)}
        plan = []
        for _, name in sig.params:
            if name not in where:
                raise ValueError(f"kernel {sig.name}: argument {name} is neither an op argument, an output, a size "
                                 f"nor a LocalZO value")
            plan.append(null if param_grads is False and name in for_params else where[name])
        return tuple(plan)

    def _launch(self, sig: KernelSig, plan: tuple[int, ...], pool: list[Any], like: Tensor, a: tuple,
                index: dict[str, int]) -> None:
        """Check the LocalZO options, gather ``sig``'s arguments by ``plan`` from ``pool`` and launch it.

        ``a``: the op's arguments (positional, all), ``index``: their positions by name; ``like``: a ``[T, *S]``
        sequence of the call (the sizes ``T`` and ``N = prod(S)``, the storage dtype and the device).
        """
        t_steps, n = like.shape[0], math.prod(like.shape[1:])
        zo_args = tuple(a[index[name]] for name, _, _ in _ZO_OPTIONS)
        zo.check_zo(t_steps, like, *zo_args)
        pool += [t_steps, n, a[index[self.kernel.params[0]]].numel(), None]
        if sig is self.kernel.backward:
            pool += zo.zo_kernel_args(*zo_args)
        spec = neuron_specialisation(self.kernel.source, DTYPE_NAMES[like.dtype], a[index["surrogate"]],
                                     a[index["detach_reset"]], zo_args[0] is not None)
        launch(spec, sig, n, [pool[i] for i in plan], (self.kernel.forward, self.kernel.backward))

    @staticmethod
    def _args(sig: inspect.Signature, args: tuple, kwargs: dict) -> tuple:
        """The op's arguments as a full positional tuple, in ``sig``'s order.

        torch passes them positionally (all of them to the implementations, the caller's to the autograd set-up):
        returned as they are, or with the trailing defaults filled, without inspect's general binding (which
        other callers get).
        """
        params = sig.parameters
        if not kwargs and len(args) <= len(params):
            if len(args) == len(params):
                return args
            tail = list(params.values())[len(args):]
            if all(q.default is not _REQ for q in tail):
                return (*args, *(q.default for q in tail))
        bound = sig.bind(*args, **(kwargs or {}))
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    # ------------------------------------------------------------------------------ forward
    def _fwd_outputs(self, a: tuple) -> list[Tensor]:
        """The forward op's outputs (in ``_fwd_out_names``' order) for its arguments ``a`` (positional, all):
        ``s, h [T, *S]`` (x's shape), the final states ``[*S]``, the extra sequence ``[T, *S]`` (``[0]`` without
        ``save_extra``)."""
        x = a[0]
        outs = [torch.empty_like(x), torch.empty_like(x), *(torch.empty_like(x[0]) for _ in self.kernel.finals)]
        if self.kernel.extra is not None:
            outs.append(_empty_if(a[self._fwd_index["save_extra"]], x, tuple(x.shape)))
        return outs

    def _fwd_impl(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        a = self._args(self.fwd_sig, args, kwargs)
        outs = self._fwd_outputs(a)
        pool = [*a, *outs]
        if self.kernel.extra is not None and not a[self._fwd_index["save_extra"]]:
            pool[-1] = None  # the extra sequence is not written: a null pointer
        self._launch(self.kernel.forward, self._fwd_plan, pool, a[0], a, self._fwd_index)
        return tuple(outs)

    def _fwd_fake(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        return tuple(self._fwd_outputs(self._args(self.fwd_sig, args, kwargs)))

    # ------------------------------------------------------------------------------ backward
    def _bwd_outputs(self, a: tuple) -> list[Tensor]:
        """The backward op's outputs for its arguments ``a`` (positional, all): ``dx [T, *S]``, ``d<state> [*S]``,
        the parameter partials ``[N]`` in the parameters' dtype (``[0]`` without ``param_grads``)."""
        k = self.kernel
        h = a[self._bwd_index["h_seq"]]
        want = a[self._bwd_index["param_grads"]]
        first_param = len(k.grads) + len(k.saved)
        n = math.prod(h.shape[1:])
        return [torch.empty_like(h), *(h.new_empty(h.shape[1:]) for _ in k.states),
                *(_empty_if(want, h, (n,), p.dtype) for p in a[first_param:first_param + len(k.params)])]

    def _bwd_impl(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        a = self._args(self.bwd_sig, args, kwargs)
        n_grads = len(self.kernel.grads)
        outs = self._bwd_outputs(a)
        grads = [None if g is None else g.contiguous() for g in a[:n_grads]]
        pool = [*grads, *a[n_grads:], *outs]
        self._launch(self.kernel.backward, self._bwd_plans[bool(a[self._bwd_index["param_grads"]])], pool,
                     a[self._bwd_index["h_seq"]], a, self._bwd_index)
        return tuple(outs)

    def _bwd_fake(self, *args: Any, **kwargs: Any) -> tuple[Tensor, ...]:
        return tuple(self._bwd_outputs(self._args(self.bwd_sig, args, kwargs)))

    # ------------------------------------------------------------------------------ autograd
    def _setup(self, ctx: Any, inputs: tuple, output: tuple) -> None:
        k = self.kernel
        a = self._args(self.fwd_sig, inputs, {})
        index = self._fwd_index
        produced = dict(zip(self._fwd_out_names, output, strict=True))
        save = k.extra is None or a[index["save_extra"]]
        tensors = []
        for name in k.saved:
            value = produced[name] if name in produced else a[index[name]]
            tensors.append(value if save or not _param_only(name) else value.new_empty(0))
        ctx.set_materialize_grads(False)  # unused outputs: None (a null pointer, read as 0), not zero tensors
        ctx.save_for_backward(*tensors, *(a[index[p]] for p in k.params), a[index["zo_keys"]], a[index["zo_table"]])
        ctx.options = tuple(a[index[n]] for n in ("theta", "surrogate", "detach_reset", "zo_dist", "zo_samples",
                                                  "zo_delta"))
        ctx.save_extra = None if k.extra is None else a[index["save_extra"]]

    def _backward(self, ctx: Any, *grads: Tensor | None, eager: bool = False) -> tuple:
        """The autograd formula of the forward op: the backward op, then the partials summed to ``[P]``.

        ``eager``: called by :meth:`eager_function`'s backward (the backward op's implementation directly).
        """
        k = self.kernel
        saved = ctx.saved_tensors
        n_saved = len(k.saved)
        params = saved[n_saved:n_saved + len(k.params)]
        zo_keys, zo_table = saved[-2:]
        first_param = 1 + len(k.states)
        want = ctx.save_extra if k.extra is not None else any(ctx.needs_input_grad[first_param:first_param + len(params)])
        want = bool(want)
        theta, surrogate, detach_reset, zo_dist, zo_samples, zo_delta = ctx.options
        bwd = self._bwd_impl if eager else self.bwd
        res = bwd(*grads[:len(k.grads)], *saved[:n_saved], *params, theta, surrogate, detach_reset, want, zo_keys,
                  zo_table, zo_dist, zo_samples, zo_delta)
        # the partials are [N] in the parameters' (accumulation) dtype: summed over the batch to [P]
        param_grads = [part.view(-1, p.numel()).sum(0) if want else None
                       for part, p in zip(res[first_param:], params, strict=True)]
        return (*res[:first_param], *param_grads, *(None,) * self._n_options)

    def _make_eager_function(self) -> type[torch.autograd.Function]:
        """A ``torch.autograd.Function`` running the forward op's implementation, set-up and formula (eager mode)."""
        ops = self

        class EagerNeuronOp(torch.autograd.Function):
            # forward(ctx, ...) rather than a separate setup_context: Function.apply binds the arguments of a
            # setup_context-style forward with inspect.signature at every call (tens of microseconds)
            @staticmethod
            def forward(ctx: Any, *args: Any) -> tuple[Tensor, ...]:
                output = ops._fwd_impl(*args)
                ops._setup(ctx, args, output)
                return output

            @staticmethod
            @torch.autograd.function.once_differentiable  # as the custom op: no second derivative (an error, not 0)
            def backward(ctx: Any, *grads: Tensor | None) -> tuple:
                return ops._backward(ctx, *grads, eager=True)

        EagerNeuronOp.__name__ = EagerNeuronOp.__qualname__ = f"{self.kernel.name}_eager"
        return EagerNeuronOp

    def forward(self, *args: Any) -> tuple[Tensor, ...]:
        """Run the forward op on its arguments (all positional, in :attr:`fwd_sig`'s order, the LocalZO ones
        included): the custom op under ``torch.compile``, :attr:`eager_function` otherwise (same results).
        ``torch.func`` transforms run through neither (torch's custom-op autograd does not support them either)."""
        if len(args) != len(self._fwd_names):
            raise ValueError(f"{self.kernel.name} forward takes {len(self._fwd_names)} arguments "
                             f"{list(self._fwd_names)}, got {len(args)}")
        if torch.compiler.is_compiling():
            return self.fwd(*args)
        return self.eager_function.apply(*args)


def zo_arguments(zo: dict[str, Any] | None) -> tuple[Any, ...]:
    """The ops' LocalZO arguments ``(zo_keys, zo_table, zo_dist, zo_samples, zo_delta)`` from keywords (None or
    missing: the defaults, i.e. the surrogate)."""
    zo = zo or {}
    unknown = set(zo) - {name for name, _, _ in _ZO_OPTIONS}
    if unknown:
        raise ValueError(f"unknown LocalZO arguments {sorted(unknown)}; valid: {[n for n, _, _ in _ZO_OPTIONS]}")
    return tuple(zo.get(name, default) for name, _, default in _ZO_OPTIONS)


def register_neuron_ops(name: str, source: str | None = None, namespace: str = "sjframe") -> NeuronOps:
    """Read ``<name>.cu`` (or ``source``), check its conventions and register its custom ops."""
    return NeuronOps(NeuronKernel.from_source(name, source or f"{name}.cu"), namespace)
