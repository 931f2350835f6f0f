"""Fast cochlea mode (``CochleaConfig(mode="fast")``): the batched membrane against lauscher's, the fast
fibre / bushy-cell stage against the exact one in distribution, determinism, and the generator's record of
the mode (file attributes, cache keys).

The cochlea tests need numba and lauscher (and skip cleanly without them); they use synthetic inputs, no
eSpeak NG. The generator tests need only the core install.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest

from sjframe.speech import INSTALL_HINT, missing_speech_packages
from sjframe.speech.generate import GeneratorConfig, Rendered, cache_key, plan_utterances, write_shd_file

needs_numba = pytest.mark.skipif(
    importlib.util.find_spec("numba") is None or importlib.util.find_spec("lauscher") is None, reason=INSTALL_HINT
)
needs_speech = pytest.mark.skipif(bool(missing_speech_packages()), reason=INSTALL_HINT)
RATE = 22050


def _chirp(seconds: float, f0: float = 150.0, f1: float = 5000.0) -> np.ndarray:
    """A rising chirp with a slow amplitude modulation (excites low and high channels, with onsets)."""
    t = np.arange(int(seconds * RATE)) / RATE
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    return np.sin(phase) * (0.6 + 0.4 * np.sin(2 * np.pi * 7 * t))


def _harmonic(seconds: float, f0: float = 120.0) -> np.ndarray:
    """A voiced-speech-like input: the harmonics of ``f0`` up to 5 kHz, amplitude-modulated at 10 Hz."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * k * f0 * t + 0.3 * k * k) / np.sqrt(k) for k in range(1, int(5000 / f0)))
    return x * (0.5 + 0.5 * np.sin(2 * np.pi * 5 * t) ** 2)


# ---- basilar membrane --------------------------------------------------------------------------------------


@needs_numba
def test_batched_membrane_equals_lauschers_per_channel() -> None:
    """All channels at once equal lauscher's ``process_single_channel``, channel by channel.

    Tolerance 1e-12 of each channel's peak velocity: both compute the same formula in float64, in a
    different order (rearranged square roots and logarithms, the Hankel function from its Taylor series
    around SciPy's values, a real inverse FFT of the Hermitian part); measured differences are ~1e-15,
    while any error in a formula or an index is many orders of magnitude larger.
    """
    from sjframe.speech.cochlea import CochleaConfig, _lauscher, _membrane_setup, _preprocess, fast_membrane

    L = _lauscher()
    for seconds in (0.05, 0.0713):  # even and odd FFT lengths (n_freq = samples // 2 + 1)
        audio = _preprocess(L, _chirp(seconds), RATE, CochleaConfig())
        membrane, omega, _, stim_fft = _membrane_setup(L, audio, 48)
        fast = fast_membrane(membrane, omega, stim_fft)
        assert fast.shape == (48, omega.size)
        for ch, c in enumerate(membrane.ch):
            ref = membrane.process_single_channel(c, omega, stim_fft)
            scale = np.abs(ref).max()
            assert scale > 0 and np.abs(fast[ch] - ref).max() <= 1e-12 * scale, (seconds, ch)


