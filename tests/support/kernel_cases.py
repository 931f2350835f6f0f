"""Kernel-versus-reference comparison used by the kernel tests (CPU host build and GPU).

A :class:`Case` names a neuron variant, a shape ``[T, B, *F]``, a storage dtype, a surrogate,
the reset flag and optionally a gradient mode (``sparse`` or ``localzo``; default dense).
:func:`run_case` draws inputs (input sequence, every initial state and every raw parameter, all
requiring grad), runs the kernel path (``run_<neuron>`` of ``sjframe/neurons/<neuron>/kernel.py``) and the torch
reference (``<neuron>_multi_step`` of ``reference.py``) on the same values, applies one random-weighted
loss over **every** output (spikes, ``h_seq`` and each final state), and returns both outputs and
both gradient lists (input, initial states, raw parameters).

Reference semantics per dtype:

* float64 / float32: the torch core in the same dtype, with the layer's spike function.
* LocalZO: both paths draw their Philox keys from generators seeded alike (one key per step, as the
  reference with ``rng: philox``), so they use the same noise. The reference spike function takes
  its estimate ``g`` from the kernels' estimate code after checking it elementwise against the torch
  estimate (:func:`check_localzo_estimate`), so the comparison of the neuron kernels holds to the
  dtype's tolerance on every CPU (see Portability below).
* float16 / bfloat16: the kernels keep states in float32 and round only what they store, and
  take the spike of the *stored* (rounded) potential so that the backward pass recomputes the
  same spike. The reference is the torch core in float32 on the rounded inputs with a spike
  function that rounds ``h`` to the storage dtype before the threshold (gradient straight
  through the rounding); the remaining differences are the rounding of stored values.

:func:`check_case` compares with dtype-specific tolerances (:data:`TOLERANCES`) and also checks
that the case is informative (some spikes, not all; non-zero reference gradients), so a typo in
a kernel cannot pass by producing silence.

Portability (issue #15): the LocalZO estimate goes through ``log``, which the kernels take from the C
library (host build) or CUDA and the torch reference from torch's own (vectorised) code. Both are
within an ulp of the exact logarithm, but not equal to each other, and which elements differ depends
on the CPU's SIMD level. So no check here asks two ``log`` implementations for bit equality:

* :func:`check_localzo_estimate` compares an estimate with the torch one elementwise, within an ulp
  bound derived from the arithmetic (:func:`localzo_z_rel_error`, :func:`localzo_estimate_ulps`),
  and handles the estimate's one discontinuity (the indicator ``|u| < delta |z|``) by an argument:
  a sample whose threshold lies within the bound of ``|u|`` may be counted or not, and the estimate
  must then equal one of the resulting candidates within the bound.
* In LocalZO cases :func:`run_case`'s reference core takes its estimate from the kernels' estimate
  code (:func:`localzo_estimate_kernel`, same Philox key, after checking it as above against the
  torch estimate), so the neuron kernels are compared with the reference at the dtype's ordinary
  tolerance, with nothing transcendental left between them.
* :func:`ulp` / :func:`ulp_tol` / :func:`assert_close_ulps` state tolerances in ulps of a dtype.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cupy_neurons import build, kernels
from sjframe.neurons.adlif import adlif_multi_step, run_adlif
from sjframe.neurons.culif import culif_multi_step, run_culif
from sjframe.neurons.lif import lif_multi_step, run_lif
from sjframe.spike import GradientSpec, make_spike_fn
from sjframe.spike import localzo as lz
from sjframe.spike.philox import philox_uniform
from sjframe.spike.surrogate import Surrogate, get_surrogate

__all__ = [
    "LOG_ULPS", "TOLERANCES", "VARIANTS", "Case", "assert_close_ulps", "case_specs", "check_case",
    "check_localzo_estimate", "copy_kernel_sources", "kernel_localzo_estimate", "localzo_estimate_ulps",
    "localzo_z_rel_error", "run_case", "ulp", "ulp_tol",
]

# variant -> (kernel source, parameter layout): "fixed" floats, "layer" scalars, "neuron" per feature
VARIANTS: dict[str, tuple[str, str]] = {
    "culif": ("culif", "fixed"),
    "pculif": ("culif", "layer"),
    "pculif_neuron": ("culif", "neuron"),
    "adlif": ("adlif", "neuron"),
    "adlif_layer": ("adlif", "layer"),
    "lif": ("lif", "fixed"),
    "lif_beta": ("lif", "neuron"),
}

# dtype -> (max |error| of outputs, of gradients, relative to max(1, max |reference|); max spike mismatch fraction)
TOLERANCES: dict[torch.dtype, tuple[float, float, float]] = {
    torch.float64: (1e-12, 1e-11, 0.0),
    torch.float32: (2e-5, 5e-5, 0.0),
    torch.float16: (2e-3, 1e-2, 2e-3),
    torch.bfloat16: (1.6e-2, 6e-2, 5e-3),
}

# LocalZO cases use these tolerances too: their reference core takes the kernels' estimate (checked
# elementwise against the torch estimate by check_localzo_estimate), see _KernelEstimateSpike.

THETA = 1.0


# ------------------------------------------------------------------------------------ ulps
def ulp(x: Tensor, dtype: torch.dtype) -> Tensor:
    """Elementwise ulp of ``dtype`` at ``|x|`` rounded to ``dtype`` (float64 tensor): the spacing
    ``2^(e - p + 1)`` of the binade ``[2^e, 2^(e+1))`` holding it (the subnormal spacing near 0).

    For any ``x``: ``2^-p |x| < ulp(x) <= 2^(1-p) |x|`` (``p`` = significand bits, 24 for float32),
    so a relative error ``r`` (in units of the unit roundoff ``2^-p``) is below ``r`` ulps.
    """
    fi = torch.finfo(dtype)
    a = x.detach().abs().to(dtype).double()
    _mant, exp = torch.frexp(a)  # a = mant 2^exp, mant in [1/2, 1): binade [2^(exp-1), 2^exp)
    spacing = torch.ldexp(torch.full_like(a, fi.eps), exp - 1)
    return spacing.clamp(min=fi.smallest_normal * fi.eps)


def ulp_tol(dtype: torch.dtype, k: float) -> float:
    """``k`` ulps of ``dtype`` at 1 (``k eps``): a relative tolerance of ``k`` ulps."""
    return k * torch.finfo(dtype).eps


def assert_close_ulps(actual: Tensor, expected: Tensor, k: float, dtype: torch.dtype, what: str = "") -> None:
    """Elementwise ``|actual - expected| <= k ulp_dtype(expected)`` (exact where ``k = 0``)."""
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)} != {tuple(e.shape)}"
    err = (a - e).abs()
    bound = k * ulp(e, dtype)
    bad = err > bound
    if bool(bad.any()):
        i = int(bad.reshape(-1).nonzero()[0])
        worst = float((err / ulp(e, dtype)).max())
        raise AssertionError(f"{what}: {int(bad.sum())} of {a.numel()} elements beyond {k} ulps of {dtype} "
                             f"(worst {worst:.2f} ulps; e.g. flat {i}: {float(a.reshape(-1)[i])!r} vs "
                             f"{float(e.reshape(-1)[i])!r})")


# ------------------------------------------------------------------------------------ LocalZO estimate bounds
# Accuracy of each float32 log the estimate may go through: the C library's logf (glibc: max known
# error 1 ulp on x86_64), torch's log (SLEEF's 1.0-ulp routines on AVX2/AVX512; the C library on the
# scalar 'default' capability) and CUDA's logf (1 ulp, CUDA programming guide). Measured on 20 000
# Philox uniforms: torch 0.84 ulp, glibc 0.77 ulp, and they differ on 8 % of them.
LOG_ULPS = 1.0


def localzo_z_rel_error(distribution: str, delta: float = 0.05, k: float = 100.0) -> float:
    """Bound on ``|z_a - z_b| / |z_b|`` in units of ``u = 2^-24`` (float32 unit roundoff) between two
    evaluations of ``|z| = Q(p)`` (localzo.cuh ``sj_localzo_abs_z`` / ``localzo.abs_z_from_uniform``) on
    the *same* ``p`` that differ only in their ``log`` (each within :data:`LOG_ULPS` of exact).

    Derivation (``ulp(y) <= 2u|y|``; every other operation is one IEEE rounding, ``<= u`` relative):

    * ``uniform``: ``p = (2j + 1) 2^-24`` so ``1 - p`` is exact and ``fl((1 - p) sqrt3)`` is the same
      correctly rounded product on both sides: 0 (bit-identical; no log).
    * ``laplace``: ``L = log p`` differs by ``<= 2 LOG_ULPS ulp(L) <= 4 LOG_ULPS u |L|``; times the
      constant ``1/sqrt2``, rounded once on each side: ``4 LOG_ULPS + 2``.
    * tabulated (normal, sigmoid, fast_sigmoid): ``pos = fl(-L w_scale)`` differs by ``(4 LOG_ULPS + 2) u
      pos``. The interpolant ``z(pos)`` is continuous (a cell boundary crossed by the error changes
      nothing but the formula) and piecewise linear, so ``|dz| <= slope dpos <= E (4 LOG_ULPS + 2) u z``
      with ``E = max slope pos / z`` over the table (each cell's ratio is monotone in ``pos``: its
      maximum is at an endpoint; ``E <= 1`` when every chord passes above the origin). Evaluating
      ``lo + frac (hi - lo)`` (``frac = pos - floor(pos)`` exact, ``hi - lo`` the same on both sides,
      ``0 <= frac (hi - lo) <= z``) rounds twice, ``<= 2u z`` per side: ``+ 4``.
    """
    pos_rel = 4.0 * LOG_ULPS + 2.0
    if distribution == "uniform":
        return 0.0
    if distribution == "laplace":
        return pos_rel
    t = lz.quantile_table(distribution, delta, k).double()
    slope = t[1:] - t[:-1]
    i = torch.arange(slope.numel(), dtype=torch.float64)
    ratios = []
    for pos, z in ((i, t[:-1]), (i + 1.0, t[1:])):
        nz = z > 0
        ratios.append(((slope * pos).abs()[nz] / z[nz]).max())
    elasticity = float(torch.stack(ratios).max())
    return elasticity * pos_rel + 4.0


def localzo_estimate_ulps(distribution: str, samples: int, delta: float = 0.05, k: float = 100.0) -> float:
    """Bound, in float32 ulps of the torch estimate ``g``, between two estimates on the same Philox
    draws that count the same samples and differ only in their ``log``.

    ``g = fl(fl(sum of counted z) scale)``: the sum has positive terms, so the ``z`` error
    (:func:`localzo_z_rel_error`, ``Z u``) stays ``Z u`` of the sum; ``samples - 1`` additions
    (the first adds to 0) and the product with ``scale`` (the same float32 on both sides) round once
    each per side: ``Z + 2 samples`` in units of ``u``, which is below that many ulps of ``g``. The
    uniform law has no log: the same float32 operations on the same values, so 0 (bit-identical).
    """
    z = localzo_z_rel_error(distribution, delta, k)
    return 0.0 if z == 0.0 else z + 2.0 * samples


def check_localzo_estimate(g: Tensor, u: Tensor, distribution: str, delta: float, samples: int, k: float,
                           key: int, what: str = "", storage: torch.dtype | None = None) -> dict[str, int]:
    """Assert that ``g`` (an implementation's LocalZO estimate of ``u`` under the Philox ``key``, stored
    in ``storage``, default ``g.dtype``) is the torch estimate ``localzo_estimate_with(u, ..., 'philox', key)`` up to its
    ``log``; return counts (elements, non-zero estimates, samples at the discontinuity).

    The Philox uniforms are the integer words' (``philox_uniform``, the kernels' stream, exactly).
    Discontinuity: sample ``s`` counts iff ``|u| < fl(delta z_s)``; with ``z`` known to ``Z u``
    (:func:`localzo_z_rel_error`) the two thresholds differ by ``<= (Z + 2) ulp`` (``delta z`` rounded
    on each side), so a sample whose threshold is farther than that from ``|u|`` is counted alike by
    both; one closer may be counted by either. ``g`` must be within :func:`localzo_estimate_ulps` of the
    estimate of *some* choice of those undecided samples (including the torch estimate's own choice).
    Storage rounding: both are float32 estimates rounded to ``storage``; rounding moves each by half
    an ulp of ``storage`` at most, so 16-bit storage adds one ulp of ``storage`` (taken at ``2|g|``,
    the larger binade if the two round across a power of two); float64 storage adds nothing.
    """
    u = u.detach()
    store = storage or g.dtype
    table = lz.quantile_table(distribution, delta, k).to(u.device) if distribution in lz.TABULATED else None
    ua = u.abs().to(torch.float32).reshape(-1)
    z_rel = localzo_z_rel_error(distribution, delta, k)
    g_ulps = localzo_estimate_ulps(distribution, samples, delta, k)
    zs, counted, undecided = [], [], []
    for s in range(samples):
        p = philox_uniform(ua.numel(), key, s, device=u.device)
        z = lz.abs_z_from_uniform(p, distribution, table)
        thr = delta * z  # the reference's float32 product
        zs.append(z)
        counted.append(ua < thr)
        undecided.append((ua.double() - thr.double()).abs() <= (z_rel + 2.0) * ulp(thr, torch.float32).to(u.device)
                         if z_rel else torch.zeros_like(ua, dtype=torch.bool))
    scale = 1.0 / (2.0 * delta * samples)
    got = g.detach().reshape(-1).double()
    ok = torch.zeros_like(ua, dtype=torch.bool)
    g_ref = lz.localzo_estimate_with(u, distribution, delta, samples, k, "philox", None, key)
    any_undecided = any(bool(m.any()) for m in undecided)
    # choice None: the reference's own decisions; an int: its bit s decides every undecided sample s
    for choice in [None, *(range(2**samples) if any_undecided else ())]:
        acc = torch.zeros_like(ua)
        for s in range(samples):
            take = counted[s] if choice is None else torch.where(
                undecided[s], torch.full_like(counted[s], bool((choice >> s) & 1)), counted[s])
            acc = acc + torch.where(take, zs[s], torch.zeros_like(zs[s]))
        cand32 = acc * scale
        if choice is None:  # the reference's own choice: this is the torch estimate, rebuilt exactly
            assert torch.equal(cand32.to(u.dtype).reshape(u.shape), g_ref), f"{what}: estimate not rebuilt"
        cand = cand32.to(store).double()
        tol = g_ulps * ulp(cand32, torch.float32).to(u.device)
        if store in (torch.float16, torch.bfloat16):
            tol = tol + ulp(2.0 * cand32.double(), store).to(u.device)
        ok |= (got - cand).abs() <= tol
    if not bool(ok.all()):
        i = int((~ok).nonzero()[0])
        raise AssertionError(
            f"{what}: LocalZO estimate ({distribution}, {samples} samples) of {int((~ok).sum())} of {ok.numel()} "
            f"elements beyond {g_ulps:g} float32 ulps of every candidate; e.g. flat {i}: |u| = {float(ua[i])!r}, "
            f"g = {float(got[i])!r}, torch {float(g_ref.reshape(-1)[i])!r}")
    return {"elements": ua.numel(), "nonzero": int((g_ref != 0).sum()),
            "undecided": int(sum(int(m.sum()) for m in undecided))}


def kernel_localzo_estimate(u: Tensor, distribution: str, delta: float, samples: int, k: float, key: int) -> Tensor:
    """The kernels' LocalZO estimate of ``u`` (``localzo_estimate_kernel``: the same localzo.cuh as the
    fused neuron kernels), after :func:`check_localzo_estimate` against the torch estimate."""
    g = lz.localzo_estimate_kernel(u, distribution, delta, samples, k, key)
    check_localzo_estimate(g, u, distribution, delta, samples, k, key, "kernel estimate")
    return g


class _KernelEstimateSpike(torch.autograd.Function):
    """The reference spike of LocalZO cases: ``sjframe.spike._LocalZOSpike`` (``H(u)``; one key
    drawn per call from the generator; backward ``grad * g``) with ``g`` from
    :func:`kernel_localzo_estimate` instead of the torch estimate (checked against it there)."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, spec: GradientSpec, generator: torch.Generator | None) -> Tensor:
        key = lz.draw_key(generator)
        g = kernel_localzo_estimate(u, spec.distribution, spec.delta, spec.samples, spec.k, key)
        ctx.save_for_backward(g)
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (g,) = ctx.saved_tensors
        return grad * g, None, None


