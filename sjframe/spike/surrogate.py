"""Surrogate derivatives of the spike function, defined once for torch and for the CUDA kernels.

A spiking neuron emits ``s = H(u)`` with ``u = h - theta`` (spike when ``u >= 0``). The Heaviside
``H`` has no useful derivative, so the backward pass replaces ``dH/du`` by a surrogate ``g(u)``.

Each surrogate is written **once**, as an expression in a tiny language (``SURROGATE_TABLE``):
the names ``u`` (the distance to threshold), the surrogate's own parameters, the functions
``abs exp sqrt sq sig max0`` and float literals. The same string is

* evaluated with torch functions by :meth:`Surrogate.derivative` (the torch reference), and
* translated into a C expression by :meth:`Surrogate.cuda_expr` for the CuPy kernels (and their
  host-C++ test build), so that both paths compute the same function.

Surrogates (``g(u)``; parameters with defaults):

============== ====================================================== =========================
name           g(u)                                                   parameters
============== ====================================================== =========================
fast_sigmoid   ``1 / (rho |u| + 1)^2`` (SuperSpike, unnormalised)     rho = 5 (the paper's)
sigmoid        ``alpha sig(alpha u) (1 - sig(alpha u))``              alpha = 4
arctan         ``(alpha / 2) / (1 + (pi/2 alpha u)^2)``               alpha = 2
gaussian       ``exp(-u^2 / 2 sigma^2) / (sigma sqrt(2 pi))``          sigma = 0.5
triangle       ``max(0, 1 - |u| / width) / width``                    width = 1
laplace        ``(|u|/delta + 1/sqrt2) exp(-sqrt2 |u|/delta) / 2delta`` delta = 0.05
uniform        ``max(0, 3 - u^2/delta^2) / (4 sqrt3 delta)``           delta = 0.05
============== ====================================================== =========================

``normal`` is an alias of ``gaussian``. The last two (and ``gaussian`` with ``sigma = delta``,
``sigmoid`` with ``alpha = 1.532 / delta``, ``fast_sigmoid`` with ``rho = 100``) are the expected
LocalZO surrogates of spec/sparse-and-zeroth-order.md section 3.

``band`` truncates any surrogate to ``|u| < band`` (the S3GD active set): ``g_band(u) = g(u) *
1{|u| < band}``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "SURROGATE_TABLE",
    "Surrogate",
    "get_surrogate",
    "spike",
    "surrogate_from_config",
]

# name -> (derivative expression, primitive expression or None, default parameters)
# The primitive (an antiderivative, H-like: 0 at -inf, 1 at +inf) is only used by tests that
# replace the Heaviside with a smooth function to check gradients against finite differences.
SURROGATE_TABLE: dict[str, tuple[str, str | None, dict[str, float]]] = {
    "fast_sigmoid": (
        "1.0 / sq(rho * abs(u) + 1.0)",
        None,
        {"rho": 5.0},
    ),
    "sigmoid": (
        "alpha * sig(alpha * u) * (1.0 - sig(alpha * u))",
        "sig(alpha * u)",
        {"alpha": 4.0},
    ),
    "arctan": (
        "(alpha / 2.0) / (1.0 + sq(1.5707963267948966 * alpha * u))",
        None,
        {"alpha": 2.0},
    ),
    "gaussian": (
        "exp(-sq(u) / (2.0 * sq(sigma))) / (sigma * 2.5066282746310002)",
        None,
        {"sigma": 0.5},
    ),
    "triangle": (
        "max0(1.0 - abs(u) / width) / width",
        None,
        {"width": 1.0},
    ),
    "laplace": (
        "(abs(u) / delta + 0.7071067811865476) * exp(-1.4142135623730951 * abs(u) / delta)"
        " / (2.0 * delta)",
        None,
        {"delta": 0.05},
    ),
    "uniform": (
        "max0(3.0 - sq(u / delta)) / (6.928203230275509 * delta)",
        None,
        {"delta": 0.05},
    ),
}
_ALIASES = {"normal": "gaussian", "superspike": "fast_sigmoid", "atan": "arctan"}

def _elementwise(tensor_fn: Any, float_fn: Any) -> Any:
    """A function applying ``tensor_fn`` to tensors and ``float_fn`` to plain parameters."""
    return lambda x: tensor_fn(x) if isinstance(x, torch.Tensor) else float_fn(x)


_TORCH_FUNCS: dict[str, Any] = {
    "abs": _elementwise(torch.abs, abs),
    "exp": _elementwise(torch.exp, math.exp),
    "sqrt": _elementwise(torch.sqrt, math.sqrt),
    "sq": lambda x: x * x,
    "sig": _elementwise(torch.sigmoid, lambda v: 1.0 / (1.0 + math.exp(-v))),
    "max0": _elementwise(torch.relu, lambda v: max(v, 0.0)),
}
# C spellings: float math from <math.h>/CUDA, helpers defined in cupy_neurons/common.cuh.
_C_FUNCS = {
    "abs": "fabsf",
    "exp": "expf",
    "sqrt": "sqrtf",
    "sq": "sj_sq",
    "sig": "sj_sigmoid",
    "max0": "sj_max0",
}
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z_0-9]*|\d+\.\d*(?:[eE][-+]?\d+)?|\d+|\S")


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative with fixed parameters (hashable: it keys kernel caches).

    Attributes:
        name: key of ``SURROGATE_TABLE`` (aliases resolved).
        params: ``((param, value), ...)`` sorted by name.
        band: if not None, the derivative is zero where ``|u| >= band`` (S3GD truncation).
    """

    name: str
    params: tuple[tuple[str, float], ...] = field(default=())
    band: float | None = None

    def __post_init__(self) -> None:
        if self.name not in SURROGATE_TABLE:
            raise ValueError(
                f"unknown surrogate {self.name!r}; valid: {sorted(SURROGATE_TABLE) + sorted(_ALIASES)}"
            )
        defaults = SURROGATE_TABLE[self.name][2]
        for key, value in self.params:
            if key not in defaults:
                raise ValueError(
                    f"surrogate {self.name!r} has no parameter {key!r}; valid: {sorted(defaults)}"
                )
            if not (isinstance(value, float) and math.isfinite(value) and value > 0):
                raise ValueError(f"surrogate {self.name!r}: {key} must be a positive float, got {value!r}")
        if self.band is not None and not (math.isfinite(self.band) and self.band > 0):
            raise ValueError(f"surrogate band must be positive, got {self.band!r}")

    # ------------------------------------------------------------------ parameters
    @property
    def values(self) -> dict[str, float]:
        """All parameters, defaults filled in."""
        out = dict(SURROGATE_TABLE[self.name][2])
        out.update(dict(self.params))
        return out

    @property
    def expression(self) -> str:
        """The derivative expression of ``SURROGATE_TABLE`` (the single definition)."""
        return SURROGATE_TABLE[self.name][0]

    # ------------------------------------------------------------------ torch
    def derivative(self, u: torch.Tensor) -> torch.Tensor:
        """``g(u)`` elementwise (same dtype and shape as ``u``)."""
        g = _TORCH_DERIVATIVES[self.name](u, *self.values.values())
        if self.band is not None:
            g = g * (u.abs() < self.band).to(g.dtype)
        return g

    def primitive(self, u: torch.Tensor) -> torch.Tensor:
        """A smooth step whose derivative is ``g`` (only for surrogates that define one)."""
        expr = SURROGATE_TABLE[self.name][1]
        if expr is None:
            raise ValueError(f"surrogate {self.name!r} defines no smooth primitive")
        return _TORCH_PRIMITIVES[self.name](u, *self.values.values())

    # ------------------------------------------------------------------ CUDA / C
    def cuda_expr(self, u: str = "u") -> str:
        """The derivative as a C/CUDA float expression of the variable named ``u``.

        Parameters are inlined as float literals, so a kernel is specialised (and cached) per
        surrogate. Helpers ``sj_sq``, ``sj_sigmoid``, ``sj_max0`` live in ``cupy_neurons/common.cuh``.
        Rendered once per (surrogate, variable name): a kernel call asks for it every time.
        """
        return _cuda_expr(self, u)

    def _render_cuda_expr(self, u: str) -> str:
        values = self.values
        out = []
        for tok in _TOKEN.findall(self.expression):
            if tok in _C_FUNCS:
                out.append(_C_FUNCS[tok])
            elif tok == "u":
                out.append(f"({u})")
            elif tok in values:
                out.append(_c_float(values[tok]))
            elif tok[0].isdigit():
                out.append(_c_float(float(tok)))
            elif re.fullmatch(r"[A-Za-z_]\w*", tok):
                raise ValueError(f"surrogate {self.name!r}: unknown name {tok!r} in expression")
            else:
                out.append(tok)
        expr = " ".join(out)
        if self.band is not None:
            expr = f"((fabsf({u}) < {_c_float(self.band)}) ? ({expr}) : 0.0f)"
        return expr

    def with_band(self, band: float | None) -> Surrogate:
        """Same surrogate truncated to ``|u| < band``."""
        return Surrogate(self.name, self.params, band)


