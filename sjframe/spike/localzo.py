"""LocalZO: the two-point zeroth-order estimate of the spike derivative and its noise laws.

For a spike ``s = H(u)`` (``u = h - theta``) LocalZO replaces ``dH/du`` by the random estimate

    g = (1 / m) sum_{k=1..m} |z_k| 1{|u| < delta |z_k|} / (2 delta),

the two-point estimate ``z [H(u + delta z) - H(u - delta z)] / (2 delta)`` with ``z`` drawn from a
symmetric law ``lambda``, fresh at every forward pass. Only ``|z|`` enters, so we draw magnitudes.

**Expected surrogate.** With ``r = |u| / delta``,

    E[g](u) = (1/(2 delta)) * 2 int_r^inf z lambda(z) dz = (1/delta) int_r^inf z lambda(z) dz.

Writing ``G(r) = delta E[g](r delta) = int_r^inf z lambda(z) dz`` gives ``lambda(r) = -G'(r) / r``:
a target surrogate fixes the law. The five laws (``|z|`` survival ``S(r) = P(|z| > r)``):

* ``normal``: ``N(0, 1)``; ``S(r) = erfc(r / sqrt 2)``; ``E[g] = exp(-u^2/2delta^2)/(delta sqrt(2 pi))``.
* ``laplace``: scale ``1/sqrt 2``; ``S(r) = exp(-sqrt2 r)``;
  ``E[g] = (|u|/delta + 1/sqrt2) exp(-sqrt2 |u|/delta) / (2 delta)``.
* ``uniform``: ``U[-sqrt3, sqrt3]``; ``S(r) = 1 - r/sqrt3``; ``E[g] = (3 - u^2/delta^2)/(4 sqrt3 delta)`` on
  ``|u| < sqrt3 delta``.
* ``sigmoid``: target ``k sig(ku)(1 - sig(ku))``, ``k = c / delta``. Then ``G(r) = c sig(cr)(1 - sig(cr))``,
  ``lambda(r) = c^2 sig(1 - sig)(2 sig - 1) / r`` (``sig = sig(cr)``). Normalisation ``int lambda = 1``
  fixes ``c^2 = 1 / (2 I)``, ``I = int_0^inf sig(x)(1 - sig(x))(2 sig(x) - 1) / x dx``, so ``c = 1.5316``
  (the spec's 1.532; the original's ``sqrt(1/0.4262)`` = 1.5318). The variance is 1 for any ``c``
  (``E z^2 = 2 int_0^inf G = 1``). ``S`` has no closed form: it is integrated numerically.
* ``fast_sigmoid``: target ``1/(1 + k|u|)^2`` (``k = 100`` by default). Then in ``y = delta z`` the
  two-sided density is ``mu(y) = 2 k delta^2 / (|y| (1 + k|y|)^3)``: its mass diverges
  (logarithmically) at ``y = 0``, so **no probability law has exactly this expectation**. We keep
  the law on ``k|y| >= s0`` and drop the divergent core, with ``s0`` fixed by unit mass:
  ``4 k delta^2 J(s0) = 1``, ``J(s) = int_s^inf dt / (t (1 + t)^3) = -ln(1-v) - v - v^2/2``,
  ``v = 1/(1+s)``. The expectation is then exactly ``1/(1 + k|u|)^2`` for ``|u| >= s0/k`` and flat
  (``1/(1 + s0)^2``) below: for ``k = 100, delta = 0.05`` (``4 k delta^2 = 1``) ``s0 = 0.111``, i.e.
  ``|u| < 1.1e-3``, where the estimate's mean is 0.81 instead of up to 1 (``delta = 0.025``:
  ``s0 = 0.0041``, mean 0.992 on ``|u| < 4e-5``). A larger ``delta`` widens
  the flat core (``E[g](0) = 1/(1+s0)^2``, ``s0`` from :func:`fast_sigmoid_core`). This law does
  not have unit variance: ``E z^2 = (2/k) (1 + O(s0))`` (0.02 for ``k = 100``).

**Sampling.** ``|z| = Q(p)`` with ``p`` uniform in ``(0, 1]`` and ``Q`` the inverse of the survival
(``S(Q(p)) = p``). Laplace: ``Q = -ln(p)/sqrt2``; uniform: ``Q = sqrt3 (1 - p)``; normal, sigmoid and
fast_sigmoid: ``Q`` tabulated (float64, exact inversion) on a uniform grid of ``w = -ln p`` in
``[0, W_MAX]`` and linearly interpolated (relative error < 1e-5). The same table is handed to the
CUDA kernel, so the torch reference and the kernels share one definition.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from cupy_neurons.zo import DIST_CODES, TABLE_INTERVALS, TABULATED, W_MAX
from sjframe.spike.philox import philox_uniform
from sjframe.spike.surrogate import Surrogate, get_surrogate

__all__ = [
    "DIST_CODES",
    "LOCALZO_DISTRIBUTIONS",
    "TABLE_INTERVALS",
    "W_MAX",
    "abs_z_from_uniform",
    "device_table",
    "draw_key",
    "draw_keys",
    "expected_estimate",
    "expected_surrogate",
    "fast_sigmoid_core",
    "localzo_estimate",
    "localzo_estimate_kernel",
    "mean_abs_z",
    "quantile_table",
    "sigmoid_c",
]

LOCALZO_DISTRIBUTIONS = ("normal", "laplace", "uniform", "sigmoid", "fast_sigmoid")
# DIST_CODES (the laws' integer codes in the kernels), TABULATED, TABLE_INTERVALS and W_MAX (the table's
# layout, p >= 2^-24 for both generators so w = -ln p <= 24 ln 2 = 16.64) are the kernels' argument
# conventions: defined once in cupy_neurons/zo.py, imported here.


# ----------------------------------------------------------------------------------- laws
@functools.lru_cache(maxsize=1)
def sigmoid_c() -> float:
    """``c`` of the sigmoid law: ``c^2 = 1 / (2 int_0^inf sig(1-sig)(2sig-1)/x dx)`` (= 1.53177)."""
    from scipy.integrate import quad
    from scipy.special import expit

    def f(x: float) -> float:
        if x < 1e-6:
            return 0.125 - x * x / 48.0  # series of sig(1-sig)(2sig-1)/x at 0: 1/8 - x^2/48
        s = expit(x)
        return s * (1.0 - s) * (2.0 * s - 1.0) / x

    integral = quad(f, 0.0, 60.0, limit=500, epsabs=1e-15, epsrel=1e-13)[0]
    return 1.0 / math.sqrt(2.0 * integral)


def _j_fast(s: np.ndarray) -> np.ndarray:
    """``J(s) = int_s^inf dt / (t (1+t)^3) = ln(1 + 1/s) - v - v^2/2 = sum_{n>=3} v^n / n``, ``v = 1/(1+s)``.

    The closed form for ``v >= 1/4``, the series (no cancellation) for ``v < 1/4``.
    """
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    v = 1.0 / (1.0 + s)
    out = np.empty_like(s)
    big = v >= 0.25
    with np.errstate(divide="ignore", over="ignore"):
        out[big] = np.log1p(1.0 / s[big]) - v[big] - 0.5 * v[big] ** 2
    vs = v[~big]
    out[~big] = sum(vs**n / n for n in range(3, 30))
    return out


@functools.lru_cache(maxsize=64)
def fast_sigmoid_core(delta: float, k: float) -> float:
    """``s0`` of the fast-sigmoid law: ``4 k delta^2 J(s0) = 1`` (the law lives on ``k|y| >= s0``)."""
    target = 1.0 / (4.0 * k * delta * delta)
    lo, hi = 1e-300, 1e12  # J decreasing from +inf to 0: bisection in log s
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if _j_fast(np.array(mid))[0] > target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def _survival_inverse_normal(p: np.ndarray) -> np.ndarray:
    from scipy.special import erfcinv

    return math.sqrt(2.0) * erfcinv(p)


def _survival_inverse_sigmoid(p: np.ndarray) -> np.ndarray:
    """Invert ``S(r) = P(|z| > r)`` of the sigmoid law (numerical integral of the |z| density)."""
    c = sigmoid_c()
    x = np.linspace(0.0, 60.0, 600_001)  # x = c r
    sig = 1.0 / (1.0 + np.exp(-x))
    dens = np.empty_like(x)  # density of x = c|z|: 2 c^2 sig(1-sig)(2sig-1) / x
    dens[1:] = 2.0 * c * c * sig[1:] * (1.0 - sig[1:]) * (2.0 * sig[1:] - 1.0) / x[1:]
    dens[0] = 2.0 * c * c * 0.125
    h = x[1] - x[0]
    # trapezoid cells (relative error ~1e-8 at this step), survival summed from the top
    cells = h * (dens[:-1] + dens[1:]) / 2.0
    surv = np.concatenate([np.cumsum(cells[::-1])[::-1], [0.0]])
    surv = surv / surv[0]
    w_of_x = -np.log(np.maximum(surv, 1e-300))
    r = np.interp(-np.log(p), w_of_x, x) / c
    return r


def _survival_inverse_fast(p: np.ndarray, delta: float, k: float) -> np.ndarray:
    """Invert ``S(s) = J(s) / J(s0)`` for ``s = k |y| = k delta |z|`` (bisection in log s)."""
    s0 = fast_sigmoid_core(delta, k)
    target = _j_fast(np.array(s0))[0] * p
    lo = np.full_like(p, s0)
    hi = np.full_like(p, 1e9)
    for _ in range(72):  # ln(1e9 / s0) < 40: 72 halvings leave < 1e-20 relative
        mid = np.sqrt(lo * hi)
        above = _j_fast(mid) > target
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return np.sqrt(lo * hi) / (k * delta)


@functools.lru_cache(maxsize=64)
def _table_array(distribution: str, delta: float, k: float) -> np.ndarray:
    w = np.linspace(0.0, W_MAX, TABLE_INTERVALS + 1)
    p = np.exp(-w)
    if distribution == "normal":
        q = _survival_inverse_normal(p)
    elif distribution == "sigmoid":
        q = _survival_inverse_sigmoid(p)
    elif distribution == "fast_sigmoid":
        q = _survival_inverse_fast(p, delta, k)
    else:
        raise ValueError(f"distribution {distribution!r} is not tabulated; tabulated: {list(TABULATED)}")
    out = q.astype(np.float32)
    out.setflags(write=False)
    return out


def quantile_table(distribution: str, delta: float = 0.05, k: float = 100.0) -> torch.Tensor:
    """``Q(w_i)`` (float32 ``[TABLE_INTERVALS + 1]``) at ``w_i = i W_MAX / TABLE_INTERVALS``, ``w = -ln p``.

    ``delta`` and ``k`` matter only for ``fast_sigmoid`` (the law depends on ``4 k delta^2``).
    """
    if distribution not in TABULATED:
        raise ValueError(f"distribution {distribution!r} is not tabulated; tabulated: {list(TABULATED)}")
    return torch.from_numpy(_table_array(distribution, *_table_key(distribution, delta, k)).copy())


def _table_key(distribution: str, delta: float, k: float) -> tuple[float, float]:
    return (float(delta), float(k)) if distribution == "fast_sigmoid" else (0.0, 0.0)


def device_table(
    distribution: str, delta: float, k: float, device: torch.device | str, dtype: torch.dtype = torch.float32
) -> torch.Tensor | None:
    """:func:`quantile_table` on ``device`` in ``dtype``, cached per (law, delta, k, device, dtype); None for the
    laws without a table (laplace, uniform).

    The same tensor is returned on every call (READ-ONLY: shared): the kernels and the torch reference
    read it without a host-to-device copy per call (a pageable copy per call costs a synchronisation, and
    would be illegal under CUDA-graph capture: call once before a capture to fill the cache).
    """
    if distribution not in TABULATED:
        if distribution not in LOCALZO_DISTRIBUTIONS:
            raise ValueError(f"unknown LocalZO distribution {distribution!r}; valid: {list(LOCALZO_DISTRIBUTIONS)}")
        return None
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _device_table(distribution, *_table_key(distribution, delta, k), device, dtype)


@functools.lru_cache(maxsize=64)
def _device_table(distribution: str, delta: float, k: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(_table_array(distribution, delta, k).copy()).to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------------- sampling
def abs_z_from_uniform(p: torch.Tensor, distribution: str, table: torch.Tensor | None) -> torch.Tensor:
    """``|z| = Q(p)`` for ``p`` uniform in ``(0, 1]`` (float32 math, as in the CUDA kernel)."""
    if distribution == "laplace":
        return -torch.log(p) * (1.0 / math.sqrt(2.0))
    if distribution == "uniform":
        return (1.0 - p) * math.sqrt(3.0)
    if table is None:
        raise ValueError(f"distribution {distribution!r} needs its quantile table")
    pos = (-torch.log(p)).clamp(0.0, W_MAX) * (TABLE_INTERVALS / W_MAX)
    i0 = pos.floor().clamp(max=TABLE_INTERVALS - 1)
    frac = pos - i0
    i0 = i0.long()
    lo = table[i0]
    hi = table[i0 + 1]
    return lo + frac * (hi - lo)


def localzo_estimate(
    u: torch.Tensor,
    distribution: str,
    delta: float,
    samples: int,
    k: float = 100.0,
    rng: str = "torch",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The LocalZO estimate ``g`` (same shape and dtype as ``u``), fresh noise from ``rng``.

    ``rng='torch'``: ``p = 1 - torch.rand`` per sample (``generator`` or torch's global RNG).
    ``rng='philox'``: a 64-bit key is drawn from ``generator``/global RNG, then
    ``p = philox_uniform(numel, key, stream=sample)`` (bit-identical to the CUDA kernel given the key).
    """
    key = None
    if rng == "philox":
        key = draw_key(generator)
    return localzo_estimate_with(u, distribution, delta, samples, k, rng, generator, key)