@dataclass(frozen=True)
class Case:
    """One comparison: variant (key of :data:`VARIANTS`), shape, dtype, surrogate, reset flag."""

    variant: str
    T: int
    B: int
    feat: tuple[int, ...]
    dtype: torch.dtype = torch.float64
    surrogate: Surrogate = get_surrogate()
    detach_reset: bool = True
    seed: int = 0
    gradient: GradientSpec | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; valid: {sorted(VARIANTS)}")
        if self.gradient is not None and self.gradient.mode == "localzo" and self.gradient.rng != "philox":
            raise ValueError("a LocalZO case needs rng='philox' (the kernels' noise) to compare with the reference")

    @property
    def localzo(self) -> bool:
        return self.gradient is not None and self.gradient.mode == "localzo"

    @property
    def neuron(self) -> str:
        return VARIANTS[self.variant][0]

    def __str__(self) -> str:
        dt = str(self.dtype).removeprefix("torch.")
        band = "" if self.surrogate.band is None else f"|band{self.surrogate.band}"
        grad = self.gradient
        sur = f"{self.surrogate.name}{band}"
        if grad is not None and grad.mode == "sparse":
            sur += f"|sparse{grad.b_th}"
        elif self.localzo:
            sur = f"localzo|{grad.distribution}|d{grad.delta}|m{grad.samples}"
        return (f"{self.variant}-T{self.T}-B{self.B}-F{'x'.join(map(str, self.feat))}-{dt}-"
                f"{sur}-{'detach' if self.detach_reset else 'nodetach'}")


