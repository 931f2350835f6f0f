"""Backward modes of the spike function: dense surrogate, sparse (S3GD) and LocalZO.

``GradientSpec`` is the per-layer (or per-model) config value
``gradient: {mode: dense|sparse|localzo, b_th, delta, samples, distribution, k, rng}``; the
surrogate is the separate value ``surrogate: {name, params}`` (:func:`sjframe.spike.surrogate.surrogate_from_config`).
Both are parsed here and only here.

:func:`make_spike_fn` turns them into the torch reference spike function ``u -> H(u)`` used by
every neuron's functional core (LIF, CuLIF, PCuLIF, AdLIF), with ``u = h - theta``:

* ``dense``: ``dL/du = dL/ds * g(u)``, ``g`` the configured surrogate.
* ``sparse`` (S3GD): the surrogate truncated to the active band, ``g(u) 1{|u| < b_th}`` (the S3GD
  paper: ``fast_sigmoid`` with ``rho = 100``, ``b_th = 0.2``). In the neuron cores this is
  **masked-dense**: the backward still runs over every ``[T, B, N]`` entry, with zeros outside the
  band. The truly sparse backward (work and memory scaling with the active entries) is the fused
  ``Linear + LIF`` op of :mod:`sjframe.layers.sparse_linear_lif`.
* ``localzo``: the two-point zeroth-order estimate, fresh noise each forward pass,
  ``g = (1/m) sum_k |z_k| 1{|u| < delta |z_k|} / (2 delta)`` with ``z_k`` from ``distribution``
  (:mod:`sjframe.spike.localzo`: laws, derivation, expected surrogates). In the neuron cores
  it is masked-dense as well; the fused op uses the nonzero estimates as its active set.

Random numbers (LocalZO): ``rng: torch`` (default) draws with ``torch.rand`` from a
``torch.Generator`` (or torch's global RNG, seeded by the run); ``rng: philox`` draws a 64-bit key
from that generator and then uses the counter-based Philox4x32-10 of the CUDA kernels, so the torch
path and the kernels produce bit-identical noise (slower on the CPU). Either way a seed fixes the
gradient. On ``backend='cupy'`` (the fused neuron kernels, one key per time step, and the sparse
layer) the noise is always Philox: ``rng: torch`` has no kernel twin and is read as ``philox`` there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sjframe.spike.localzo import LOCALZO_DISTRIBUTIONS, expected_surrogate, localzo_estimate, mean_abs_z
from sjframe.spike.surrogate import Surrogate, spike, surrogate_from_config

__all__ = ["GRADIENT_MODES", "LOCALZO_DISTRIBUTIONS", "LOCALZO_RNGS", "GradientSpec", "make_spike_fn"]

GRADIENT_MODES = ("dense", "sparse", "localzo")
LOCALZO_RNGS = ("torch", "philox")

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GradientSpec:
    """How the spike function is differentiated (hashable: it keys kernel caches).

    Attributes:
        mode: ``dense`` | ``sparse`` | ``localzo``.
        b_th: S3GD band: only ``|u| < b_th`` carries gradient (``sparse`` only; default 0.2).
        delta: LocalZO smoothing radius (``localzo`` only; default 0.05).
        samples: LocalZO number of noise samples ``m`` per entry (default 1).
        distribution: LocalZO noise law, one of ``LOCALZO_DISTRIBUTIONS`` (default ``normal``).
        k: slope of the ``fast_sigmoid`` law's expected surrogate ``1/(1 + k|u|)^2`` (default 100).
        rng: LocalZO random numbers, ``torch`` (``torch.rand``) or ``philox`` (as the CUDA kernels).
    """

    mode: str = "dense"
    b_th: float = 0.2
    delta: float = 0.05
    samples: int = 1
    distribution: str = "normal"
    k: float = 100.0
    rng: str = "torch"

    def __post_init__(self) -> None:
        if self.mode not in GRADIENT_MODES:
            raise ValueError(f"gradient mode {self.mode!r} unknown; valid: {list(GRADIENT_MODES)}")
        for name in ("b_th", "delta", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"gradient.{name} must be a positive finite number, got {value!r}")
        if isinstance(self.samples, bool) or not (isinstance(self.samples, int) and self.samples >= 1):
            raise ValueError(f"gradient.samples must be an integer >= 1, got {self.samples!r}")
        if self.distribution not in LOCALZO_DISTRIBUTIONS:
            raise ValueError(
                f"gradient.distribution {self.distribution!r} unknown; valid: {list(LOCALZO_DISTRIBUTIONS)}"
            )
        if self.rng not in LOCALZO_RNGS:
            raise ValueError(f"gradient.rng {self.rng!r} unknown; valid: {list(LOCALZO_RNGS)}")

    @classmethod
    def from_config(cls, spec: str | dict[str, Any] | GradientSpec | None) -> GradientSpec:
        """Accept ``"sparse"``, ``{"mode": "localzo", "delta": 0.05}``, a spec or None (dense)."""
        if spec is None:
            return cls()
        if isinstance(spec, GradientSpec):
            return spec
        if isinstance(spec, str):
            return cls(mode=spec)
        if isinstance(spec, dict):
            valid = {"mode", "b_th", "delta", "samples", "distribution", "k", "rng"}
            unknown = set(spec) - valid
            if unknown:
                raise ValueError(f"unknown gradient key(s) {sorted(unknown)}; valid: {sorted(valid)}")
            kw = dict(spec)
            for key in ("b_th", "delta", "k"):
                if key in kw and isinstance(kw[key], int) and not isinstance(kw[key], bool):
                    kw[key] = float(kw[key])
            return cls(**kw)
        raise ValueError(f"gradient must be a mode name or a mapping, got {type(spec).__name__}")

    def surrogate_for(self, surrogate: Surrogate) -> Surrogate:
        """The surrogate actually differentiated: truncated to the band in ``sparse`` mode.

        In ``localzo`` mode the configured surrogate is not used; :meth:`expected_surrogate` is the
        derivative the estimate equals on average.
        """
        return surrogate.with_band(self.b_th) if self.mode == "sparse" else surrogate

    def expected_surrogate(self) -> Surrogate:
        """The surrogate the LocalZO estimate equals in expectation (spec section 3's table)."""
        return expected_surrogate(self.distribution, self.delta, self.k)

    def fair_band(self) -> float:
        """S3GD band matching this LocalZO law: ``b_th = delta E|z|`` (m = 1)."""
        return self.delta * mean_abs_z(self.distribution, self.delta, self.k)


class _LocalZOSpike(torch.autograd.Function):
    """``H(u)`` forward; backward ``grad * g`` with ``g`` the LocalZO estimate drawn in the forward."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, spec: GradientSpec, generator: torch.Generator | None) -> torch.Tensor:
        g = localzo_estimate(u, spec.distribution, spec.delta, spec.samples, spec.k, spec.rng, generator)
        ctx.save_for_backward(g)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (g,) = ctx.saved_tensors
        return grad * g, None, None


def make_spike_fn(
    surrogate: Surrogate | str | dict | None,
    gradient: GradientSpec | str | dict | None = None,
    smooth: bool = False,
    generator: torch.Generator | None = None,
) -> SpikeFn:
    """Torch reference spike function ``u -> H(u)`` with the backward chosen by ``gradient``.

    ``generator`` (LocalZO only) supplies the noise; None uses torch's global RNG.
    """
    sur = surrogate_from_config(surrogate)
    grad = GradientSpec.from_config(gradient)
    if grad.mode == "localzo":
        if smooth:
            raise ValueError("smooth spikes (a test aid) are not defined for LocalZO")
        return lambda u: _LocalZOSpike.apply(u, grad, generator)
    effective = grad.surrogate_for(sur)
    return lambda u: spike(u, effective, smooth=smooth)
