"""Backward modes of the spike function: dense surrogate, sparse (S3GD) and LocalZO.

``GradientSpec`` is the per-layer config value ``gradient: {mode: dense|sparse|localzo, ...}``.
:func:`make_spike_fn` turns it (with the layer's surrogate) into the torch reference spike
function ``u -> H(u)`` used by every neuron's functional core:

* ``dense``: ``dL/du = dL/ds * g(u)`` with the configured surrogate ``g``.
* ``sparse`` (S3GD): the surrogate truncated to the active band ``|u| < b_th``; the S3GD paper
  uses ``fast_sigmoid`` with ``rho = 100`` and ``b_th = 0.2``.
* ``localzo``: the two-point zeroth-order estimate, fresh noise each forward pass,
  ``g = (1/m) sum_k |z_k| 1{|u| < delta |z_k|} / (2 delta)``, ``z_k`` i.i.d. from
  ``distribution`` (unit variance). Its expectation is the surrogate of the spec's table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sjframe.surrogate import Surrogate, spike, surrogate_from_config

__all__ = ["GRADIENT_MODES", "LOCALZO_DISTRIBUTIONS", "GradientSpec", "make_spike_fn", "sample_localzo_noise"]

GRADIENT_MODES = ("dense", "sparse", "localzo")
LOCALZO_DISTRIBUTIONS = ("normal", "laplace", "uniform", "sigmoid", "fast_sigmoid")

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GradientSpec:
    """How the spike function is differentiated (hashable).

    Attributes:
        mode: ``dense`` | ``sparse`` | ``localzo``.
        b_th: S3GD band: only ``|u| < b_th`` carries gradient (``sparse`` only).
        delta: LocalZO smoothing radius (``localzo`` only).
        samples: LocalZO number of noise samples ``m`` per entry.
        distribution: LocalZO noise distribution, one of ``LOCALZO_DISTRIBUTIONS``.
    """

    mode: str = "dense"
    b_th: float = 0.2
    delta: float = 0.05
    samples: int = 1
    distribution: str = "normal"

    def __post_init__(self) -> None:
        if self.mode not in GRADIENT_MODES:
            raise ValueError(f"gradient mode {self.mode!r} unknown; valid: {list(GRADIENT_MODES)}")
        if not (math.isfinite(self.b_th) and self.b_th > 0):
            raise ValueError(f"gradient.b_th must be positive, got {self.b_th!r}")
        if not (math.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"gradient.delta must be positive, got {self.delta!r}")
        if not (isinstance(self.samples, int) and self.samples >= 1):
            raise ValueError(f"gradient.samples must be an integer >= 1, got {self.samples!r}")
        if self.distribution not in LOCALZO_DISTRIBUTIONS:
            raise ValueError(
                f"gradient.distribution {self.distribution!r} unknown; valid: {list(LOCALZO_DISTRIBUTIONS)}"
            )

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
            valid = {"mode", "b_th", "delta", "samples", "distribution"}
            unknown = set(spec) - valid
            if unknown:
                raise ValueError(f"unknown gradient key(s) {sorted(unknown)}; valid: {sorted(valid)}")
            kw = dict(spec)
            for key in ("b_th", "delta"):
                if key in kw:
                    kw[key] = float(kw[key])
            return cls(**kw)
        raise ValueError(f"gradient must be a mode name or a mapping, got {type(spec).__name__}")

    def surrogate_for(self, surrogate: Surrogate) -> Surrogate:
        """The surrogate actually differentiated: truncated to the band in ``sparse`` mode."""
        return surrogate.with_band(self.b_th) if self.mode == "sparse" else surrogate


def sample_localzo_noise(
    shape: torch.Size, distribution: str, *, device: torch.device, dtype: torch.dtype,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``|z|`` for unit-variance symmetric noise of the spec's table (shape ``shape``).

    Only ``|z|`` enters the LocalZO estimate, so magnitudes are drawn directly:

    * normal: ``|N(0, 1)|``; laplace: ``Exp(rate sqrt 2)``; uniform: ``U[0, sqrt 3]``;
    * sigmoid: density of ``|z|`` ``∝ z k^2 delta^2 s(1-s)`` ... drawn by inverse transform so that
      ``E[g](u) = k sig(ku)(1 - sig(ku))`` with ``k delta = 1.532``;
    * fast_sigmoid: ``E[g](u) = 1/(1 + 100|u|)^2``, drawn by inverse transform (with ``k delta``
      fixed by ``k = 100``).

    For the last two the magnitude law is derived from ``E[g](u) = (1/delta) int_{|u|/delta}^inf
    z p(z) dz`` (two-sided density ``p``): with ``G(r) = E[g](r delta) * delta`` one gets the
    survival of ``|z|``: ``P(|z| > r) = 2 int_r^inf p = 2 int_r^inf -G'(s)/s ds``. Both are sampled
    numerically by :func:`_inverse_cdf_table`.
    """
    uniform = torch.rand(shape, device=device, dtype=torch.float32, generator=generator)
    if distribution == "normal":
        z = torch.erfinv(uniform.clamp(max=1 - 1e-7)) * math.sqrt(2.0)
    elif distribution == "laplace":
        z = -torch.log1p(-uniform.clamp(max=1 - 1e-7)) / math.sqrt(2.0)
    elif distribution == "uniform":
        z = uniform * math.sqrt(3.0)
    elif distribution in ("sigmoid", "fast_sigmoid"):
        grid, cdf = _inverse_cdf_table(distribution)
        idx = torch.searchsorted(cdf.to(device), uniform.reshape(-1)).clamp(max=grid.numel() - 1)
        z = grid.to(device)[idx].reshape(shape)
    else:
        raise ValueError(f"unknown LocalZO distribution {distribution!r}; valid: {list(LOCALZO_DISTRIBUTIONS)}")
    return z.to(dtype)