def draw_key(generator: torch.Generator | None) -> int:
    """A fresh 62-bit Philox key from ``generator`` (on its device) or torch's global RNG."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def draw_keys(generator: torch.Generator | None, count: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``count`` fresh Philox keys (int64 ``[count]`` on ``device``, default the generator's), bit for bit the
    keys of ``count`` successive :func:`draw_key` calls, leaving the generator in the same state.

    No key passes through a Python int, so nothing waits for the device:

    * CPU generator (or torch's global RNG, ``generator=None``): one ``torch.randint`` call (the CPU
      generator draws the elements of one call in order, as one call each), into pinned memory when
      ``device`` is a GPU, copied with ``non_blocking=True`` (torch's pinned-memory cache keeps the buffer
      until the copy is done);
    * CUDA generator: one size-1 ``torch.randint`` per key on the device (a CUDA generator advances its
      Philox offset per call, so one call of ``count`` would give other keys than ``draw_key``'s), then
      concatenated there: no synchronisation, no host copy.
    """
    if count < 0:
        raise ValueError(f"draw_keys: count must be >= 0, got {count}")
    source = generator.device if generator is not None else torch.device("cpu")
    target = torch.device(device) if device is not None else source
    if source.type != "cpu":
        if count == 0:
            return torch.empty(0, dtype=torch.int64, device=target)
        keys = torch.cat([torch.randint(0, 2**62, (1,), generator=generator, device=source) for _ in range(count)])
        return keys.to(target, non_blocking=True)
    pinned = target.type == "cuda"
    keys = torch.empty(count, dtype=torch.int64, pin_memory=pinned)
    torch.randint(0, 2**62, (count,), generator=generator, out=keys)
    return keys.to(target, non_blocking=True) if target.type != "cpu" else keys