def case_specs(cases: list[Case]) -> list[tuple[Any, tuple[Any, ...]]]:
    """The (specialisation, kernels) items the cases need (for one host bundle build)."""
    seen: dict[Any, tuple[Any, ...]] = {}
    for c in cases:
        sur = c.surrogate if c.gradient is None else c.gradient.surrogate_for(c.surrogate)
        spec = kernels.specialisation(c.neuron, str(c.dtype).removeprefix("torch."), sur.cuda_expr("u"),
                                      c.detach_reset, c.localzo)
        seen[spec] = kernels.NEURON_KERNELS[c.neuron]
    return list(seen.items())


def _inputs(case: Case, device: torch.device) -> dict[str, Any]:
    """Random leaves (CPU generator, then moved): x, states, raw parameters (float32/64)."""
    g = torch.Generator().manual_seed(case.seed)
    store = case.dtype
    pdt = torch.float64 if store == torch.float64 else torch.float32
    shape = (case.T, case.B, *case.feat)
    state_shape = shape[1:]

    def leaf(t: Tensor, dtype: torch.dtype) -> Tensor:
        return t.to(device=device, dtype=dtype).requires_grad_()

    scale, offset = {"culif": (1.5, 0.6), "adlif": (2.5, 1.0), "lif": (0.8, 0.3)}[case.neuron]
    x = leaf(torch.randn(shape, generator=g, dtype=torch.float64) * scale + offset, store)
    if case.neuron == "culif":
        states = [leaf(torch.randn(state_shape, generator=g, dtype=torch.float64) * 0.4, store) for _ in range(2)]
    elif case.neuron == "adlif":
        states = [leaf(torch.randn(state_shape, generator=g, dtype=torch.float64) * 0.4, store) for _ in range(3)]
        states.append(leaf((torch.rand(state_shape, generator=g) < 0.3).double(), store))
    else:
        states = [leaf(torch.randn(state_shape, generator=g, dtype=torch.float64) * 0.6, store) for _ in range(2)]
    layout = VARIANTS[case.variant][1]
    pshape = case.feat if layout == "neuron" else (1,)
    n_params = {"culif": 2, "adlif": 4, "lif": 1}[case.neuron]
    raw: list[Tensor] = []
    if layout != "fixed":
        for k in range(n_params):
            if case.neuron == "adlif" and k >= 2:  # a, b in [0, 1]
                raw.append(leaf(torch.rand(pshape, generator=g, dtype=torch.float64), pdt))
            else:  # raw decay logits around sigmoid^-1(0.6 .. 0.9)
                raw.append(leaf(torch.rand(pshape, generator=g, dtype=torch.float64) * 1.8 + 0.4, pdt))
    weights_g = torch.Generator().manual_seed(case.seed + 1000)
    return {"x": x, "states": states, "raw": raw, "wgen": weights_g}