@functools.lru_cache(maxsize=256)
def _cuda_expr(surrogate: Surrogate, u: str) -> str:
    return surrogate._render_cuda_expr(u)


def _torch_function(expression: str, params: tuple[str, ...]) -> Any:
    """``lambda u, *params: <expression>`` over the torch helpers: a plain Python function built once
    at import, so ``torch.compile`` traces it without a graph break."""
    source = f"lambda u{''.join(', ' + p for p in params)}: {expression}"
    return eval(source, {"__builtins__": {}, **_TORCH_FUNCS})  # noqa: S307 - fixed table strings


# One torch function per table entry; arguments ``(u, *parameters in the table's default order)``.
_TORCH_DERIVATIVES = {name: _torch_function(e[0], tuple(e[2])) for name, e in SURROGATE_TABLE.items()}
_TORCH_PRIMITIVES = {name: _torch_function(e[1], tuple(e[2])) for name, e in SURROGATE_TABLE.items() if e[1]}


def _c_float(value: float) -> str:
    text = repr(float(value))
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def get_surrogate(name: str = "fast_sigmoid", band: float | None = None, **params: float) -> Surrogate:
    """Build a :class:`Surrogate` by name; unknown names or parameters raise ``ValueError``."""
    key = _ALIASES.get(name, name)
    if key not in SURROGATE_TABLE:
        raise ValueError(f"unknown surrogate {name!r}; valid: {sorted(SURROGATE_TABLE) + sorted(_ALIASES)}")
    items = tuple(sorted((k, float(v)) for k, v in params.items()))
    return Surrogate(key, items, None if band is None else float(band))


