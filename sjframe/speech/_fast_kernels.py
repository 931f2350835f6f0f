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
# The membrane kernels may fuse multiply-adds, reassociate and use reciprocals (float rounding only; no
# assumption about NaN or infinity, which the Taylor kernel uses as a sentinel).
_MEMBRANE_MATH = {"contract", "reassoc", "arcp", "nsz"}


@numba.njit(cache=True, fastmath=_MEMBRANE_MATH, inline="always")
def _csqrt_nonzero(x, y):  # noqa: ANN001, ANN202
    """Principal square root of ``x + iy != 0`` as ``(real, imag)`` (C99 csqrt's branch cut: the sign of a
    zero ``y`` picks the side); written without a data-dependent branch so that loops of it vectorise."""
    r = math.sqrt(x * x + y * y)  # no overflow or underflow at the magnitudes of the membrane model
    t = math.sqrt(0.5 * (r + abs(x)))
    u = 0.5 * y / t
    if x >= 0.0:
        return t, u
    return abs(u), math.copysign(t, y)


@numba.njit(cache=True, fastmath=_MEMBRANE_MATH)
def membrane_g(omega, cs, A, B, N, sa, params, G, W, is_anchor, anchors):  # noqa: ANN001, ANN201, PLR0913
    """Fill ``G[b, n]`` (Hankel argument), ``W[b, n]`` (``2 omega / xi * sqrt(G / g)``),
    ``is_anchor[b, n]`` and ``anchors[:count]`` (the anchors' ``G`` in row-major order) for the channel
    positions ``cs[b]``; return ``count``.

    ``A = 2 g(omega, 0) / alpha``, ``B = 2i sqrt(2) omega / (alpha sqrt(2 h (m omega^2 + a)))``,
    ``N`` = the numerator inside lauscher's logarithm, ``sa = sqrt(a + m omega^2)`` (all ``[n]``, channel-
    independent, computed by lauscher's own code); ``params = (a, alpha, rho, c0, h, m, r)``.
    The formulas are lauscher's ``BasilarMembrane._p`` / ``_xi`` / ``_g`` written per element, rearranged
    to fewer square roots, logarithms and divisions (the same values up to rounding): ``xi(omega, c) =
    s(c) - m omega^2 - i omega r(c)`` is also the radicand in the logarithm's denominator ``D``;
    ``log(N / D) = log|N| - log|D| + i arg(N conj(D))``; ``g(omega, c) = omega sqrt(rho / (h xi)) = omega
    sqrt(rho / h) / sqrt(xi)`` (``Im xi < 0``: off the branch cut). Per channel, three loops over the
    frequencies: the square roots and products (vectorised), the logarithms and arguments (library calls),
    ``G`` and ``W``; then the anchors.
    """
    a, alpha, rho, c0, h, m, r = params
    nb, n = G.shape
    inv_sa = 1.0 / sa
    inv_w = 1.0 / omega
    root_h_rho = math.sqrt(h / rho)
    sq_re = np.empty(n)
    sq_im = np.empty(n)
    p_re = np.empty(n)
    p_im = np.empty(n)
    ratio = np.empty(n)
    count = 0
    for b in range(nb):
        c = cs[b]
        ec = math.exp(-alpha * c)
        eh = math.exp(-alpha * c / 2.0)
        pre = 0.5 * alpha * math.exp(alpha * c / 2.0)
        s_c = c0 * ec - a  # lauscher's _s(c)
        r_c = r * eh  # lauscher's _r(c)
        for j in range(n):
            w = omega[j]
            xi_re = s_c - m * (w * w)
            xi_im = -(w * r_c)
            sr, si = _csqrt_nonzero(xi_re, xi_im)
            sq_re[j] = sr
            sq_im[j] = si
            isa = inv_sa[j]
            d_re = pre * (xi_im * isa - 2.0 * sr)  # D = pre (-2 sqrt(xi) + i (2a + 2 m w^2 + i w r(c)) / sa)
            d_im = pre * ((2.0 * a + w * (2.0 * m * w)) * isa - 2.0 * si)
            n_re = N[j].real
            n_im = N[j].imag
            p_re[j] = n_re * d_re + n_im * d_im  # N conj(D)
            p_im[j] = n_im * d_re - n_re * d_im
            ratio[j] = (n_re * n_re + n_im * n_im) / (d_re * d_re + d_im * d_im)
        for j in range(n):
            ratio[j] = 0.5 * math.log(ratio[j])
            p_im[j] = math.atan2(p_im[j], p_re[j])
        for j in range(n):
            w = omega[j]
            g_arg = A[j] - B[j] * complex(ratio[j], p_im[j])
            G[b, j] = g_arg
            xi_re = s_c - m * (w * w)
            xi_im = -(w * r_c)
            q = g_arg * complex(sq_re[j], sq_im[j]) * (root_h_rho * inv_w[j])  # G / g(omega, c)
            tr, ti = _csqrt_nonzero(q.real, q.imag)
            W[b, j] = (2.0 * w / (xi_re * xi_re + xi_im * xi_im)) * complex(xi_re, -xi_im) * complex(tr, ti)
        z0 = 0j
        lim = -1.0
        for j in range(n):
            g_arg = G[b, j]
            dz = g_arg - z0
            if dz.real * dz.real + dz.imag * dz.imag > lim:  # outside the current anchor's disc: a new anchor
                z0 = g_arg
                lim = min(ANCHOR_RADIUS, ANCHOR_RELATIVE * abs(z0)) ** 2
                is_anchor[b, j] = True
                anchors[count] = g_arg
                count += 1
            else:
                is_anchor[b, j] = False
    return count