def localzo_estimate_with(
    u: torch.Tensor, distribution: str, delta: float, samples: int, k: float, rng: str,
    generator: torch.Generator | None, key: int | None,
) -> torch.Tensor:
    """:func:`localzo_estimate` with an explicit philox ``key`` (the kernel's inputs)."""
    if distribution not in LOCALZO_DISTRIBUTIONS:
        raise ValueError(f"unknown LocalZO distribution {distribution!r}; valid: {list(LOCALZO_DISTRIBUTIONS)}")
    if rng not in ("torch", "philox"):
        raise ValueError(f"rng must be 'torch' or 'philox', got {rng!r}")
    table = device_table(distribution, delta, k, u.device)
    ua = u.detach().abs().to(torch.float32)
    acc = torch.zeros_like(ua)
    for sample in range(samples):
        if rng == "torch":
            p = 1.0 - torch.rand(u.shape, device=u.device, dtype=torch.float32, generator=generator)
        else:
            assert key is not None
            p = philox_uniform(u.numel(), key, sample, device=u.device).reshape(u.shape)
        z = abs_z_from_uniform(p, distribution, table)
        acc = acc + torch.where(ua < delta * z, z, torch.zeros_like(z))
    return (acc * (1.0 / (2.0 * delta * samples))).to(u.dtype)


