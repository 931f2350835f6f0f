"""Harder spoken-digit versions: background noise at an SNR, padding, more speakers per voice, CLI options.

Everything but the last test needs only the core install (the plan, ``add_noise`` and the writer); the
rendering test skips without the optional speech packages (``requirements-speech.txt``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

import sjframe.speech.generate as gen
from sjframe.speech import INSTALL_HINT, missing_speech_packages
from sjframe.speech.generate import SPEAKER_VARIANTS, GeneratorConfig, add_noise, make_speakers, plan_utterances

needs_speech = pytest.mark.skipif(bool(missing_speech_packages()), reason=INSTALL_HINT)


def test_noisy_plan_speaks_the_same_words_as_the_clean_one() -> None:
    clean = plan_utterances(GeneratorConfig(classes=20, variants=8, seed=2))
    noisy_config = GeneratorConfig(classes=20, variants=8, seed=2, noise="pink", snr_db=(-5, 15), pad_to_s=1.0)
    noisy = plan_utterances(noisy_config)
    assert noisy == plan_utterances(noisy_config)  # deterministic
    for split in ("train", "test"):
        assert len(clean[split]) == len(noisy[split])
        for c, n in zip(clean[split], noisy[split], strict=True):
            # same speaker, voice settings, onset and cochlea seed: only the noise (and padding) differ
            assert dataclasses.replace(n, noise="none", snr_db=None, noise_seed=0, pad_to_s=0.0) == c
            assert n.noise == "pink" and -5 <= n.snr_db <= 15 and n.pad_to_s == 1.0
            assert c.noise == "none" and c.snr_db is None and c.pad_to_s == 0.0
    snrs = np.array([u.snr_db for u in noisy["train"]])
    assert snrs.min() < 0 and snrs.max() > 10  # spread over the range, not one value
    assert len({u.noise_seed for u in noisy["train"] + noisy["test"]}) == len(noisy["train"]) + len(noisy["test"])


def test_cache_keys_of_clean_utterances_are_unchanged_and_noise_gets_its_own() -> None:
    config = GeneratorConfig(classes=10, variants=30)
    first = plan_utterances(config)["train"][0]
    # the key this utterance had before the noise and padding options existed (computed with that version)
    assert gen.cache_key(first, 700, 0.01) == "b0d76e30d59becf360bf6d078a4feb24"
    noisy = dataclasses.replace(first, noise="pink", snr_db=10.0, noise_seed=5)
    keys = {
        gen.cache_key(first, 700, 0.01),
        gen.cache_key(noisy, 700, 0.01),
        gen.cache_key(dataclasses.replace(noisy, snr_db=10.01), 700, 0.01),
        gen.cache_key(dataclasses.replace(noisy, noise="white"), 700, 0.01),
        gen.cache_key(dataclasses.replace(noisy, noise_seed=6), 700, 0.01),
        gen.cache_key(dataclasses.replace(first, pad_to_s=1.0), 700, 0.01),
    }
    assert len(keys) == 6


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.5])
def test_add_noise_sets_the_snr_and_spectrum(kind: str, snr_db: float) -> None:
    rng = np.random.default_rng(0)
    speech = 0.2 * np.sin(2 * np.pi * 300 * np.arange(6000) / 22050) * rng.random(6000)
    wave = np.concatenate([np.zeros(1000), speech, np.zeros(15050)])
    out = add_noise(wave, speech, kind, snr_db, seed=3)
    assert out.shape == wave.shape and out.dtype == np.float64
    noise = out - wave
    # the SNR holds exactly up to rounding: a few float64 ulps of each of the n summed squares
    measured = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
    assert measured == pytest.approx(snr_db, abs=1e-9)
    assert np.array_equal(out, add_noise(wave, speech, kind, snr_db, seed=3))
    assert not np.array_equal(out, add_noise(wave, speech, kind, snr_db, seed=4))
    assert np.abs(noise[:1000]).max() > 0 and np.abs(noise[-1000:]).max() > 0  # the noise covers the whole wave
    # spectral slope: power ~ f^0 (white) or f^-1 (pink), fitted on octave-band means between 50 Hz and 5 kHz
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / 22050)
    edges = 50 * 2.0 ** np.arange(8)
    centres = np.sqrt(edges[:-1] * edges[1:])
    bands = [power[(freqs >= lo) & (freqs < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    slope = np.polyfit(np.log10(centres), np.log10(bands), 1)[0]
    assert slope == pytest.approx({"white": 0.0, "pink": -1.0}[kind], abs=0.2)


def test_add_noise_rejects_bad_input() -> None:
    wave = np.ones(100)
    for kwargs, match in [({"kind": "brown"}, "kind"), ({"kind": "none"}, "kind"), ({"snr_db": float("nan")}, "snr_db")]:
        args = {"wave": wave, "speech": wave, "kind": "pink", "snr_db": 0.0, "seed": 0} | kwargs
        with pytest.raises(ValueError, match=match):
            add_noise(**args)
    with pytest.raises(ValueError, match="non-zero power"):
        add_noise(wave, np.zeros(10), "white", 0.0, 0)


def test_more_speakers_per_voice_keep_voices_on_one_side_of_the_split() -> None:
    base_train, base_test = make_speakers(4, 0.25)
    assert make_speakers(4, 0.25, 1) == (base_train, base_test)
    train, test = make_speakers(4, 0.25, 3)
    assert len(train) + len(test) == 3 * len(SPEAKER_VARIANTS)
    assert len({s.id for s in train + test}) == 3 * len(SPEAKER_VARIANTS)
    assert {s.variant for s in train}.isdisjoint({s.variant for s in test})
    assert {s.variant for s in test} == {s.variant for s in base_test}  # the same voices are held out
    firsts_here = sorted((s for s in train + test if s.copy == 0), key=lambda s: s.id)
    assert firsts_here == sorted(base_train + base_test, key=lambda s: s.id)
    assert all(s.name.endswith(f"#{s.copy}") for s in train + test if s.copy)
    # the copies of a voice are other speakers: accent, pitch or rate differ from the first for most
    firsts = {s.variant: s for s in train + test if s.copy == 0}
    differ = [(s.accent, s.pitch, s.rate) != (firsts[s.variant].accent, firsts[s.variant].pitch, firsts[s.variant].rate)
              for s in train + test if s.copy]  # fmt: skip
    assert all(differ)
    plan = plan_utterances(GeneratorConfig(classes=10, variants=40, seed=4, speakers_per_variant=3))
    assert {u.speaker for u in plan["train"]}.isdisjoint({u.speaker for u in plan["test"]})
    assert max(u.speaker for u in plan["train"]) >= len(SPEAKER_VARIANTS)  # the extra speakers do speak


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"noise": "brown"}, "noise"), ({"snr_db": (10, 0)}, "snr_db"), ({"snr_db": (0,)}, "snr_db"),
     ({"snr_db": (0, float("inf"))}, "snr_db"), ({"speakers_per_variant": 0}, "speakers_per_variant"),
     ({"speakers_per_variant": 2.0}, "speakers_per_variant"), ({"pad_to_s": -1}, "pad_to_s")],
)  # fmt: skip
def test_generator_config_rejects_bad_noise_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GeneratorConfig(**kwargs)


def test_cli_passes_the_options_and_the_files_record_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sjframe.speech

    monkeypatch.setattr(sjframe.speech, "missing_speech_packages", lambda: [])
    monkeypatch.setattr(sjframe.speech, "require_speech_packages", lambda: None)
    monkeypatch.setattr(gen, "_warm_up", lambda *args: None)

    def fake_render(task: tuple) -> gen.Rendered:  # spikes from the utterance's seeds, no speech packages needed
        rng = np.random.default_rng(task[0].cochlea_seed)
        return gen.Rendered(np.sort(rng.random(5)).astype(np.float32), rng.integers(0, task[1], 5).astype(np.uint16), 0.4)

    monkeypatch.setattr(gen, "_render_task", fake_render)
    argv = ["--variants", "4", "--test-fraction", "0.5", "--channels", "8", "--workers", "1", "--no-progress",
            "--out", str(tmp_path), "--name", "spoken_digits_noisy", "--noise", "white", "--snr", "-3", "7",
            "--pad-to", "1.0", "--speakers-per-variant", "2", "--rate-jitter", "0.3", "--pitch-jitter", "12",
            "--max-onset", "0.2"]  # fmt: skip
    assert gen.main(argv) == 0
    config = GeneratorConfig(variants=4, test_fraction=0.5, channels=8, noise="white", snr_db=(-3, 7), pad_to_s=1.0,
                             speakers_per_variant=2, rate_jitter=0.3, pitch_jitter=12, max_onset_s=0.2)  # fmt: skip
    plan = plan_utterances(config)
    with h5py.File(tmp_path / "spoken_digits_noisy_train.h5", "r") as f:
        assert f.attrs["noise"] == "white" and list(f.attrs["snr_db"]) == [-3.0, 7.0]
        assert f.attrs["speakers_per_variant"] == 2 and f.attrs["pad_to_s"] == 1.0 and f.attrs["rate_jitter"] == 0.3
        assert "white noise at -3-7 dB SNR" in f.attrs["generator"]
        assert f["extra/snr_db"][()].tolist() == pytest.approx([u.snr_db for u in plan["train"]], abs=1e-5)
        assert f["extra/speaker"][()].tolist() == [u.speaker for u in plan["train"]]
        assert len(f["extra/speaker_names"]) == 2 * len(SPEAKER_VARIANTS)
    from sjframe.data import build_dataset

    ds = build_dataset("spoken_digits", "test", root=str(tmp_path), variant="noisy", num_units=8, num_classes=10)
    assert len(ds) == len(plan["test"])
    assert gen.main(["--snr", "5", "1", "--out", str(tmp_path)]) == 2  # a clear error, nothing written


@needs_speech
def test_noise_fills_the_padded_window_and_keeps_the_word(tmp_path: Path) -> None:
    from sjframe.speech.generate import render_utterance

    config = GeneratorConfig(classes=10, variants=4, test_fraction=0.5, seed=1, channels=32, cochlea="fast")
    word = plan_utterances(config)["train"][0]
    clean = render_utterance(word, channels=32, ramp_s=0.01, cochlea="fast")
    padded = dataclasses.replace(word, pad_to_s=1.0)
    quiet = render_utterance(padded, channels=32, ramp_s=0.01, cochlea="fast")
    noisy = render_utterance(dataclasses.replace(padded, noise="pink", snr_db=0.0, noise_seed=9), 32, 0.01, "fast")
    assert clean.duration_s == quiet.duration_s == noisy.duration_s < 1.0  # the word's length, not the padding
    end = clean.duration_s
    # after the word: silence gives few spikes (the cochlea's spontaneous firing; 25 of 715 here), 0 dB noise
    # many (249 of 895 here), up to the padded end
    quiet_tail, noisy_tail = np.sum(quiet.times > end + 0.05), np.sum(noisy.times > end + 0.05)
    assert quiet_tail < 0.05 * quiet.times.size and noisy_tail > 5 * quiet_tail and noisy.times.max() > 0.9
