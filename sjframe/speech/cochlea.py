"""lauscher's cochlea model (the model family behind SHD), with its slow loops compiled by numba.

lauscher's ``Wave2Spike`` chain, for a mono waveform ``w [n]`` at ``fs`` Hz:

1. ``RmsNormalizer(0.3)``: ``w <- 0.3 * w / rms(w)``; ``HanningWindow(ramp, ramp)``: Hann fade-in/out
   (lauscher's default ramp is half the track, i.e. one Hann window over the whole signal).
2. ``BasilarMembrane(channels)``: hydrodynamic shallow-water model (Sieroka et al. 2006); channel ``k``
   at cochlear position ``c_k = 3.5 * k / (channels - 1)`` gets the velocity
   ``v_k = Re(ifft(V(omega, c_k) * FFT(w)[:n//2+1]))`` with ``n//2 + 1`` samples at ``fs // 2`` Hz.
3. ``HairCell``: Meddis' transmitter-pool inner hair cell, a per-sample recurrence per channel
   giving a firing probability ``p_k [m]``.
4. ``BushyCell``: per channel, 40 auditory-nerve fibres spike with probability ``p_k`` (NumPy's legacy
   generator, ``rand(m, 40) < p_k[:, None]``, refractory 1 ms), converging on one LIF bushy cell
   (``tau_mem`` 1 ms, ``tau_syn`` 0.5 ms, refractory 1 ms) whose spikes are the output.

Output: spike times ``t = sample / (fs // 2)`` (s) and unit ids ``k`` in ``0..channels-1``, sorted by
time then unit (lauscher's ``SpikeTrain.from_dense`` order).

Speed: steps 3 and 4 are plain-Python loops in lauscher (~90 s per word for 700 channels). Here
lauscher's own functions ``HairCell._meddis`` and ``BushyCell._lif`` are compiled with ``numba.njit``
at run time, taking the model parameters as a named tuple in place of ``self``. Two NumPy calls in
them have no numba equivalent with identical results, so the compiled clones see a NumPy namespace
where ``max`` of a list and ``sum`` of a 1-d array are replaced by numba functions reproducing NumPy's
results bit for bit (NaN-propagating maximum; NumPy's pairwise summation order). The channel-
independent factors of the basilar-membrane transfer function are evaluated once per waveform
instead of once per channel (same function, same inputs, same values). Channels are processed one
at a time (small memory), drawing the random numbers in lauscher's order, so ``cochlea_spikes`` gives
exactly the spikes of stock lauscher for the same seed (``reference_cochlea_spikes`` runs stock
lauscher; ``tests/test_speech.py`` compares them). Cost: about 4-6 s of one core per word.

Fast mode (``CochleaConfig(mode="fast")``, about 0.45 s per word; ``tests/test_speech_fast.py``): the
same model with the same parameters, not the same random numbers.

- Basilar membrane: all channels of a block at once (``fast_membrane``): the transfer function is one
  numba loop over (channel, frequency), the Hankel function ``H0^(1)`` comes from SciPy at ~1 % of the
  points and from its Taylor series (Bessel's equation) elsewhere, and ``Re(ifft(.))`` is a batched real
  inverse FFT of the Hermitian part. Equal to lauscher's ``process_single_channel`` up to float
  rounding (relative ~1e-15 of each channel's peak; the test allows 1e-12).
- Hair cell: lauscher's ``_meddis`` equations, in one numba loop with the fibres and the bushy cell.
- Fibres: the 40 fibres of a channel are exchangeable (same probability ``p_k[m]``, independent
  draws), so only their number matters: at each sample, of the ``a`` fibres not refractory,
  ``Binomial(a, p)`` spike (inversion of one uniform from ``numpy.random.default_rng(seed)``; ``p``
  clipped to [0, 1], as ``rand < p`` does), and a ring buffer of counts returns them ``R`` samples later.
  lauscher's ``_correct`` drops a fibre's spike at sample ``j`` if ``j - last < tau_refrac * fs``
  (11.025 samples at 11,025 Hz), ``last`` being its last kept spike: a fibre that spikes at ``j`` is
  silent for ``j+1 .. j+R-1`` and free again at ``j + R``, ``R = ceil(tau_refrac * fs)`` (12), and a
  dropped draw does not restart the period. The binomial counts are the same process in distribution
  (each free fibre spikes with ``p`` independently; draws of refractory fibres are discarded in both).
- Bushy cell: lauscher's ``_lif`` sums the 40 fibres' synaptic currents each sample (``sum(isyn)``);
  the synapse is linear, so one current driven by the spike count is the same (up to rounding).

Deterministic for a seed (a different stream from the exact mode's) on a given installation: the
membrane's rounding may differ on another CPU or with other numba / SciPy / libm versions (fused
multiply-adds, library functions), which can in rare cases move a spike. Spike counts agree with the
exact mode's in distribution (the test compares per-channel counts over seeds).
"""