@needs_numba
def test_hankel_taylor_matches_scipy() -> None:
    """H0^(1)(G) from the Taylor series around the anchors equals SciPy's at every point of a membrane's
    G(omega, c) (|G| from ~1e-3 to ~50; Im G up to ~48, where H0 is ~1e-21): relative 1e-13 (measured
    ~2e-15; the recurrence and Horner sums round, SciPy's AMOS has its own ~1e-15)."""
    from scipy import special

    from sjframe.speech import _fast_kernels as fk
    from sjframe.speech.cochlea import CochleaConfig, _lauscher, _membrane_factors, _membrane_setup, _preprocess

    L = _lauscher()
    audio = _preprocess(L, _chirp(0.2), RATE, CochleaConfig())
    membrane, omega, _, stim_fft = _membrane_setup(L, audio, 64)
    A, B, N, sa, _, params = _membrane_factors(membrane, omega, stim_fft)
    n = omega.size
    G = np.empty((64, n), dtype=np.complex128)
    W = np.empty_like(G)
    is_anchor = np.empty(G.shape, dtype=np.bool_)
    anchors = np.empty(G.size, dtype=np.complex128)
    count = fk.membrane_g(omega, membrane.ch, A, B, N, sa, params, G, W, is_anchor, anchors)
    assert np.array_equal(anchors[:count], G[is_anchor]) and count < 0.05 * G.size  # few SciPy calls
    assert np.abs(G).min() < 0.01 and np.abs(G).max() > 30 and G.imag.max() > 30
    # W = 1, Q = 1: Y is the Hermitian part of H0(G); and with Q = i on top, the anti-Hermitian part
    Y = np.empty((64, n // 2 + 1), dtype=np.complex128)
    Z = np.empty_like(Y)
    h0, h1 = special.hankel1(0, anchors[:count]), special.hankel1(1, anchors[:count])
    fk.hankel_taylor(G, np.ones_like(G), np.ones(n, dtype=np.complex128), is_anchor, h0, h1, Y)
    fk.hankel_taylor(G, np.ones_like(G), np.full(n, 1j), is_anchor, h0, h1, Z)
    k = np.arange(n // 2 + 1)
    fast = Y - 1j * Z  # = H0(G[:, k]) for k = 0..n//2 (the conjugate halves cancel)
    ref = special.hankel1(0, G[:, k])
    assert np.abs(ref).min() < 1e-15  # the deep evanescent region is covered
    assert np.all(np.abs(fast - ref) <= 1e-13 * np.abs(ref) + 1e-300)


# ---- fibres and bushy cell: fast vs exact in distribution ---------------------------------------------------


def _counts(mode: str, seeds: range, channels: int, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per seed: spike counts per channel [S, channels] and per 10 ms bin summed over channels [S, bins]."""
    from sjframe.speech.cochlea import CochleaConfig, cochlea_spikes

    config = CochleaConfig(channels=channels, mode=mode)
    bins = int(np.ceil(wave.size / RATE / 0.01))
    per_channel, per_bin = [], []
    for seed in seeds:
        times, units = cochlea_spikes(wave, RATE, seed, config)
        per_channel.append(np.bincount(units, minlength=channels))
        per_bin.append(np.bincount((times / 0.01).astype(int), minlength=bins)[:bins])
    return np.array(per_channel, dtype=float), np.array(per_bin, dtype=float)


def _z_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Difference of the seed means of ``a`` and ``b`` [S, K] in units of its standard error (from the
    seed-to-seed spread of both), for the columns where either spread is non-zero."""
    se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + b.var(axis=0, ddof=1) / len(b))
    live = se > 0
    return (a.mean(axis=0)[live] - b.mean(axis=0)[live]) / se[live]


@needs_numba
def test_fast_fibres_and_bushy_cell_match_exact_in_distribution() -> None:
    """Per-channel spike counts and the time course (10 ms bins) of a harmonic complex, 10 seeds per mode.

    The membrane and hair cell are deterministic and equal in both modes, so the counts differ only by the
    random fibres. For every channel (and bin) the difference of the two seed means is divided by its
    standard error estimated from the seed-to-seed spread of both modes; for the same model the scores
    are roughly standard normal (t with ~18 degrees of freedom). Bounds: every |z| < 5, mean z^2 < 2
    (expected ~1.1, standard deviation ~0.25 over 48 channels), total counts within 4 %. The test is
    deterministic (fixed seeds). It fails for a fast model without the fibres' refractory period and for
    one with 10 % more fibre spikes (both checked by hand when it was written).
    """
    wave = _harmonic(0.2)
    exact_ch, exact_bin = _counts("exact", range(10), 48, wave)
    fast_ch, fast_bin = _counts("fast", range(100, 110), 48, wave)
    assert exact_ch.sum(axis=1).mean() > 250  # enough spikes for the comparison to mean something
    for a, b in ((fast_ch, exact_ch), (fast_bin, exact_bin)):
        z = _z_scores(a, b)
        assert z.size > 15
        assert np.abs(z).max() < 5, np.abs(z).max()
        assert np.mean(z**2) < 2, np.mean(z**2)
    assert abs(fast_ch.sum() / exact_ch.sum() - 1) < 0.04, fast_ch.sum() / exact_ch.sum()


@needs_numba
def test_fast_mode_is_deterministic_and_independent_of_the_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from sjframe.speech import cochlea
    from sjframe.speech.cochlea import CochleaConfig, cochlea_spikes

    wave = _harmonic(0.1)
    config = CochleaConfig(channels=40, mode="fast")
    times, units = cochlea_spikes(wave, RATE, 3, config)
    assert times.size > 50 and np.all(np.diff(times) >= 0) and units.max() < 40
    again = cochlea_spikes(wave, RATE, 3, config)
    assert np.array_equal(times, again[0]) and np.array_equal(units, again[1])
    other = cochlea_spikes(wave, RATE, 4, config)
    assert not (other[0].size == times.size and np.array_equal(other[0], times) and np.array_equal(other[1], units))
    monkeypatch.setattr(cochlea, "_FAST_BLOCK", 7)  # the random stream is drawn row by row: any block size
    blocked = cochlea_spikes(wave, RATE, 3, config)
    assert np.array_equal(times, blocked[0]) and np.array_equal(units, blocked[1])
    state = np.random.get_state()
    cochlea_spikes(wave, RATE, 3, config)
    assert np.array_equal(np.random.get_state()[1], state[1])  # NumPy's global generator untouched


def test_cochlea_mode_validation() -> None:
    from sjframe.speech.cochlea import CochleaConfig

    with pytest.raises(ValueError, match="mode"):
        CochleaConfig(mode="quick")
    with pytest.raises(ValueError, match="cochlea"):
        GeneratorConfig(cochlea="quick")
    assert GeneratorConfig().cochlea == "exact" and CochleaConfig().mode == "exact"


# ---- generator: the mode in the file attributes and the cache keys ------------------------------------------


def test_cache_key_separates_the_modes_and_keeps_the_exact_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    utterance = plan_utterances(GeneratorConfig(classes=10, variants=4, seed=2))["train"][0]
    exact = cache_key(utterance, 700, 0.01)
    assert cache_key(utterance, 700, 0.01, "exact") == exact
    assert cache_key(utterance, 700, 0.01, "fast") != exact
    # the exact mode's key is the one of the generator before the fast mode (existing caches stay valid)
    old = repr((1, utterance.text, utterance.settings, utterance.onset_s, utterance.cochlea_seed, 700, 0.01))
    assert exact == hashlib.sha256(old.encode()).hexdigest()[:32]
    with pytest.raises(ValueError, match="cochlea"):
        cache_key(utterance, 700, 0.01, "quick")
    # the fast mode's version is in its key (a change of its numbers bumps it)
    from sjframe.speech import generate

    fast = cache_key(utterance, 700, 0.01, "fast")
    monkeypatch.setattr(generate, "FAST_MODE_VERSION", generate.FAST_MODE_VERSION + 1)
    assert cache_key(utterance, 700, 0.01, "fast") not in (fast, exact)
    assert cache_key(utterance, 700, 0.01, "exact") == exact


def test_fast_mode_recorded_in_the_files_and_passed_to_the_renderer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sjframe.speech
    import sjframe.speech.generate as gen

    monkeypatch.setattr(sjframe.speech, "require_speech_packages", lambda: None)
    warmed: list = []
    monkeypatch.setattr(gen, "_warm_up", lambda mode="exact": warmed.append(mode))
    modes: list = []

    def render(task: tuple) -> Rendered:
        modes.append(task[3])
        rng = np.random.default_rng(task[0].cochlea_seed)
        return Rendered(np.sort(rng.random(5)).astype(np.float32), rng.integers(0, task[1], 5).astype(np.uint16), 0.5)

    monkeypatch.setattr(gen, "_render_task", render)
    cache = tmp_path / "cache"
    paths = {}
    for mode in ("fast", "exact"):
        config = GeneratorConfig(classes=10, variants=2, test_fraction=0.5, seed=1, channels=8, cochlea=mode)
        paths[mode] = gen.generate_dataset(config, tmp_path / mode, workers=1, progress=False, cache_dir=cache)
    assert warmed == ["fast", "exact"]
    assert modes == ["fast"] * 20 + ["exact"] * 20  # the exact run found no fast word in the shared cache
    assert len(list(cache.glob("*.npz"))) == 40
    for mode in ("fast", "exact"):
        for split in ("train", "test"):
            with h5py.File(paths[mode][split], "r") as f:
                assert f.attrs["cochlea"] == mode and f"{mode} mode" in f.attrs["generator"]


def test_writer_records_the_mode(tmp_path: Path) -> None:
    config = GeneratorConfig(classes=10, variants=2, test_fraction=0.5, seed=0, channels=4, cochlea="fast")
    plan = plan_utterances(config)["test"]
    rendered = [Rendered(np.array([0.1], np.float32), np.array([1], np.uint16), 0.3) for _ in plan]
    write_shd_file(tmp_path / "x.h5", plan, rendered, config)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert f.attrs["cochlea"] == "fast"


def test_cli_has_the_cochlea_option(capsys: pytest.CaptureFixture) -> None:
    from sjframe.speech.generate import main

    with pytest.raises(SystemExit):
        main(["--cochlea", "quick"])
    assert "--cochlea" in capsys.readouterr().err


@pytest.mark.slow
@needs_speech
def test_generate_in_fast_mode_end_to_end(tmp_path: Path) -> None:
    """eSpeak NG words through the fast cochlea in 2 forked workers: the files say ``fast``, and each word
    equals the same utterance rendered again in this process (deterministic for any worker count)."""
    from sjframe.data import build_dataset
    from sjframe.speech.generate import generate_dataset, render_utterance

    config = GeneratorConfig(classes=10, variants=2, test_fraction=0.5, seed=5, channels=24, cochlea="fast")
    paths = generate_dataset(config, tmp_path, workers=2, progress=False)
    plan = plan_utterances(config)
    with h5py.File(paths["train"], "r") as f:
        assert f.attrs["cochlea"] == "fast" and f["labels"][()].tolist() == list(range(10))
        for i in (0, 6):
            again = render_utterance(plan["train"][i], channels=24, ramp_s=config.ramp_s, cochlea="fast")
            assert again.times.size > 100
            assert np.array_equal(f["spikes/times"][i], again.times) and np.array_equal(f["spikes/units"][i], again.units)
        exact = render_utterance(plan["train"][0], channels=24, ramp_s=config.ramp_s, cochlea="exact")
        assert not np.array_equal(f["spikes/units"][0], exact.units)  # another random stream than the exact mode's
    ds = build_dataset("spoken_digits", "test", root=str(tmp_path), num_units=24, num_classes=10)
    x, _ = ds[0]
    assert x.shape == (100, 24) and float(x.sum()) > 0