@numba.njit(cache=True, fastmath=_MEMBRANE_MATH)
def hankel_taylor(G, W, Q, is_anchor, H0a, H1a, Y):  # noqa: ANN001, ANN201
    """``Y[b, :n//2+1]``: the Hermitian part of ``X[b, j] = W[b, j] * H0^(1)(G[b, j]) * Q[j]``
    (``Y[k] = (X[k] + conj(X[-k mod n])) / 2``, whose real inverse FFT is ``Re(ifft(X))``).

    ``H0^(1)`` from the anchors' exact ``H0a``, ``H1a`` (row-major anchor order): around an anchor ``z0``,
    ``y = H0^(1)`` solves Bessel's equation ``z y'' + y' + z y = 0`` with ``y(z0) = H0a``, ``y'(z0) = -H1a``;
    its Taylor coefficients follow ``z0 (k+1)(k+2) a[k+2] = -(k+1)^2 a[k+1] - z0 a[k] - a[k-1]``. They are
    computed and summed (Horner) until two successive terms ``|a[k]| dmax^k`` at the segment's largest
    step ``dmax`` are below 1e-17 of ``|H0(z0)|``.
    """
    nb, n = G.shape
    half = n // 2 + 1
    coef = np.empty(MAX_TERMS + 2, np.complex128)
    X = np.empty(n, np.complex128)
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
            X[j] = W[b, j] * coef[0] * Q[j]
            if je == j + 1:
                j = je
                continue
            iz = 1.0 / z0
            tol2 = (1e-17 * abs(coef[0])) ** 2
            dmax2 = dmax * dmax
            m = 1
            rk2 = dmax2  # dmax^(2 m)
            prev2 = np.inf
            while m < MAX_TERMS:
                k = m - 1
                am1 = coef[k - 1] if k >= 1 else 0j
                c = -((k + 1.0) * (k + 1.0) * coef[m] * iz + coef[k] + am1 * iz) / ((k + 1.0) * (k + 2.0))
                coef[m + 1] = c
                m += 1
                rk2 *= dmax2
                term2 = (c.real * c.real + c.imag * c.imag) * rk2
                if term2 < tol2 and prev2 < tol2:
                    break
                prev2 = term2
            jj = j + 1
            while jj + 3 < je:  # four points at a time: four independent Horner chains keep the FPU busy
                d0 = G[b, jj] - z0
                d1 = G[b, jj + 1] - z0
                d2 = G[b, jj + 2] - z0
                d3 = G[b, jj + 3] - z0
                s0 = s1 = s2 = s3 = coef[m]
                for k in range(m - 1, -1, -1):
                    ck = coef[k]
                    s0 = s0 * d0 + ck
                    s1 = s1 * d1 + ck
                    s2 = s2 * d2 + ck
                    s3 = s3 * d3 + ck
                X[jj] = W[b, jj] * s0 * Q[jj]
                X[jj + 1] = W[b, jj + 1] * s1 * Q[jj + 1]
                X[jj + 2] = W[b, jj + 2] * s2 * Q[jj + 2]
                X[jj + 3] = W[b, jj + 3] * s3 * Q[jj + 3]
                jj += 4
            while jj < je:
                d = G[b, jj] - z0
                s = coef[m]
                for k in range(m - 1, -1, -1):
                    s = s * d + coef[k]
                X[jj] = W[b, jj] * s * Q[jj]
                jj += 1
            j = je
        Y[b, 0] = X[0].real
        for k in range(1, half):
            Y[b, k] = 0.5 * (X[k] + X[n - k].conjugate())


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
