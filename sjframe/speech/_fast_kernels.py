"""numba kernels of the fast cochlea mode (``sjframe.speech.cochlea``, ``mode="fast"``).

Imported only when the fast mode runs (numba is an optional package). Compiled with ``cache=True``:
the first use in a fresh checkout compiles them (seconds) and stores the machine code in
``__pycache__``; later processes load it.

Kernels:

- ``membrane_g``: the channel-dependent part of lauscher's basilar-membrane transfer function for a
  block of channels (``G(omega, c)``, the argument of the Hankel function, and the factor
  ``2 omega / xi(omega, c) * sqrt(G / g(omega, c))``), plus the *anchors* of the Hankel evaluation;
- ``hankel_taylor``: ``H0^(1)(G)`` at every point from exact values ``H0^(1)``, ``H1^(1)`` at the
  anchors (SciPy) by the Taylor series of Bessel's equation (see ``membrane_g``);
- ``hair_fibres_bushy``: Meddis hair cell -> 40 fibres as binomial counts -> LIF bushy cell, per
  channel (see ``sjframe.speech.cochlea`` for the model and where it differs from lauscher's).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["hair_fibres_bushy", "hankel_taylor", "membrane_g"]

# Taylor expansion of H0 around an anchor z0 is used for points with |z - z0| <= min(ANCHOR_RADIUS,
# ANCHOR_RELATIVE * |z0|) (the series converges for |z - z0| < |z0|; a short step keeps the rounding of
# the sum small: its terms are at most ~exp(|z - z0|) times the result).
ANCHOR_RADIUS = 1.0
ANCHOR_RELATIVE = 0.25
MAX_TERMS = 80


@numba.njit(cache=True, inline="always")
def _csqrt(z):  # noqa: ANN001, ANN202
    """Principal square root (C99 csqrt's branch cut: the sign of a zero imaginary part picks the side)."""
    x = z.real
    y = z.imag
    r = math.sqrt(x * x + y * y)  # no overflow or underflow at the magnitudes of the membrane model
    if x >= 0.0:
        t = math.sqrt(0.5 * (r + x))
        if t == 0.0:
            return complex(0.0, y)
        return complex(t, 0.5 * y / t)
    t = math.sqrt(0.5 * (r - x))
    return complex(0.5 * abs(y) / t, math.copysign(t, y))


@numba.njit(cache=True, inline="always")
def _clog(z):  # noqa: ANN001, ANN202
    """Principal logarithm ``log|z| + i arg z``."""
    return complex(0.5 * math.log(z.real * z.real + z.imag * z.imag), math.atan2(z.imag, z.real))


@numba.njit(cache=True)
def membrane_g(omega, cs, A, B, N, sa, params, G, W, is_anchor):  # noqa: ANN001, ANN201, PLR0913
    """Fill ``G[b, n]`` (Hankel argument), ``W[b, n]`` (``2 omega / xi * sqrt(G / g)``) and
    ``is_anchor[b, n]`` for the channel positions ``cs[b]``; return the number of anchors.

    ``A = 2 g(omega, 0) / alpha``, ``B = 2i sqrt(2) omega / (alpha sqrt(2 h (m omega^2 + a)))``,
    ``N`` = the numerator inside lauscher's logarithm, ``sa = sqrt(a + m omega^2)`` (all ``[n]``, channel-
    independent, computed by lauscher's own code); ``params = (a, alpha, rho, c0, h, m, r)``.
    The formulas are lauscher's ``BasilarMembrane._p`` / ``_xi`` / ``_g`` written per element.
    """
    a, alpha, rho, c0, h, m, r = params
    nb, n = G.shape
    count = 0
    for b in range(nb):
        c = cs[b]
        ec = math.exp(-alpha * c)
        eh = math.exp(-alpha * c / 2.0)
        pre = 0.5 * alpha * math.exp(alpha * c / 2.0)
        s_c = c0 * ec - a  # lauscher's _s(c)
        r_c = r * eh  # lauscher's _r(c)
        z0 = 0j
        lim = -1.0
        for j in range(n):
            w = omega[j]
            mw2 = m * (w * w)
            d = pre * (
                -2.0 * _csqrt(complex(-a + c0 * ec - mw2, -(eh * w * r)))
                + 1j * complex(2.0 * a + w * (2.0 * m * w), w * (eh * r)) / sa[j]
            )
            g_arg = A[j] - B[j] * _clog(N[j] / d)
            xi = complex(s_c - mw2, -(w * r_c))
            g_c = w * _csqrt(rho / (h * xi))
            G[b, j] = g_arg
            W[b, j] = 2.0 * w / xi * _csqrt(g_arg / g_c)
            dz = g_arg - z0
            if dz.real * dz.real + dz.imag * dz.imag > lim:  # outside the current anchor's disc: a new anchor
                z0 = g_arg
                lim = min(ANCHOR_RADIUS, ANCHOR_RELATIVE * abs(z0)) ** 2
                is_anchor[b, j] = True
                count += 1
            else:
                is_anchor[b, j] = False
    return count


@numba.njit(cache=True)
def hankel_taylor(G, is_anchor, H0a, H1a, out):  # noqa: ANN001, ANN201
    """``out[b, j] = H0^(1)(G[b, j])`` from the anchors' ``H0a``, ``H1a`` (in row-major anchor order).

    Around an anchor ``z0``, ``y = H0^(1)`` solves ``z y'' + y' + z y = 0`` with ``y(z0) = H0a``,
    ``y'(z0) = -H1a``; its Taylor coefficients follow ``z0 (k+1)(k+2) a[k+2] = -(k+1)^2 a[k+1] - z0 a[k]
    - a[k-1]``, summed (Horner) for every point of the anchor's segment up to the term below 1e-17 of
    ``|H0(z0)|`` at the segment's largest step.
    """
    nb, n = G.shape
    coef = np.empty(MAX_TERMS + 2, np.complex128)
    k_anchor = -1
    for b in range(nb):
        j = 0
        while j < n:
            # segment: the anchor j and the points after it up to the next anchor
            k_anchor += 1
            z0 = G[b, j]
            je = j + 1
            dmax = 0.0
            while je < n and not is_anchor[b, je]:
                dz = G[b, je] - z0
                dd = dz.real * dz.real + dz.imag * dz.imag
                if dd > dmax:
                    dmax = dd
                je += 1
            dmax = math.sqrt(dmax)
            coef[0] = H0a[k_anchor]
            coef[1] = -H1a[k_anchor]
            out[b, j] = coef[0]
            if dmax > 0.0:
                iz = 1.0 / z0
                tol = 1e-17 * abs(coef[0])
                m = 1
                rk = dmax
                while m < MAX_TERMS:
                    k = m - 1
                    am1 = coef[k - 1] if k >= 1 else 0j
                    coef[m + 1] = -((k + 1.0) * (k + 1.0) * coef[m] * iz + coef[k] + am1 * iz) / ((k + 1.0) * (k + 2.0))
                    m += 1
                    rk *= dmax
                    if abs(coef[m]) * rk < tol and abs(coef[m - 1]) * rk < tol * dmax:
                        break
                for jj in range(j + 1, je):
                    d = G[b, jj] - z0
                    s = coef[m]
                    for k in range(m - 1, -1, -1):
                        s = s * d + coef[k]
                    out[b, jj] = s
            j = je


@numba.njit(cache=True)
def hair_fibres_bushy(velocity, uniforms, fs, hair, bushy, spikes):  # noqa: ANN001, ANN201
    """Per channel row of ``velocity [b, n]``: Meddis hair cell -> fibre counts -> LIF bushy cell.

    ``hair = (y, g, l, r, x, a, b, h, m)`` and ``bushy = (n_convergence, tau_mem, tau_syn, tau_refrac,
    weight)`` are lauscher's parameters (``weight`` already divided by ``n_convergence``, as lauscher
    stores it); ``uniforms [b, n]`` in [0, 1) drive the binomial draws (inversion); ``spikes[b, n]``
    (uint8) receives the bushy cell's output.
    """
    y, g, l_, r, x, a, b_, h, m = hair
    n_conv, tau_mem, tau_syn, tau_refrac, weight = bushy
    nb, n = velocity.shape
    ymdt = y * m / fs
    xdt = x / fs
    ydt = y / fs
    rdt = r / fs
    gdt = g / fs
    hdt = h / fs
    lplusrdt = (l_ + r) / fs
    dt = 1.0 / fs
    decay_mem = math.exp(-dt / tau_mem)
    decay_syn = math.exp(-dt / tau_syn)
    n_refrac = tau_refrac * fs  # lauscher: float number of samples, for the fibres and the bushy cell
    ring_len = int(math.ceil(n_refrac))  # a fibre that spikes at j may spike again from j + ring_len on
    ring = np.zeros(max(ring_len, 1), np.int64)
    n_fibres = int(n_conv)
    for ch in range(nb):
        # hair cell state (lauscher's _meddis initial values)
        kt = g * a / (a + b_)
        hair_c = m * y * kt / (l_ * kt + y * (l_ + r))
        hair_q = hair_c * (l_ + r) / kt
        hair_w = hair_c * r / x
        # fibres: available count and those returning after their refractory period
        avail = n_fibres
        ring[:] = 0
        # bushy cell
        vm_prev = 0.0
        isyn = 0.0
        refrac_counter = 0.0
        for j in range(n):
            # --- hair cell: firing probability p of this sample
            v = velocity[ch, j]
            if v + a > 0:
                kt = gdt * (v + a) / (v + a + b_)
            else:
                kt = 0.0
            replenish = ymdt - ydt * hair_q if hair_q < m else 0.0
            eject = kt * hair_q
            reuptakeandloss = lplusrdt * hair_c
            reuptake = rdt * hair_c
            reprocess = xdt * hair_w
            hair_q = max(hair_q + replenish - eject + reprocess, 0.0)
            hair_c = max(hair_c + eject - reuptakeandloss, 0.0)
            hair_w = max(hair_w + reuptake - reprocess, 0.0)
            p = hair_c * hdt
            # --- fibres: refractory ones return, then Binomial(avail, p) of the available ones spike
            if ring_len > 0:
                slot = j % ring_len
                avail += ring[slot]
                ring[slot] = 0
            count = 0
            if avail > 0 and p > 0.0:
                if p >= 1.0:
                    count = avail
                else:
                    u = uniforms[ch, j]
                    # inversion: count = min{k : u < F(k)}; F(0) = (1-p)^avail >= 1 - avail p
                    if u >= 1.0 - avail * p:
                        f = math.exp(avail * math.log1p(-p))
                        cdf = f
                        ratio = p / (1.0 - p)
                        while u >= cdf and count < avail:
                            f *= (avail - count) / (count + 1.0) * ratio
                            count += 1
                            cdf += f
                avail -= count
                if ring_len > 0:
                    ring[slot] = count
                else:
                    avail += count
            # --- bushy cell (lauscher's _lif with the 40 fibres' currents summed: the synapse is linear)
            vm = 0.0
            if j > 0:
                if refrac_counter <= 0:
                    if vm_prev < 1.0:
                        vm = vm_prev * decay_mem
                    else:
                        refrac_counter = n_refrac
                        vm = 0.0
                        spikes[ch, j - 1] = 1
                isyn = isyn * decay_syn
            isyn += count
            if refrac_counter <= 0:
                vm += isyn * weight * dt
            if vm > 1.0:
                vm = 1.0
            refrac_counter -= 1
            vm_prev = vm