def _params(case: Case, raw: list[Tensor]) -> list[Any]:
    if case.variant in ("culif",):
        return [math.exp(-1 / 5.0), math.exp(-1 / 3.0)]
    if case.variant == "lif":
        return [math.exp(-1 / 8.0)]
    if case.neuron == "adlif":
        return [torch.sigmoid(raw[0]), torch.sigmoid(raw[1]), raw[2], raw[3]]
    return [torch.sigmoid(r) for r in raw]


def _key_generator(case: Case) -> torch.Generator:
    """The generator of the LocalZO keys (seeded alike for the kernel and the reference)."""
    return torch.Generator().manual_seed(case.seed + 2000)


def _reference_spike_fn(case: Case) -> Any:
    if case.localzo:  # the kernels' estimate (checked against the torch one), same keys as the reference
        gen, spec = _key_generator(case), case.gradient
        base = lambda u: _KernelEstimateSpike.apply(u, spec, gen)  # noqa: E731
    else:
        base = make_spike_fn(case.surrogate, case.gradient, generator=_key_generator(case))
    if case.dtype in (torch.float32, torch.float64):
        return base
    store = case.dtype

    def spike(u: Tensor) -> Tensor:  # spike of the stored (rounded) potential, gradient straight through
        return base((u + THETA).to(store).to(u.dtype) - THETA)

    return spike


