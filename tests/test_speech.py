"""Spoken-digit data set: shipped small files in SHD layout, generator plan and writer, eSpeak NG, cochlea.

The tests of the shipped files, the plan and the writer need only the core install; the ones that
synthesise speech or run the cochlea skip cleanly without the optional packages
(``requirements-speech.txt``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sjframe.data import build_dataset
from sjframe.speech import INSTALL_HINT, missing_speech_packages
from sjframe.speech.espeak import VoiceSettings
from sjframe.speech.generate import (
    SPEAKER_VARIANTS,
    GeneratorConfig,
    Rendered,
    main,
    make_speakers,
    plan_utterances,
    write_shd_file,
)

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"

needs_speech = pytest.mark.skipif(bool(missing_speech_packages()), reason=INSTALL_HINT)
needs_numba = pytest.mark.skipif(
    importlib.util.find_spec("numba") is None or importlib.util.find_spec("lauscher") is None, reason=INSTALL_HINT
)


# ---- shipped small version (core install only) ---------------------------------------------------------------


def test_shipped_small_files_read_by_the_shd_reader() -> None:
    train = build_dataset("spoken_digits", "train", root=str(DATASETS), variant="small", num_classes=10, val_fraction=0.1)
    val = build_dataset("spoken_digits", "val", root=str(DATASETS), variant="small", num_classes=10, val_fraction=0.1)
    test = build_dataset("spoken_digits", "test", root=str(DATASETS), variant="small", num_classes=10, T=80, T_empty=20)
    assert len(train) + len(val) == 220 and len(test) == 80
    assert train.input_shape == (700,) and train.num_classes == 10 and train.dt_ms == 10.0
    x, y = test[0]
    assert x.shape == (100, 700) and x.dtype == torch.float32 and 0 <= y < 10
    assert float(x[80:].sum()) == 0.0  # T_empty steps
    assert float(x[:80].sum()) > 1000  # a spoken word: thousands of cochlea spikes in 0.8 s


@pytest.mark.parametrize("split", ["train", "test"])
def test_shipped_small_files_layout(split: str) -> None:
    with h5py.File(DATASETS / f"spoken_digits_small_{split}.h5", "r") as f:
        times, units, labels = f["spikes/times"], f["spikes/units"], f["labels"][()]
        assert np.bincount(labels, minlength=10).tolist() == [22 if split == "train" else 8] * 10
        for i in range(0, len(labels), 37):
            t, u = times[i], units[i]
            assert t.shape == u.shape and t.size > 1000
            assert np.all(np.diff(t) >= 0) and t[0] >= 0 and t[-1] < 1.0
            assert u.dtype == np.uint16 and int(u.max()) < 700
        assert [k.decode() for k in f["extra/keys"][()]] == ["zero", "one", "two", "three", "four",
                                                             "five", "six", "seven", "eight", "nine"]  # fmt: skip
        assert f["extra/speaker"].shape == labels.shape and f["extra/variant"].shape == labels.shape
        assert f.attrs["seed"] == 0 and f.attrs["classes"] == 10 and f.attrs["variants"] == 30


def test_shipped_small_files_split_by_speaker() -> None:
    speakers = {}
    for split in ("train", "test"):
        with h5py.File(DATASETS / f"spoken_digits_small_{split}.h5", "r") as f:
            speakers[split] = set(f["extra/speaker"][()].tolist())
    assert speakers["train"].isdisjoint(speakers["test"])
    assert len(speakers["test"]) >= 5 and len(speakers["train"]) >= 20


# ---- plan and writer (core install only) -----------------------------------------------------------------------


def test_plan_is_deterministic_split_by_speaker_and_balanced() -> None:
    config = GeneratorConfig(classes=20, variants=12, seed=3)
    plan = plan_utterances(config)
    assert plan == plan_utterances(GeneratorConfig(classes=20, variants=12, seed=3))
    assert plan != plan_utterances(GeneratorConfig(classes=20, variants=12, seed=4))
    assert len(plan["train"]) == 20 * 9 and len(plan["test"]) == 20 * 3
    train_spk = {u.speaker for u in plan["train"]}
    test_spk = {u.speaker for u in plan["test"]}
    assert train_spk.isdisjoint(test_spk)
    train_pool, test_pool = make_speakers(3, 0.25)
    assert {s.id for s in test_pool} >= test_spk and len(train_pool) + len(test_pool) == len(SPEAKER_VARIANTS)
    for u in plan["train"] + plan["test"]:
        german = u.label >= 10
        assert (u.settings.voice == "de") == german
        assert u.text == ("null eins zwei drei vier fünf sechs sieben acht neun".split()[u.label - 10] if german
                          else "zero one two three four five six seven eight nine".split()[u.label])  # fmt: skip
        assert 80 <= u.settings.rate <= 450 and 0 <= u.settings.pitch <= 100 and 0 <= u.onset_s <= config.max_onset_s
    assert len({u.settings for u in plan["train"]}) == len(plan["train"])  # every utterance spoken differently


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"classes": 15}, "classes"), ({"variants": 1}, "variants"),
     ({"variants": 3, "test_fraction": 0.1}, "no train or no test"), ({"test_fraction": 1.0}, "test_fraction"),
     ({"seed": -1}, "seed"), ({"channels": 1}, "channels"),
     ({"max_onset_s": 2.0}, "max_onset_s"), ({"rate_jitter": 1.5}, "rate_jitter"), ({"pitch_jitter": 60}, "pitch_jitter")],
)  # fmt: skip
def test_generator_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GeneratorConfig(**kwargs)


def test_voice_settings_validation() -> None:
    assert VoiceSettings("en-US", "m3").name == "en-US+m3" and VoiceSettings("de").name == "de"
    for kwargs, name in [({"rate": 10}, "rate"), ({"pitch": 101}, "pitch"), ({"pitch_range": -1}, "pitch_range"),
                         ({"variant": "a+b"}, "variant")]:  # fmt: skip
        with pytest.raises(ValueError, match=name):
            VoiceSettings("en", **kwargs)
    with pytest.raises(ValueError, match="voice"):
        VoiceSettings("")


def test_writer_output_read_by_the_shd_reader(tmp_path: Path) -> None:
    config = GeneratorConfig(classes=10, variants=4, test_fraction=0.5, seed=1, channels=32)
    plan = plan_utterances(config)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        rendered = []
        for u in plan[split]:
            n = 50 + 10 * u.label
            times = np.sort(rng.uniform(0, 0.5, n)).astype(np.float32)
            rendered.append(Rendered(times, rng.integers(0, 32, n).astype(np.uint16), 0.5))
        write_shd_file(tmp_path / f"spoken_digits_{split}.h5", plan[split], rendered, config)
    assert not list(tmp_path.glob("*.tmp"))
    ds = build_dataset("spoken_digits", "test", root=str(tmp_path), num_units=32, num_classes=10, dt=5.0, T=100)
    assert len(ds) == 20 and ds.input_shape == (32,)
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (100, 32) and float(x.sum()) == 50 + 10 * y  # every spike lands in a bin
    with pytest.raises(ValueError, match="utterances"):
        write_shd_file(tmp_path / "bad.h5", plan["test"], [], config)


def test_cli_explains_missing_packages(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr("sjframe.speech.missing_speech_packages", lambda: ["lauscher"])
    assert main(["--variants", "4"]) == 2
    err = capsys.readouterr().err
    assert "lauscher" in err and "requirements-speech.txt" in err


# ---- eSpeak NG (optional packages) -----------------------------------------------------------------------------


@needs_speech
def test_espeak_synthesis_is_int16_and_reproducible() -> None:
    from sjframe.speech.espeak import SAMPLE_RATE, espeak_data_path, list_variants, list_voices, synthesize

    assert {"en-US", "de"} <= set(list_voices()) and set(SPEAKER_VARIANTS) <= set(list_variants())
    for variant in SPEAKER_VARIANTS:  # breath noise makes eSpeak NG's output irreproducible
        lines = (espeak_data_path() / "voices" / "!v" / variant).read_text(errors="replace").splitlines()
        assert not any(line.split()[:1] == ["breath"] for line in lines), variant
    a = synthesize("seven", VoiceSettings("en-US", "m3", rate=160, pitch=40))
    b = synthesize("seven", VoiceSettings("en-US", "m3", rate=160, pitch=40))
    assert a.dtype == np.int16 and 0.2 < a.size / SAMPLE_RATE < 1.5 and np.abs(a).max() > 1000
    assert np.array_equal(a, b)  # each utterance in a fresh process: depends only on its arguments
    slow = synthesize("seven", VoiceSettings("en-US", "m3", rate=100, pitch=40))
    assert slow.size > 1.3 * a.size
    german = synthesize("fünf", VoiceSettings("de", "f2"))
    assert german.size > 0.1 * SAMPLE_RATE
    with pytest.raises(ValueError, match="voice variant"):
        synthesize("one", VoiceSettings("en", "no-such-variant"))
    with pytest.raises(ValueError, match="voice"):
        synthesize("one", VoiceSettings("xx-nowhere"))
    with pytest.raises(ValueError, match="text"):
        synthesize("  ", VoiceSettings("en"))


# ---- cochlea (optional packages) --------------------------------------------------------------------------------


@needs_numba
def test_numpy_replacements_match_numpy_bit_for_bit() -> None:
    from sjframe.speech.cochlea import _kernels

    k = _kernels()
    rng = np.random.default_rng(0)
    for n in [*range(1, 140), 200, 257, 1000, 4097]:
        v = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3)
        assert k.sum_like_numpy(v) == np.sum(v), n
    assert k.max_like_numpy([1.5, 0.0]) == 1.5 and k.max_like_numpy([-1.0, 0.0]) == 0.0
    assert np.isnan(k.max_like_numpy([np.nan, 0.0])) and np.isnan(k.max_like_numpy([0.0, np.nan]))


@needs_speech
def test_fast_cochlea_gives_stock_lauschers_spikes() -> None:
    from sjframe.speech.cochlea import CochleaConfig, cochlea_spikes, reference_cochlea_spikes
    from sjframe.speech.espeak import SAMPLE_RATE, synthesize

    word = synthesize("six", VoiceSettings("en-US", "f2")).astype(np.float64) / 32768
    start = int(np.flatnonzero(np.abs(word) > 0.05)[0])
    wave = word[start : start + int(0.08 * SAMPLE_RATE)]  # a short input: stock lauscher is slow
    config = CochleaConfig(channels=64)
    state = np.random.get_state()
    times, units = cochlea_spikes(wave, SAMPLE_RATE, 7, config)
    ref_times, ref_units = reference_cochlea_spikes(wave, SAMPLE_RATE, 7, config)
    assert times.size > 40
    assert np.array_equal(times, ref_times) and np.array_equal(units, ref_units)
    assert np.array_equal(np.random.get_state()[1], state[1])  # NumPy's global generator left as it was
    other_times, _ = cochlea_spikes(wave, SAMPLE_RATE, 8, config)
    assert not np.array_equal(other_times, times)  # the seed matters
    assert np.all(np.diff(times) >= 0) and units.max() < 64 and times.max() < wave.size / SAMPLE_RATE


@needs_numba
def test_cochlea_rejects_bad_input() -> None:
    from sjframe.speech.cochlea import CochleaConfig, cochlea_spikes

    good = np.sin(np.arange(2000) / 5.0)
    for wave, rate, seed, match in [
        (np.zeros(2000), 22050, 0, "silence"),
        (np.full(2000, np.nan), 22050, 0, "NaN"),
        (good.reshape(2, 1000), 22050, 0, "1-d"),
        (good, 0, 0, "sample_rate"),
        (good, 22050, -1, "seed"),
    ]:
        with pytest.raises(ValueError, match=match):
            cochlea_spikes(wave, rate, seed, CochleaConfig(channels=4))
    with pytest.raises(ValueError, match="channels"):
        CochleaConfig(channels=1)


@pytest.mark.slow
@needs_speech
def test_generate_end_to_end_is_deterministic_for_any_worker_count(tmp_path: Path) -> None:
    from sjframe.speech.generate import generate_dataset, render_utterance

    config = GeneratorConfig(classes=10, variants=2, test_fraction=0.5, seed=5, channels=12)
    paths = generate_dataset(config, tmp_path, workers=2, progress=False)
    plan = plan_utterances(config)
    with h5py.File(paths["train"], "r") as f:
        assert f["labels"][()].tolist() == list(range(10))
        for i in (0, 7):  # the same utterance rendered here, in one process, gives the same spikes
            again = render_utterance(plan["train"][i], channels=12, ramp_s=config.ramp_s)
            assert np.array_equal(f["spikes/times"][i], again.times) and np.array_equal(f["spikes/units"][i], again.units)
        assert f["extra/speaker"][()].tolist() == [u.speaker for u in plan["train"]]
    ds = build_dataset("spoken_digits", "train", root=str(tmp_path), num_units=12, num_classes=10, val_fraction=0.2)
    x, _ = ds[0]
    assert x.shape == (100, 12) and float(x.sum()) > 0


@pytest.mark.parametrize("neuron", ["culif", "adlif"])
@pytest.mark.parametrize("coding", ["fs", "fr"])
def test_configs_resolve(neuron: str, coding: str) -> None:
    from sjframe.core.config import load_yaml
    from sjframe.methods.surrogate.config import resolve_config

    cfg = resolve_config(load_yaml(ROOT / "configs" / f"spoken_digits_{neuron}_{coding}.yaml"))
    assert cfg.data.name == "spoken_digits" and cfg.data.options == {"variant": "small", "num_classes": 10}
    assert cfg.model.options["neuron_type"] == neuron
    assert cfg.loss.mode == {"fs": "first_time", "fr": "firing_rate"}[coding]


def _fake_renderer(calls: list) -> object:
    from sjframe.speech.generate import Rendered

    def render(task: tuple) -> Rendered:
        utterance = task[0]
        calls.append((utterance.split, utterance.label, utterance.index))
        rng = np.random.default_rng(utterance.cochlea_seed)
        n = int(rng.integers(3, 9))
        return Rendered(np.sort(rng.random(n)).astype(np.float32), rng.integers(0, task[1], n).astype(np.uint16), 0.5)

    return render


def test_generator_cache_resumes_and_reuses_a_smaller_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sjframe.speech
    import sjframe.speech.generate as gen

    monkeypatch.setattr(sjframe.speech, "require_speech_packages", lambda: None)
    monkeypatch.setattr(gen, "_warm_up", lambda *args: None)
    calls: list = []
    monkeypatch.setattr(gen, "_render_task", _fake_renderer(calls))
    small = GeneratorConfig(classes=10, variants=4, test_fraction=0.5, seed=3, channels=12)
    cache = tmp_path / "cache"
    first = gen.generate_dataset(small, tmp_path / "a", workers=1, progress=False, cache_dir=cache)
    assert len(calls) == 40 and len(list(cache.glob("*.npz"))) == 40
    calls.clear()  # same version again: everything from the cache, identical files
    again = gen.generate_dataset(small, tmp_path / "b", workers=1, progress=False, cache_dir=cache)
    assert calls == []
    for split in ("train", "test"):
        with h5py.File(first[split], "r") as f, h5py.File(again[split], "r") as g:
            for i in range(len(f["labels"])):
                assert np.array_equal(f["spikes/times"][i], g["spikes/times"][i])
                assert np.array_equal(f["spikes/units"][i], g["spikes/units"][i])
    # a larger version with the same seed renders only the utterances the smaller one did not have
    big = GeneratorConfig(classes=10, variants=8, test_fraction=0.5, seed=3, channels=12)
    gen.generate_dataset(big, tmp_path / "c", workers=1, progress=False, cache_dir=cache)
    assert len(calls) == 40 and all(index >= 2 for _, _, index in calls)
    # a corrupt cache file is a clear error naming it
    victim = cache / f"{gen.cache_key(gen.plan_utterances(small)['train'][0], 12, small.ramp_s)}.npz"
    victim.write_bytes(b"not an npz")
    with pytest.raises(ValueError, match=victim.name):
        gen.generate_dataset(small, tmp_path / "d", workers=1, progress=False, cache_dir=cache)
