"""Principal branch ``W0`` of the Lambert W function in torch (CPU and GPU, vectorised).

``W0(z)`` is the solution ``w >= -1`` of ``w e^w = z``; it is real for ``z >= -1/e``. For
``z < -1/e`` there is no real solution and :func:`lambertw0` returns NaN there ("no solution");
every ``z >= -1/e`` (including ``+inf``) gives a finite or ``+inf`` value, never NaN.

Starting points:

* near the branch point (``z < -0.32``): the series in ``p = sqrt(2 (e z + 1))``,
  ``W = -1 + p - p^2/3 + 11/72 p^3 - 43/540 p^4 + 769/17280 p^5``;
* ``-0.32 <= z <= e``: ``log1p(z)``;
* ``z > e``: ``L1 - L2 + L2 / L1`` with ``L1 = ln z``, ``L2 = ln L1``.

Refinement: Halley's iteration on ``f(w) = w e^w - z`` for ``z <= e``,
``w <- w - f / (e^w (w + 1) - (w + 2) f / (2 w + 2))``, and Newton's iteration on
``g(w) = w + ln w - ln z`` for ``z > e`` (no overflow of ``e^w`` for huge ``z``). Entries whose
series start is already exact to rounding (``p < 1e-3``) are not iterated (the Halley step divides
by ``w + 1``). The derivative used by autograd is ``dW/dz = 1 / (e^W (1 + W))``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["lambertw0", "BRANCH_POINT"]

BRANCH_POINT = -math.exp(-1.0)  # -1/e rounded to float64: W0 = -1 there
# -1/e = BRANCH_POINT + _BRANCH_POINT_LO exactly to ~1e-33 (so e z + 1 is computed without cancellation)
_BRANCH_POINT_LO = 1.2428753672788363168e-17

_MIN_ITER = 3  # Halley from these starts: 3 steps reach ~1e-14, 4 reach rounding level
_MAX_ITER = 12  # Halley converges in <= 5 steps from these starts; near the branch point it
# oscillates at the conditioning limit (~1e-14) without meeting the tolerance, so cap it


def _branch_p(z: torch.Tensor) -> torch.Tensor:
    """``p = sqrt(2 (e z + 1)) = sqrt(2 e (z + 1/e))`` with ``z + 1/e`` formed without cancellation."""
    delta = (z - BRANCH_POINT) - _BRANCH_POINT_LO
    return torch.sqrt(torch.clamp(2.0 * math.e * delta, min=0.0))


def _start(z: torch.Tensor) -> torch.Tensor:
    """Initial guess for W0(z) (z >= -1/e, finite)."""
    p = _branch_p(z)
    branch = -1.0 + p * (1.0 + p * (-1.0 / 3.0 + p * (11.0 / 72.0 + p * (-43.0 / 540.0 + p * 769.0 / 17280.0))))
    mid = torch.log1p(torch.clamp(z, min=-0.32))
    zl = torch.clamp(z, min=math.e)
    l1 = torch.log(zl)
    l2 = torch.log(l1)
    large = l1 - l2 + l2 / l1
    return torch.where(z < -0.32, branch, torch.where(z <= math.e, mid, large))


def _halley(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One Halley step on ``w e^w - z`` (``w > -1``)."""
    ew = torch.exp(w)
    f = w * ew - z
    wp1 = w + 1.0
    return w - f / (ew * wp1 - (w + 2.0) * f / (2.0 * wp1))


def _newton_log(w: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """One Newton step on ``w + ln w - ln z`` (``w > 0``; no overflow for huge ``z``)."""
    return w - (w + torch.log(w) - torch.log(z)) / (1.0 + 1.0 / w)


def _lambertw0_values(z: torch.Tensor) -> torch.Tensor:
    """Forward values (no autograd); see the module docstring.

    Whole-tensor masked iterations (no compaction: for the tensor sizes of a layer, indexing costs
    more than the arithmetic); at least ``_MIN_ITER`` steps, then until nothing moves by more than
    a few ulps (or ``_MAX_ITER``).
    """
    valid = torch.isfinite(z) & (z >= BRANCH_POINT)
    zs = torch.where(valid, z, torch.zeros_like(z))  # safe values everywhere
    w = _start(zs)
    big = zs > math.e
    # entries whose series start is exact to rounding need no iteration (the Halley step divides by w + 1)
    fixed = ((zs < -0.32) & (_branch_p(zs) < 1e-3)) | (zs == 0) | ~valid
    halley = ~fixed & ~big
    any_big = bool(big.any())
    zb = torch.where(big, zs, torch.full_like(zs, math.e))
    tol = 4.0 * torch.finfo(z.dtype).eps
    for it in range(_MAX_ITER):
        w_new = torch.where(halley, _halley(w, zs), w)
        if any_big:
            w_new = torch.where(big, _newton_log(torch.where(big, w, torch.ones_like(w)), zb), w_new)
        w_new = torch.where(torch.isfinite(w_new), torch.clamp(w_new, min=-1.0), w)  # stay on the principal branch
        # near the branch point W is ill-conditioned (dW/dz ~ 1/(1 + W)): allow proportionally more
        cond = torch.clamp(1.0 / (w_new + 1.0).abs().clamp(min=1e-300), min=1.0)
        moved = (w_new - w).abs() > tol * (1.0 + w_new.abs()) * cond
        w = w_new
        if it + 1 >= _MIN_ITER and not bool(moved.any()):
            break
    out = torch.where(valid, w, torch.full_like(w, math.nan))
    return torch.where(torch.isposinf(z), torch.full_like(out, math.inf), out)


class _LambertW0(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        w = _lambertw0_values(z)
        ctx.save_for_backward(w)
        return w

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        ok = torch.isfinite(w)
        ws = torch.where(ok, w, torch.zeros_like(w))
        dwdz = 1.0 / (torch.exp(ws) * (1.0 + ws))
        return torch.where(ok, grad * dwdz, torch.zeros_like(grad))


def lambertw0(z: torch.Tensor) -> torch.Tensor:
    """Principal-branch Lambert W of ``z`` (any shape, floating point, any device).

    Returns ``w`` with ``w e^w = z`` and ``w >= -1`` for ``z >= -1/e``; NaN where ``z < -1/e`` or
    ``z`` is NaN; ``+inf`` at ``z = +inf``. Differentiable: ``dW/dz = 1 / (e^W (1 + W))`` (infinite
    at the branch point ``z = -1/e``).
    """
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"z must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise ValueError(f"z must be a floating-point tensor, got dtype {z.dtype}")
    return _LambertW0.apply(z)