def localzo_estimate_kernel(
    u: torch.Tensor, distribution: str, delta: float, samples: int, k: float, key: int
) -> torch.Tensor:
    """:func:`localzo_estimate_with` (``rng='philox'``, the same ``key``) computed by the CUDA kernel
    (``cupy_neurons/sparse/s3gd.cu``; the host build of the same text on CPU tensors)."""
    from cupy_neurons.sparse.kernels import localzo_estimate_kernel as kernel

    if distribution not in DIST_CODES:
        raise ValueError(f"unknown LocalZO distribution {distribution!r}; valid: {list(DIST_CODES)}")
    return kernel(u, DIST_CODES[distribution], delta, samples, key, device_table(distribution, delta, k, u.device))


# ----------------------------------------------------------------------------------- expectations
def expected_surrogate(distribution: str, delta: float, k: float = 100.0) -> Surrogate:
    """The surrogate (``sjframe.spike.surrogate``) that the estimate's mean equals (the spec's table)."""
    if distribution == "normal":
        return get_surrogate("gaussian", sigma=delta)
    if distribution == "laplace":
        return get_surrogate("laplace", delta=delta)
    if distribution == "uniform":
        return get_surrogate("uniform", delta=delta)
    if distribution == "sigmoid":
        return get_surrogate("sigmoid", alpha=sigmoid_c() / delta)
    if distribution == "fast_sigmoid":
        return get_surrogate("fast_sigmoid", rho=k)
    raise ValueError(f"unknown LocalZO distribution {distribution!r}; valid: {list(LOCALZO_DISTRIBUTIONS)}")