def _outputs(out: Any) -> list[Tensor]:
    return [out.spikes, out.h_seq, *out.state]


def run_case(case: Case, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Run kernel and reference on the same random inputs; return outputs and gradients of both."""
    device = torch.device(device)
    data = _inputs(case, device)
    x, states, raw = data["x"], data["states"], data["raw"]
    leaves = [x, *states, *raw]

    # kernel path (storage dtype)
    params = _params(case, raw)
    runner = {"culif": run_culif, "adlif": run_adlif, "lif": run_lif}[case.neuron]
    k_out = _outputs(runner(x, tuple(states), *params, THETA, case.surrogate, case.detach_reset, case.gradient,
                            _key_generator(case)))

    # reference path: same values, float32 for the 16-bit storage types
    rdt = case.dtype if case.dtype in (torch.float32, torch.float64) else torch.float32
    r_leaves = [t.detach().to(rdt).requires_grad_() if t.dtype == case.dtype else t.detach().clone().requires_grad_()
                for t in leaves]
    rx, r_states, r_raw = r_leaves[0], r_leaves[1:1 + len(states)], r_leaves[1 + len(states):]
    core = {"culif": culif_multi_step, "adlif": adlif_multi_step, "lif": lif_multi_step}[case.neuron]
    r_out = _outputs(core(rx, tuple(r_states), *_params(case, r_raw), THETA, _reference_spike_fn(case),
                          case.detach_reset))

    weights = [torch.randn(o.shape, generator=data["wgen"], dtype=torch.float64) for o in r_out]

    def loss(outs: list[Tensor]) -> Tensor:
        return sum((o.double() * w.to(o.device)).sum() for o, w in zip(outs, weights))

    k_grads = torch.autograd.grad(loss(k_out), leaves)
    r_grads = torch.autograd.grad(loss(r_out), r_leaves)
    return {"k_out": [o.detach() for o in k_out], "r_out": [o.detach() for o in r_out],
            "k_grads": list(k_grads), "r_grads": list(r_grads)}


def _max_rel_err(a: Tensor, b: Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    return float((a - b).abs().max()) / scale if b.numel() else 0.0


def check_case(case: Case, device: str | torch.device = "cpu", tolerances: dict | None = None) -> dict[str, float]:
    """Run a case and assert agreement; return the measured errors (for reports).

    Tolerances: ``tolerances`` if given, else :data:`TOLERANCES` (LocalZO cases too: see
    :class:`_KernelEstimateSpike`).
    """
    tol_out, tol_grad, tol_spike = (tolerances or TOLERANCES)[case.dtype]
    res = run_case(case, device)
    ks, rs = res["k_out"][0].double().cpu(), res["r_out"][0].double().cpu()
    mismatch = float((ks != rs).double().mean())
    errs = {"spike_mismatch": mismatch}
    assert mismatch <= tol_spike, f"{case}: spike mismatch fraction {mismatch:.2e} > {tol_spike:.0e}"
    rate = float(rs.mean())
    if ks.numel() >= 50 and case.T >= 4:  # informative case: the neurons fire, but not always
        assert 0.02 < rate < 0.98, f"{case}: uninformative spike rate {rate:.3f}"
    names_out = ["spikes", "h_seq"] + [f"state{i}" for i in range(len(res["k_out"]) - 2)]
    for name, a, b in zip(names_out[1:], res["k_out"][1:], res["r_out"][1:]):
        err = _max_rel_err(a, b)
        errs[name] = err
        assert err <= tol_out, f"{case}: output {name} error {err:.2e} > {tol_out:.0e}"
    for i, (a, b) in enumerate(zip(res["k_grads"], res["r_grads"])):
        assert a is not None and b is not None, f"{case}: gradient {i} missing"
        assert a.shape == b.shape, f"{case}: gradient {i} shape {tuple(a.shape)} != {tuple(b.shape)}"
        if ks.numel() >= 50:
            assert float(b.abs().max()) > 0, f"{case}: reference gradient {i} is zero (uninformative case)"
        err = _max_rel_err(a, b)
        errs[f"grad{i}"] = err
        assert err <= tol_grad, f"{case}: gradient {i} (0 = input, then states, then parameters) error {err:.2e}"
    return errs


def copy_kernel_sources(dest: str | Path) -> None:
    """Copy every kernel source and header (``*.cu``, ``*.cuh``, ``*.h``, with ``sparse/``) under ``dest``.

    The mutation tests edit such a copy and point ``build.SOURCE_DIR`` at it.
    """
    def ignore(_folder: str, names: list[str]) -> list[str]:
        return [n for n in names if not (n.endswith((".cu", ".cuh", ".h")) or n == "sparse")]

    shutil.copytree(build.SOURCE_DIR, dest, dirs_exist_ok=True, ignore=ignore)


def assert_mutation_fails(mutation: tuple, tmp_path: Path, monkeypatch: Any) -> None:
    """Mutation test: ``(source, old, new, case)``: the true kernels pass ``check_case(case)``; with the
    one-token edit ``old -> new`` in a copy of ``source`` (``old`` must be unique there) they must fail it.

    ``monkeypatch`` is pytest's fixture: it points ``build.SOURCE_DIR`` at the edited copy and bypasses
    the in-process build caches for the rest of the test.
    """
    from cupy_neurons import launch

    source, old, new, case = mutation
    check_case(case)  # the true kernel passes
    copy_kernel_sources(tmp_path)
    text = (tmp_path / source).read_text()
    assert text.count(old) == 1, f"mutation anchor {old!r} not unique in {source}"
    (tmp_path / source).write_text(text.replace(old, new))
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path)
    monkeypatch.setattr(build, "_host_library", build._host_library.__wrapped__)  # bypass the in-process cache
    monkeypatch.setattr(launch, "_REGISTRY", launch._Registry())
    try:
        check_case(case)
    except AssertionError:
        return
    raise AssertionError(f"the mutation {old!r} -> {new!r} in {source} was not detected by {case}")


SIXTEEN_BIT_RTOL = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}  # twice the storage type's unit roundoff


def check_sparse_backward_16bit(dtype: torch.dtype, device: str | torch.device, sizes: tuple[int, int, int, int],
                                x_rate: float, min_active: int) -> None:
    """The S3GD backward kernels (``sparse/s3gd.cu``) in 16-bit storage with float32 accumulation:
    ``dW`` and ``dL/dx`` equal the float64 gradient of the same active set and data, up to the final
    rounding to the storage type (elementwise relative tolerance :data:`SIXTEEN_BIT_RTOL`), with and
    without an input active set. ``sizes`` = ``(T, B, n_in, n)``; at least ``min_active`` entries must be
    active so the check is informative. On CPU tensors the kernels run through the host build."""
    from cupy_neurons.sparse import kernels as sparse_kernels
    from sjframe.layers.sparse_linear_lif import _forward_loop, _input_grad, _input_trace, _OpConfig, _weight_grad
    from sjframe.spike.surrogate import get_surrogate

    T, B, n_in, n = sizes
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(T, B, n_in, generator=gen) < x_rate).to(device, dtype)
    w = (torch.randn(n, n_in, generator=gen) * 1.5 / n_in**0.5).to(device, dtype)
    sur = get_surrogate("fast_sigmoid", rho=100.0).with_band(0.4)
    cfg = _OpConfig(0.85, 1.0, sur, GradientSpec(mode="sparse", b_th=0.4), "cupy")
    _spikes, index, data = _forward_loop(torch.nn.functional.linear(x, w), cfg, None)
    tr = _input_trace(x, 0.85)
    grad_s = torch.randn(T, B, n, generator=gen).to(device, dtype)
    in_index = (torch.rand(T * B * n_in, generator=gen) < 0.3).nonzero().squeeze(1).to(device)
    assert index.numel() > min_active, f"only {index.numel()} active entries"
    e = grad_s.double().reshape(-1)[index] * sur.derivative(data.double())
    ref_w = _weight_grad(e, index, tr.double(), n)
    for needed in (in_index, None):
        grad_x, grad_w, e_k = sparse_kernels.s3gd_backward_kernels(grad_s, index, data, w, tr, needed, (T, B, n_in),
                                                                   0.85, sur.cuda_expr("u"))
        if needed is None:  # the full input gradient: the layer computes it from the kernels' e with torch ops
            grad_x = _input_grad(e_k, index, w.to(e_k.dtype), 0.85, (T, B, n_in), None).to(dtype)
        ref_x = _input_grad(e, index, w.double(), 0.85, (T, B, n_in), needed)
        for got, ref in ((grad_w, ref_w), (grad_x, ref_x)):
            assert got.dtype == dtype and got.device == x.device and float(ref.abs().max()) > 0
            torch.testing.assert_close(got.double(), ref, rtol=SIXTEEN_BIT_RTOL[dtype],
                                       atol=1e-5 * float(ref.abs().max()))


def run_module_two_chunks(neuron_type: str, backend: str, gradient: Any = None,
                          assign_backend: bool = False) -> tuple[Tensor, ...]:
    """A float64 ``neuron_type`` module (features ``(4, 6)``, ``tau_m`` 4, ``tau_s`` 3 steps, ``h_seq`` stored) on
    ``x [12, 5, 4, 6]`` (seed 0) in two calls of 6 steps with the states carried between them; returns
    ``(s1, s2, h_seq, dx, *dparams)``, the gradients of ``0.7 sum s1 + 1.3 sum s2 + sum h_seq^2``.

    ``assign_backend``: build with the default backend and set ``layer.backend`` after construction (the
    ``cupy`` dispatch on CPU tensors, which construction refuses without a GPU); else pass it to the builder.
    """
    from spikingjelly.activation_based import functional

    from sjframe.neurons import build_neuron

    torch.manual_seed(0)
    options: dict[str, Any] = {"store_h_seq": True}
    if gradient is not None:
        options["gradient"] = gradient
    if not assign_backend:
        options["backend"] = backend
    layer = build_neuron(neuron_type, (4, 6), {"tau_m_steps": 4.0, "tau_s_steps": 3.0}, **options).to(torch.float64)
    if assign_backend:
        layer.backend = backend
    x = (torch.randn(12, 5, 4, 6, dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
    functional.reset_net(layer)
    s1, s2 = layer(x[:6]), layer(x[6:])
    loss = (s1 * 0.7).sum() + (s2 * 1.3).sum() + (layer.h_seq ** 2).sum()
    return (s1, s2, layer.h_seq, *torch.autograd.grad(loss, [x, *layer.parameters()]))