_TABLE_CACHE: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _inverse_cdf_table(distribution: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid ``r`` and CDF of ``|z|`` for the sigmoid / fast-sigmoid LocalZO laws (delta = 1 units).

    ``G(r)`` is the expected surrogate at ``u = r delta`` times delta. For sigmoid
    ``G(r) = c sig(c r)(1 - sig(c r))`` with ``c = 1.532``; for fast_sigmoid the expected surrogate
    ``1/(1+k|u|)^2`` with ``k delta = c = 100 * 0.05 = 5`` (the spec's k = 100 at delta = 0.05):
    ``G(r) = c / (1 + c r)^2`` up to the normalisation ``G(0) = E|z| / 2``.
    The density of ``|z|`` is ``q(r) = -2 G'(r) / r``, normalised numerically on the grid.
    """
    if distribution in _TABLE_CACHE:
        return _TABLE_CACHE[distribution]
    r = torch.linspace(1e-6, 60.0, 600_001, dtype=torch.float64)
    if distribution == "sigmoid":
        c = 1.532
        s = torch.sigmoid(c * r)
        dG = c * c * s * (1 - s) * (1 - 2 * s)  # derivative of c s (1 - s) w.r.t. r
    else:
        c = 5.0
        dG = -2.0 * c * c / (1 + c * r) ** 3
    q = (-dG / r).clamp(min=0)
    cdf = torch.cumsum(q, 0)
    cdf = cdf / cdf[-1]
    out = (r.float(), cdf.float())
    _TABLE_CACHE[distribution] = out
    return out


class _LocalZOSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, spec: GradientSpec) -> torch.Tensor:
        g = torch.zeros_like(u)
        for _ in range(spec.samples):
            z = sample_localzo_noise(u.shape, spec.distribution, device=u.device, dtype=u.dtype)
            g = g + z * (u.abs() < spec.delta * z).to(u.dtype)
        g = g / (2.0 * spec.delta * spec.samples)
        ctx.save_for_backward(g)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (g,) = ctx.saved_tensors
        return grad * g, None


def make_spike_fn(surrogate: Surrogate | str | dict | None, gradient: GradientSpec | None = None,
                  smooth: bool = False) -> SpikeFn:
    """Torch reference spike function ``u -> H(u)`` with the backward chosen by ``gradient``."""
    sur = surrogate_from_config(surrogate)
    grad = gradient or GradientSpec()
    if grad.mode == "localzo":
        if smooth:
            raise ValueError("smooth spikes (a test aid) are not defined for LocalZO")
        return lambda u: _LocalZOSpike.apply(u, grad)
    effective = grad.surrogate_for(sur)
    return lambda u: spike(u, effective, smooth=smooth)