def expected_estimate(u: torch.Tensor, distribution: str, delta: float, k: float = 100.0) -> torch.Tensor:
    """Exact mean of the implemented estimate: :func:`expected_surrogate`, with the fast-sigmoid
    core flattened to ``1/(1+s0)^2`` on ``|u| < s0/k``."""
    g = expected_surrogate(distribution, delta, k).derivative(u)
    if distribution == "fast_sigmoid":
        s0 = fast_sigmoid_core(float(delta), float(k))
        g = torch.where(u.abs() < s0 / k, torch.full_like(g, 1.0 / (1.0 + s0) ** 2), g)
    return g


def mean_abs_z(distribution: str, delta: float = 0.05, k: float = 100.0) -> float:
    """``E|z|``: the fair S3GD band is ``b_th = delta E|z|`` (spec section 3).

    normal ``sqrt(2/pi)``; laplace ``1/sqrt2``; uniform ``sqrt3/2``; sigmoid ``c/2`` (from
    ``int_0^inf sig(1-sig)(2sig-1) dx = 1/4``); fast_sigmoid ``2 delta / (1 + s0)^2``.
    """
    if distribution == "normal":
        return math.sqrt(2.0 / math.pi)
    if distribution == "laplace":
        return 1.0 / math.sqrt(2.0)
    if distribution == "uniform":
        return math.sqrt(3.0) / 2.0
    if distribution == "sigmoid":
        return sigmoid_c() / 2.0
    if distribution == "fast_sigmoid":
        return 2.0 * delta / (1.0 + fast_sigmoid_core(float(delta), float(k))) ** 2
    raise ValueError(f"unknown LocalZO distribution {distribution!r}; valid: {list(LOCALZO_DISTRIBUTIONS)}")