def surrogate_from_config(spec: str | dict[str, Any] | Surrogate | None) -> Surrogate:
    """Accept ``"arctan"``, ``{"name": "arctan", "alpha": 3}``, a Surrogate, or None (default)."""
    if spec is None:
        return get_surrogate()
    if isinstance(spec, Surrogate):
        return spec
    if isinstance(spec, str):
        return get_surrogate(spec)
    if isinstance(spec, dict):
        spec = dict(spec)
        if "name" not in spec:
            raise ValueError(f"surrogate config needs a 'name' key, got keys {sorted(spec)}")
        return get_surrogate(**spec)
    raise ValueError(f"surrogate must be a name or a mapping, got {type(spec).__name__}")


class _SpikeFunction(torch.autograd.Function):
    """``H(u)`` forward, ``grad * g(u)`` backward."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(u), None


class _SmoothSpikeFunction(torch.autograd.Function):
    """Test aid: forward emits the smooth primitive, so finite differences see ``g``."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.surrogate = surrogate
        return surrogate.primitive(u)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad * ctx.surrogate.derivative(u), None


def spike(u: torch.Tensor, surrogate: Surrogate, smooth: bool = False) -> torch.Tensor:
    """Spike ``H(u)`` (``u = h - theta``) with the surrogate backward.

    ``smooth=True`` replaces ``H`` by the surrogate's primitive (for gradient checks only).
    """
    if smooth:
        return _SmoothSpikeFunction.apply(u, surrogate)
    return _SpikeFunction.apply(u, surrogate)