from __future__ import annotations

import functools
import types
import warnings
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "COCHLEA_MODES",
    "FAST_MODE_VERSION",
    "CochleaConfig",
    "cochlea_spikes",
    "fast_membrane",
    "reference_cochlea_spikes",
]

COCHLEA_MODES = ("exact", "fast")
# Version of the fast mode's numbers: bump it whenever a change alters its spikes for a given seed (other
# random-number use, other rounding that moves a threshold crossing), so that caches keyed on it
# (``sjframe.speech.generate.cache_key``) never mix renderings of two versions.
FAST_MODE_VERSION = 1


@dataclass(frozen=True)
class CochleaConfig:
    """Parameters of the cochlea chain: ``channels`` (SHD: 700), ``rms_level`` (lauscher: 0.3),
    ``ramp_s`` (Hann fade-in/out length in seconds; ``None`` = lauscher's default, half the track),
    ``mode``: ``"exact"`` (stock lauscher's spikes bit for bit) or ``"fast"`` (the same model in
    distribution, about 13x faster; see the module docstring)."""

    channels: int = 700
    rms_level: float = 0.3
    ramp_s: float | None = 0.01
    mode: str = "exact"

    def __post_init__(self) -> None:
        if self.mode not in COCHLEA_MODES:
            raise ValueError(f"mode must be one of {COCHLEA_MODES}, got {self.mode!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 2:
            raise ValueError(f"channels must be an int >= 2, got {self.channels!r}")
        if not (isinstance(self.rms_level, int | float) and np.isfinite(self.rms_level) and self.rms_level > 0):
            raise ValueError(f"rms_level must be a finite number > 0, got {self.rms_level!r}")
        if self.ramp_s is not None and not (isinstance(self.ramp_s, int | float) and 0 <= self.ramp_s < np.inf):
            raise ValueError(f"ramp_s must be None or a finite number >= 0 (seconds), got {self.ramp_s!r}")


def _lauscher() -> types.SimpleNamespace:
    try:
        from lauscher.audiowaves import MonoAudioWave
        from lauscher.transformations import BasilarMembrane, BushyCell, HairCell, HanningWindow, RmsNormalizer
        from lauscher.transformations import bushy_cell as bushy_module
        from lauscher.transformations import hair_cell as hair_module
    except ImportError as e:
        from sjframe.speech import INSTALL_HINT

        raise ImportError(f"lauscher is not installed: {INSTALL_HINT}") from e
    return types.SimpleNamespace(
        MonoAudioWave=MonoAudioWave, BasilarMembrane=BasilarMembrane, BushyCell=BushyCell, HairCell=HairCell,
        HanningWindow=HanningWindow, RmsNormalizer=RmsNormalizer, bushy_module=bushy_module, hair_module=hair_module,
    )  # fmt: skip


def _numba() -> Any:
    try:
        import numba
    except ImportError as e:
        from sjframe.speech import INSTALL_HINT

        raise ImportError(f"numba is not installed: {INSTALL_HINT}") from e
    return numba


@functools.lru_cache(maxsize=1)
def _kernels() -> types.SimpleNamespace:
    """Compile (once per process) numba clones of lauscher's hair-cell and bushy-cell loops."""
    numba = _numba()
    L = _lauscher()

    @numba.njit(cache=False)
    def max_like_numpy(values):  # noqa: ANN001, ANN202 - numba function
        """``np.max(values)`` for a list of floats: the largest value, NaN if any is NaN."""
        result = values[0]
        for i in range(1, len(values)):
            v = values[i]
            if v > result or np.isnan(v):
                result = v
        return result

    @numba.njit(cache=False)
    def pairwise(a, lo, n):  # noqa: ANN001, ANN202 - numba function
        # NumPy's pairwise summation: < 8 values sequentially; <= 128 with 8 running sums combined as a
        # tree, then the rest; longer halves split at a multiple of 8.
        if n < 8:
            res = 0.0
            for i in range(lo, lo + n):
                res += a[i]
            return res
        if n <= 128:
            r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
            r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
            i = 8
            stop = n - n % 8
            while i < stop:
                r0 += a[lo + i]
                r1 += a[lo + i + 1]
                r2 += a[lo + i + 2]
                r3 += a[lo + i + 3]
                r4 += a[lo + i + 4]
                r5 += a[lo + i + 5]
                r6 += a[lo + i + 6]
                r7 += a[lo + i + 7]
                i += 8
            res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
            while i < n:
                res += a[lo + i]
                i += 1
            return res
        half = n // 2
        half -= half % 8
        return pairwise(a, lo, half) + pairwise(a, lo + half, n - half)

    @numba.njit(cache=False)
    def sum_like_numpy(a):  # noqa: ANN001, ANN202 - numba function
        """``np.sum(a)`` for a 1-d float64 array, in NumPy's summation order."""
        return 0.0 + pairwise(a, 0, a.shape[0])

    numpy_namespace = types.ModuleType("numpy_for_numba")
    numpy_namespace.__dict__.update({k: v for k, v in np.__dict__.items() if not k.startswith("__")})
    numpy_namespace.max = max_like_numpy
    numpy_namespace.sum = sum_like_numpy

    def compile_clone(func: types.FunctionType) -> Any:
        namespace = dict(func.__globals__)
        namespace["np"] = numpy_namespace
        clone = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
        return numba.njit(clone)

    kernels = types.SimpleNamespace(
        meddis=compile_clone(L.HairCell._meddis),
        lif=compile_clone(L.BushyCell._lif),
        correct=L.BushyCell._correct,  # already numba-compiled by lauscher
        sum_like_numpy=sum_like_numpy,
        max_like_numpy=max_like_numpy,
    )
    # Compile now for the argument types used (lauscher's hair cell builds a list per step, which numba
    # flags as a pending deprecation of list reflection: harmless here, so silenced).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", numba.core.errors.NumbaPendingDeprecationWarning)
        probability = kernels.meddis(_as_params(L.HairCell(), _HAIR_FIELDS), np.zeros(8), 11025)
        fibres = kernels.correct(np.zeros((8, 2), dtype=bool), 11.025)
        kernels.lif(_as_params(L.BushyCell(), _BUSHY_FIELDS), fibres.astype(np.float64) + probability[:, None], 11025)
        kernels.max_like_numpy([0.0, 1.0])
    return kernels


def _as_params(obj: Any, fields: tuple[str, ...]) -> tuple:
    """The model parameters of a lauscher transformation as a named tuple (``self`` of the clones)."""
    cls = namedtuple(f"{type(obj).__name__}Params", fields)  # noqa: PYI024
    return cls(*(getattr(obj, f) for f in fields))


_HAIR_FIELDS = ("y", "g", "l", "r", "x", "a", "b", "h", "m")
_BUSHY_FIELDS = ("n_convergence", "tau_mem", "tau_syn", "tau_refrac", "weight")


def _check_wave(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size < 16:
        raise ValueError(f"wave must be a 1-d array of at least 16 samples, got shape {wave.shape}")
    if not (np.issubdtype(wave.dtype, np.floating) or np.issubdtype(wave.dtype, np.integer)):
        raise ValueError(f"wave must hold real numbers, got dtype {wave.dtype}")
    wave = wave.astype(np.float64)
    if not np.isfinite(wave).all():
        raise ValueError("wave holds NaN or infinite samples")
    if not np.any(wave):
        raise ValueError("wave is all zeros (silence): the RMS normalisation is undefined")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer) or sample_rate < 4:
        raise ValueError(f"sample_rate must be an int >= 4 (Hz), got {sample_rate!r}")
    return wave


def _preprocess(L: types.SimpleNamespace, wave: np.ndarray, sample_rate: int, config: CochleaConfig) -> Any:
    audio = L.MonoAudioWave(wave, int(sample_rate))
    audio = L.RmsNormalizer(config.rms_level)(audio)
    return L.HanningWindow(config.ramp_s, config.ramp_s)(audio)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    return int(seed)


def cochlea_spikes(
    wave: np.ndarray, sample_rate: int, seed: int, config: CochleaConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Spikes of lauscher's cochlea model for ``wave [n]`` at ``sample_rate`` Hz (numba-compiled).

    Returns ``(times float64 [S] in seconds, units int64 [S] in 0..channels-1)`` sorted by time then
    unit. ``config.mode == "exact"`` (default): identical to ``reference_cochlea_spikes`` (stock
    lauscher) for the same ``seed``; ``"fast"``: the same model in distribution, deterministic for a
    ``seed`` but with other random numbers (module docstring, "Fast mode").
    """
    config = config or CochleaConfig()
    wave = _check_wave(wave, sample_rate)
    seed = _check_seed(seed)
    if config.mode == "fast":
        return _fast_cochlea_spikes(wave, sample_rate, seed, config)
    L = _lauscher()
    k = _kernels()
    audio = _preprocess(L, wave, sample_rate, config)

    membrane, omega, fs, stim_fft = _membrane_setup(L, audio, config.channels)
    n_freq = omega.size
    # lauscher's transfer function V(omega, c) = 2 omega / xi(omega, c) * p(omega, c) * z(omega) / p(omega, 0):
    # z(omega), p(omega, 0) and g(omega, 0) (inside p) do not depend on the channel: evaluate them once.
    g0, z, p0 = membrane._g(omega, 0.0), membrane._z(omega), membrane._p(omega, 0.0)
    membrane._g = _memo_at_zero(membrane._g, omega, g0)
    membrane._p = _memo_at_zero(membrane._p, omega, p0)
    membrane._z = lambda w: z if w is omega else type(membrane)._z(membrane, w)

    hair = L.HairCell()
    hair_params = _as_params(hair, _HAIR_FIELDS)
    bushy = L.BushyCell()
    bushy_params = _as_params(bushy, _BUSHY_FIELDS)
    rng = np.random.RandomState(seed)  # the stream of np.random.seed(seed) + np.random.rand, as lauscher draws

    # lauscher computes every channel's probability first, then draws channel by channel; only the draws
    # use the generator, so one channel at a time in the same order gives the same numbers.
    times: list[np.ndarray] = []
    units: list[np.ndarray] = []
    for ch, c in enumerate(membrane.ch):
        velocity = membrane.process_single_channel(c, omega, stim_fft)
        probability = k.meddis(hair_params, velocity, fs)
        fibres = rng.rand(n_freq, bushy.n_convergence) < probability[:, None]
        fibres = k.correct(fibres, bushy.tau_refrac * fs)
        spikes = k.lif(bushy_params, fibres.astype(np.float64), fs)
        steps = np.flatnonzero(spikes)
        times.append(steps)
        units.append(np.full(steps.size, ch, dtype=np.int64))
    steps = np.concatenate(times)
    unit_ids = np.concatenate(units)
    order = np.lexsort((unit_ids, steps))
    return steps[order] / fs, unit_ids[order]


_FAST_BLOCK = 32  # channels per block of the fast mode (bounds its memory: a few [block, n_freq] arrays)


def _fast_kernels() -> Any:
    _numba()  # the clear ImportError when numba is missing
    from sjframe.speech import _fast_kernels

    return _fast_kernels


def _membrane_setup(L: types.SimpleNamespace, audio: Any, channels: int) -> tuple:
    """lauscher's membrane, its frequency grid ``omega``, its output rate ``fs`` and ``FFT(w)[:n_freq]``, as
    lauscher's ``BasilarMembrane.__call__`` sets them up."""
    membrane = L.BasilarMembrane(channels=channels)
    n_freq = audio.num_samples // 2 + 1
    fs = audio.sample_rate // 2
    omega = 2 * np.pi * np.linspace(1, fs, n_freq)
    stim_fft = np.fft.fft(audio.samples)[:n_freq]
    return membrane, omega, fs, stim_fft


def fast_membrane(membrane: Any, omega: np.ndarray, stim_fft: np.ndarray) -> np.ndarray:
    """Basilar-membrane velocities ``[channels, n_freq]`` of lauscher's ``membrane`` for all its channels
    at once: equal to ``membrane.process_single_channel(c, omega, stim_fft)`` per channel up to float
    rounding (``tests/test_speech_fast.py``).

    lauscher's transfer function ``V = 2 omega / xi(omega, c) * p(omega, c) * z(omega) / p(omega, 0)`` with
    ``p(omega, c) = sqrt(G / g(omega, c)) * H0(G)``, ``G = G(omega, c)``: the channel-independent factors
    ``z``, ``p(omega, 0)`` and the parts of ``G`` without ``c`` are lauscher's own NumPy code, evaluated
    once; the rest is one numba loop over (channel, frequency). The Hankel function ``H0^(1)(G)`` (SciPy's
    costs ~0.4 us per value, ~3 M values for a 0.4 s word) is evaluated by SciPy only at *anchors* (~1 %
    of the points, chosen so that every point lies within ``min(1, |z0| / 4)`` of its anchor ``z0``),
    and at the other points by the Taylor series of Bessel's equation around the anchor (relative error
    ~1e-15). ``Re(ifft(X))`` of each channel's ``X = V * FFT(w)`` is computed as the real inverse FFT of
    the Hermitian part of ``X`` (the same numbers at half the cost), batched over channels.
    """
    factors = _membrane_factors(membrane, omega, stim_fft)
    cs = np.asarray(membrane.ch, dtype=np.float64)
    return np.concatenate(
        [_membrane_block(factors, omega, cs[lo : lo + _FAST_BLOCK]) for lo in range(0, cs.size, _FAST_BLOCK)]
    )


def _membrane_factors(m: Any, omega: np.ndarray, stim_fft: np.ndarray) -> tuple:
    """The channel-independent pieces of lauscher's transfer function (as lauscher's ``_p`` writes them)."""
    A = 2.0 * m._g(omega, 0.0) / m.alpha
    B = 1 / (m.alpha * (np.sqrt(m.h * 2.0 * (m.m * omega**2 + m.a)))) * (2.0 * 1j * np.sqrt(2.0) * omega)
    sa = np.sqrt(m.a + m.m * omega**2)
    N = -m.alpha * np.sqrt(-m.a + m.c0 - omega * (m.m * omega + 1j * m.r)) + 1j * m.alpha * (
        2.0 * m.a + omega * (2.0 * m.m * omega + 1j * m.r)
    ) / (2.0 * sa)
    Q = m._z(omega) / m._p(omega, 0.0) * stim_fft  # z / p(omega, 0) times the stimulus
    params = (float(m.a), float(m.alpha), float(m.rho), float(m.c0), float(m.h), float(m.m), float(m.r))
    return A, B, N, sa, Q, params


def _membrane_block(factors: tuple, omega: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """Velocities ``[len(cs), n_freq]`` of the channels at cochlear positions ``cs``."""
    from scipy import fft as sfft
    from scipy import special

    fk = _fast_kernels()
    A, B, N, sa, Q, params = factors
    n = omega.size
    G = np.empty((cs.size, n), dtype=np.complex128)
    W = np.empty_like(G)
    is_anchor = np.empty(G.shape, dtype=np.bool_)
    anchors = np.empty(G.size, dtype=np.complex128)
    count = fk.membrane_g(omega, np.ascontiguousarray(cs, dtype=np.float64), A, B, N, sa, params, G, W, is_anchor, anchors)
    anchors = anchors[:count]
    # Y: the Hermitian part of X = V * FFT(w), k = 0..n//2; Re(ifft(X)) = irfft(Y)
    Y = np.empty((cs.size, n // 2 + 1), dtype=np.complex128)
    fk.hankel_taylor(G, W, Q, is_anchor, special.hankel1(0, anchors), special.hankel1(1, anchors), Y)
    return sfft.irfft(Y, n, axis=1)


def _fast_cochlea_spikes(wave: np.ndarray, sample_rate: int, seed: int, config: CochleaConfig) -> tuple:
    L = _lauscher()
    fk = _fast_kernels()
    audio = _preprocess(L, wave, sample_rate, config)
    membrane, omega, fs, stim_fft = _membrane_setup(L, audio, config.channels)
    hair = _as_params(L.HairCell(), _HAIR_FIELDS)
    bushy = _as_params(L.BushyCell(), _BUSHY_FIELDS)
    hair_t = tuple(float(v) for v in hair)
    bushy_t = tuple(float(v) for v in bushy)
    rng = np.random.default_rng(seed)
    n = omega.size
    spikes = np.zeros((config.channels, n), dtype=np.uint8)
    factors = _membrane_factors(membrane, omega, stim_fft)
    for lo in range(0, config.channels, _FAST_BLOCK):
        hi = min(lo + _FAST_BLOCK, config.channels)
        velocity = _membrane_block(factors, omega, membrane.ch[lo:hi])
        uniforms = rng.random((hi - lo, n))  # the same stream for any block size (row-major fill)
        fk.hair_fibres_bushy(velocity, uniforms, float(fs), hair_t, bushy_t, spikes[lo:hi])
    steps, units = np.nonzero(spikes.T)  # sorted by time, then unit
    return steps / fs, units.astype(np.int64)


def _memo_at_zero(method: Any, omega: np.ndarray, value: np.ndarray) -> Any:
    """Wrap ``method(w, c)`` to return the precomputed ``value`` for ``(omega, 0.0)``."""

    def wrapped(w: np.ndarray, c: float) -> np.ndarray:
        if w is omega and c == 0.0:
            return value
        return method(w, c)

    return wrapped


def reference_cochlea_spikes(
    wave: np.ndarray, sample_rate: int, seed: int, config: CochleaConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The same chain run by stock lauscher (plain Python, its own process pools; slow: for checks).

    lauscher's bushy cell draws from NumPy's global generator: it is seeded with ``seed`` here and its
    previous state restored afterwards. ``config.mode`` is not used (this is the exact model).
    """
    config = config or CochleaConfig()
    wave = _check_wave(wave, sample_rate)
    seed = _check_seed(seed)
    L = _lauscher()
    audio = _preprocess(L, wave, sample_rate, config)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        train = audio.transform(L.BasilarMembrane(channels=config.channels)).transform(L.HairCell()).transform(L.BushyCell())
    finally:
        np.random.set_state(state)
    return np.asarray(train.spike_times, dtype=np.float64), np.asarray(train.spike_labels).astype(np.int64)
