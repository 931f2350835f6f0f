"""Spoken-digit data set in SHD's HDF5 layout, generated on this machine (eSpeak NG + lauscher's cochlea).

Classes: ``0..9`` = English "zero".."nine"; with ``classes=20`` also ``10..19`` = German
"null".."neun" (SHD's label order). Every utterance is spoken by a *speaker* (an eSpeak NG voice
variant such as ``m3`` or ``Andy`` with an English accent, a base pitch and a base rate; German words
use the ``de`` voice with the same variant), with its rate, pitch and pitch range jittered around the
speaker's, after a random onset of 0..``max_onset_s`` seconds of silence; then it goes through the
700-channel cochlea (``sjframe.speech.cochlea``), in its ``exact`` mode (stock lauscher's spikes bit for
bit, ~6 s per word) or its ``fast`` mode (the same model in distribution, ~0.45 s per word; ``cochlea``).

Harder versions (options, all off by default, so the default files are unchanged):

- ``noise="white" | "pink"`` with ``snr_db=(lo, hi)``: stationary background noise added to the whole
  waveform (the leading silence included) before the cochlea, at a signal-to-noise ratio drawn per
  utterance uniformly from ``[lo, hi]`` dB (``add_noise``); ``pad_to_s``: the waveform is first padded
  with trailing silence to at least this length, so the noise fills the readers' whole window (1 s).
  The word's timing is untouched; the noise fills every channel with spikes at all times, so spike
  *counts* carry less of the word.
- ``speakers_per_variant=K``: each eSpeak voice variant speaks as K speakers with their own accent, base
  pitch and base rate (more speakers, more voice variation); all K stay on the same side of the split.
- ``rate_jitter``, ``pitch_jitter``, ``max_onset_s``: the spread of speaking rate, pitch and leading
  silence around each speaker's (on the command line too).

Split by speaker: a seeded ``test_fraction`` of the speakers (whole voice variants) speak only in the
test file, so the test speakers are unseen in training. ``variants`` utterances per class in all: ``round(variants *
test_fraction)`` go to the test file, the rest to the training file.

File layout (SHD's, read by ``sjframe.data``'s SHD reader unchanged):

- ``spikes/times``: per-sample variable-length float32 arrays, spike times in seconds, sorted;
- ``spikes/units``: per-sample variable-length uint16 arrays, channel ids ``0..channels-1``;
- ``labels``: uint8 ``[n]``;
- ``extra/keys``: class names; ``extra/speaker``: uint16 ``[n]`` speaker id; ``extra/variant``: uint16
  ``[n]`` utterance index within its class and split; ``extra/speaker_names``: ``voice+variant`` per
  speaker id; ``extra/rate``, ``extra/pitch``, ``extra/pitch_range`` (eSpeak parameters),
  ``extra/onset_s`` (leading silence, s), ``extra/duration_s`` (audio length, s); with noise also
  ``extra/snr_db`` (float32, the utterance's signal-to-noise ratio);
- file attributes: the generator's settings (seed, classes, variants, ..., ``cochlea``: the mode).

Deterministic for a seed: every utterance's parameters and cochlea seed come from
``numpy.random.default_rng([seed, split, label, index])``, eSpeak NG speaks each utterance in a fresh
process, and results are written in plan order whatever the number of workers.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sjframe.speech.cochlea import COCHLEA_MODES, FAST_MODE_VERSION
from sjframe.speech.espeak import MAX_RATE, MIN_RATE, SAMPLE_RATE, VoiceSettings

__all__ = [
    "ENGLISH_ACCENTS",
    "GERMAN_VOICE",
    "SPEAKER_VARIANTS",
    "WORDS",
    "GeneratorConfig",
    "Speaker",
    "NOISE_KINDS",
    "Utterance",
    "add_noise",
    "generate_dataset",
    "main",
    "make_speakers",
    "plan_utterances",
    "cache_key",
    "render_utterance",
    "write_shd_file",
]

WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "null", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
)  # fmt: skip

# eSpeak NG voice variants that sound like distinct human speakers. Left out: robotic, whispering,
# croaking, Klatt and near-duplicate variants, and those with breath noise (Alicia, Reed, caleb, f2, f3, f5,
# sandro, victor), whose output is not reproducible from one run to the next.
SPEAKER_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f4",
    "Alex", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Henrique", "Hugo", "Jacky",
    "Lee", "Mario", "Michael", "Mike", "Nguyen", "adam", "anika", "announcer", "antonio", "aunty",
    "belinda", "benjamin", "boris", "david", "ed", "edward", "grandma", "grandpa", "gustave", "ian",
    "iven", "john", "linda", "marcelo", "max", "michel", "miguel", "norbert", "pablo", "paul", "pedro",
    "quincy", "rob", "robert", "shelby", "steph", "travis", "zac",
)  # fmt: skip
ENGLISH_ACCENTS: tuple[str, ...] = (
    "en-US", "en-GB-x-rp", "en", "en-GB-scotland", "en-029", "en-US-nyc", "en-GB-x-gbclan", "en-GB-x-gbcwmd",
)  # fmt: skip
GERMAN_VOICE = "de"
SPLIT_CODES = {"train": 0, "test": 1}
NOISE_KINDS = ("none", "white", "pink")


@dataclass(frozen=True)
class GeneratorConfig:
    """Settings of one generated data set (all validated).

    ``classes``: 10 (English digits) or 20 (English + German); ``variants``: utterances per class,
    train + test; ``test_fraction``: share of the speakers (and of each class's utterances) in the test
    file; ``seed``; ``channels``: cochlea channels (SHD: 700); ``max_onset_s``: longest leading silence;
    ``rate_jitter``: relative spread of the speaking rate around the speaker's; ``pitch_jitter``: spread
    of the pitch (eSpeak units, 0..100) around the speaker's; ``ramp_s``: Hann fade-in/out of the
    cochlea input (s); ``cochlea``: ``"exact"`` (stock lauscher's spikes bit for bit, ~4-6 s per word)
    or ``"fast"`` (the same model in distribution, ~0.45 s per word; ``sjframe.speech.cochlea``);
    ``noise``: background noise, ``"none"``, ``"white"`` or ``"pink"`` (power ~ 1/f); ``snr_db``: the
    range ``(lo, hi)`` of the per-utterance signal-to-noise ratio in dB (used only with noise);
    ``speakers_per_variant``: speakers made from each eSpeak voice variant (1: one per variant, as
    before the option existed); ``pad_to_s``: trailing silence added to make every waveform at least
    this long before the noise (0: none; costs cochlea time in proportion to the length).
    """

    classes: int = 10
    variants: int = 30
    test_fraction: float = 0.25
    seed: int = 0
    channels: int = 700
    max_onset_s: float = 0.05
    rate_jitter: float = 0.15
    pitch_jitter: int = 8
    ramp_s: float = 0.01
    cochlea: str = "exact"
    noise: str = "none"
    snr_db: tuple[float, float] = (0.0, 20.0)
    speakers_per_variant: int = 1
    pad_to_s: float = 0.0

    def __post_init__(self) -> None:
        if self.classes not in (10, 20):
            raise ValueError(f"classes must be 10 or 20, got {self.classes!r}")
        if isinstance(self.variants, bool) or not isinstance(self.variants, int) or self.variants < 2:
            raise ValueError(f"variants must be an int >= 2, got {self.variants!r}")
        if not (isinstance(self.test_fraction, int | float) and 0 < self.test_fraction < 1):
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction!r}")
        if not 1 <= round(self.variants * self.test_fraction) < self.variants:
            raise ValueError(
                f"variants={self.variants} with test_fraction={self.test_fraction} leaves no train or no test utterance"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or not 2 <= self.channels <= 65535:
            raise ValueError(f"channels must be an int in [2, 65535], got {self.channels!r}")
        if not (isinstance(self.max_onset_s, int | float) and 0 <= self.max_onset_s <= 1):
            raise ValueError(f"max_onset_s must be in [0, 1] seconds, got {self.max_onset_s!r}")
        if not (isinstance(self.rate_jitter, int | float) and 0 <= self.rate_jitter < 1):
            raise ValueError(f"rate_jitter must be in [0, 1), got {self.rate_jitter!r}")
        if isinstance(self.pitch_jitter, bool) or not isinstance(self.pitch_jitter, int) or not 0 <= self.pitch_jitter <= 50:
            raise ValueError(f"pitch_jitter must be an int in [0, 50], got {self.pitch_jitter!r}")
        if not (isinstance(self.ramp_s, int | float) and 0 <= self.ramp_s <= 0.1):
            raise ValueError(f"ramp_s must be in [0, 0.1] seconds, got {self.ramp_s!r}")
        if self.cochlea not in COCHLEA_MODES:
            raise ValueError(f"cochlea must be one of {COCHLEA_MODES}, got {self.cochlea!r}")
        if self.noise not in NOISE_KINDS:
            raise ValueError(f"noise must be one of {NOISE_KINDS}, got {self.noise!r}")
        snr = self.snr_db
        if (
            not isinstance(snr, tuple | list)
            or len(snr) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in snr)
            or not -30 <= snr[0] <= snr[1] <= 60
        ):
            raise ValueError(f"snr_db must be (lo, hi) dB with -30 <= lo <= hi <= 60, got {snr!r}")
        object.__setattr__(self, "snr_db", (float(snr[0]), float(snr[1])))
        k = self.speakers_per_variant
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 16:
            raise ValueError(f"speakers_per_variant must be an int in [1, 16], got {k!r}")
        if not (isinstance(self.pad_to_s, int | float) and not isinstance(self.pad_to_s, bool) and 0 <= self.pad_to_s <= 5):
            raise ValueError(f"pad_to_s must be in [0, 5] seconds, got {self.pad_to_s!r}")

    @property
    def n_test(self) -> int:
        """Test utterances per class."""
        return round(self.variants * self.test_fraction)

    @property
    def n_train(self) -> int:
        """Training utterances per class."""
        return self.variants - self.n_test


@dataclass(frozen=True)
class Speaker:
    """A speaker: eSpeak variant, English accent voice, base pitch (0..100) and base rate (words/min);
    ``copy``: which of the variant's ``speakers_per_variant`` speakers this is (0 for the first)."""

    id: int
    variant: str
    accent: str
    pitch: int
    rate: int
    copy: int = 0

    def voice(self, label: int) -> str:
        """The eSpeak language voice this speaker uses for class ``label``."""
        return self.accent if label < 10 else GERMAN_VOICE

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}" + (f"#{self.copy}" if self.copy else "")


@dataclass(frozen=True)
class Utterance:
    """One sample to render: the word, how it is spoken, and the seeds."""

    split: str
    label: int
    index: int
    speaker: int
    text: str
    settings: VoiceSettings
    onset_s: float
    cochlea_seed: int
    noise: str = "none"
    snr_db: float | None = None
    noise_seed: int = 0
    pad_to_s: float = 0.0


def make_speakers(
    seed: int, test_fraction: float = 0.25, speakers_per_variant: int = 1
) -> tuple[list[Speaker], list[Speaker]]:
    """All speakers with seeded accents, base pitches and rates, split into ``(train_speakers,
    test_speakers)`` by voice variant.

    The first speaker of each ``SPEAKER_VARIANTS`` entry has id = its index; the variants are shuffled by
    ``seed`` and the first ``round(n_variants * test_fraction)`` (at least one) go to the test side. With
    ``speakers_per_variant = K > 1`` each variant also speaks as K - 1 more speakers (``copy`` 1..K-1, id
    ``copy * n_variants + index``, accent, pitch and rate drawn after the split), on its variant's side:
    a test voice is never heard in training. K = 1 gives the speakers of the versions before the option.
    """
    rng = np.random.default_rng([seed, 0x5EA])

    def draw(index: int, copy: int) -> Speaker:
        return Speaker(
            id=copy * len(SPEAKER_VARIANTS) + index,
            variant=SPEAKER_VARIANTS[index],
            accent=ENGLISH_ACCENTS[int(rng.integers(len(ENGLISH_ACCENTS)))],
            pitch=int(rng.integers(25, 76)),
            rate=int(rng.integers(140, 211)),
            copy=copy,
        )

    speakers = [draw(i, 0) for i in range(len(SPEAKER_VARIANTS))]
    order = rng.permutation(len(SPEAKER_VARIANTS))
    speakers += [draw(i, copy) for copy in range(1, speakers_per_variant) for i in range(len(SPEAKER_VARIANTS))]
    n_test = max(1, round(len(SPEAKER_VARIANTS) * test_fraction))
    test_variants = {SPEAKER_VARIANTS[i] for i in order[:n_test]}
    test = sorted((s for s in speakers if s.variant in test_variants), key=lambda s: s.id)
    train = sorted((s for s in speakers if s.variant not in test_variants), key=lambda s: s.id)
    return train, test


def plan_utterances(config: GeneratorConfig) -> dict[str, list[Utterance]]:
    """Every utterance of the data set, per split, in file order (index-major, then label)."""
    train_speakers, test_speakers = make_speakers(config.seed, config.test_fraction, config.speakers_per_variant)
    plan: dict[str, list[Utterance]] = {}
    for split, pool, count in (("train", train_speakers, config.n_train), ("test", test_speakers, config.n_test)):
        utterances = []
        for index in range(count):
            for label in range(config.classes):
                rng = np.random.default_rng([config.seed, SPLIT_CODES[split], label, index])
                # the draws below keep their order; the noise draws come last, so a clean version's utterances
                # are those of the versions before the noise option, and a noisy one speaks the same words
                speaker = pool[(index * config.classes + label) % len(pool)]  # each class cycles through the pool
                rate = speaker.rate * (1 + config.rate_jitter * (2 * rng.random() - 1))
                pitch = speaker.pitch + int(rng.integers(-config.pitch_jitter, config.pitch_jitter + 1))
                settings = VoiceSettings(
                    voice=speaker.voice(label),
                    variant=speaker.variant,
                    rate=int(np.clip(round(rate), MIN_RATE, MAX_RATE)),
                    pitch=int(np.clip(pitch, 0, 100)),
                    pitch_range=int(rng.integers(20, 81)),
                )
                utterances.append(
                    Utterance(
                        split=split,
                        label=label,
                        index=index,
                        speaker=speaker.id,
                        text=WORDS[label],
                        settings=settings,
                        onset_s=float(np.round(rng.random() * config.max_onset_s, 4)),
                        cochlea_seed=int(rng.integers(2**32)),
                        **_noise_fields(config, rng),
                    )
                )
        plan[split] = utterances
    return plan


def _noise_fields(config: GeneratorConfig, rng: np.random.Generator) -> dict:
    """The utterance's padding and noise settings: its kind, an SNR uniform in ``config.snr_db`` (0.01 dB), a seed."""
    fields = {"pad_to_s": float(config.pad_to_s)} if config.pad_to_s else {}
    if config.noise == "none":
        return fields
    lo, hi = config.snr_db
    return fields | {
        "noise": config.noise,
        "snr_db": float(np.round(lo + (hi - lo) * rng.random(), 2)),
        "noise_seed": int(rng.integers(2**32)),
    }


def add_noise(wave: np.ndarray, speech: np.ndarray, kind: str, snr_db: float, seed: int) -> np.ndarray:
    """``wave`` plus stationary noise of ``kind`` at ``snr_db`` dB below the speech.

    ``wave``: float64 ``[n]``, the cochlea input (leading silence + speech); ``speech``: the spoken samples
    (the same scale), whose mean power ``P_s = mean(speech**2)`` sets the level. The noise ``z [n]`` covers
    the whole of ``wave``: Gaussian (``kind="white"``) or Gaussian with its spectrum shaped to power ~ 1/f
    (``"pink"``: amplitude ``1/sqrt(f)`` on the real FFT, DC removed), scaled so that
    ``mean(z**2) = P_s * 10**(-snr_db / 10)`` exactly. Deterministic for ``seed``.
    """
    if kind not in NOISE_KINDS or kind == "none":
        raise ValueError(f"kind must be 'white' or 'pink', got {kind!r}")
    if not np.isfinite(snr_db):
        raise ValueError(f"snr_db must be finite, got {snr_db!r}")
    wave = np.asarray(wave, dtype=np.float64)
    power = float(np.mean(np.square(speech, dtype=np.float64))) if np.size(speech) else 0.0
    if wave.ndim != 1 or wave.size < 2 or not power > 0:
        raise ValueError("add_noise needs a 1-d wave of >= 2 samples and speech with non-zero power")
    z = np.random.default_rng(seed).standard_normal(wave.size)
    if kind == "pink":
        spectrum = np.fft.rfft(z)
        f = np.arange(spectrum.size, dtype=np.float64)
        spectrum[0] = 0.0
        spectrum[1:] /= np.sqrt(f[1:])
        z = np.fft.irfft(spectrum, n=wave.size)
    z *= np.sqrt(power * 10.0 ** (-snr_db / 10.0) / np.mean(np.square(z)))
    return wave + z


@dataclass(frozen=True)
class Rendered:
    """A rendered utterance: spike times (s, float32 [S]), unit ids (uint16 [S]), audio length (s: leading
    silence + speech, without the padding)."""

    times: np.ndarray
    units: np.ndarray
    duration_s: float


def render_utterance(utterance: Utterance, channels: int = 700, ramp_s: float = 0.01, cochlea: str = "exact") -> Rendered:
    """Speak ``utterance`` (eSpeak NG, isolated process) and pass it through the cochlea (mode ``cochlea``)."""
    from sjframe.speech.cochlea import CochleaConfig, cochlea_spikes
    from sjframe.speech.espeak import synthesize

    samples = synthesize(utterance.text, utterance.settings).astype(np.float64) / 32768.0
    onset = np.zeros(int(round(utterance.onset_s * SAMPLE_RATE)))
    wave = np.concatenate([onset, samples])
    duration_s = wave.size / SAMPLE_RATE
    wave = np.concatenate([wave, np.zeros(max(0, int(round(utterance.pad_to_s * SAMPLE_RATE)) - wave.size))])
    if utterance.noise != "none":
        wave = add_noise(wave, samples, utterance.noise, utterance.snr_db, utterance.noise_seed)
    config = CochleaConfig(channels=channels, ramp_s=ramp_s, mode=cochlea)
    times, units = cochlea_spikes(wave, SAMPLE_RATE, utterance.cochlea_seed, config)
    return Rendered(times.astype(np.float32), units.astype(np.uint16), duration_s)


def _render_task(args: tuple[Utterance, int, float, str]) -> Rendered:
    return render_utterance(*args)


CACHE_VERSION = 1


def cache_key(utterance: Utterance, channels: int, ramp_s: float, cochlea: str = "exact") -> str:
    """File name (without suffix) of ``utterance``'s rendered spikes in a ``--cache`` folder: a hash of
    everything the rendering depends on (the utterance's text, voice settings, onset and cochlea seed, the
    channel count, the fade, the cochlea mode and the fast mode's version, the padding, the noise's kind, SNR and
    seed), so a cached result is reused
    only for an identical utterance and fast and exact renderings never mix. (The exact mode's keys are those of the versions
    before the fast mode existed, and a clean utterance's those of the versions before the noise option, so their
    caches stay valid.)"""
    if cochlea not in COCHLEA_MODES:
        raise ValueError(f"cochlea must be one of {COCHLEA_MODES}, got {cochlea!r}")
    fields = (
        CACHE_VERSION,
        utterance.text,
        utterance.settings,
        utterance.onset_s,
        utterance.cochlea_seed,
        int(channels),
        float(ramp_s),
    )
    if cochlea == "fast":
        fields = (*fields, cochlea, FAST_MODE_VERSION)
    if utterance.pad_to_s:
        fields = (*fields, "pad", utterance.pad_to_s)
    if utterance.noise != "none":
        fields = (*fields, utterance.noise, utterance.snr_db, utterance.noise_seed)
    text = repr(fields)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def load_cached(cache_dir: Path, key: str) -> Rendered | None:
    """The cached rendering ``<cache_dir>/<key>.npz``, or None if absent (a corrupt file is an error)."""
    path = Path(cache_dir) / f"{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            return Rendered(z["times"].astype(np.float32), z["units"].astype(np.uint16), float(z["duration_s"]))
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(f"corrupt cache file {path} ({e}); delete it to render that utterance again") from e


def save_cached(cache_dir: Path, key: str, rendered: Rendered) -> None:
    """Write ``rendered`` to ``<cache_dir>/<key>.npz`` atomically (temporary file + rename)."""
    path = Path(cache_dir) / f"{key}.npz"
    tmp = path.with_name(f"{key}.tmp.npz")
    np.savez(tmp, times=rendered.times, units=rendered.units, duration_s=np.float64(rendered.duration_s))
    os.replace(tmp, path)


def _warm_up(cochlea: str = "exact") -> None:
    """Compile (or load) the numba kernels of cochlea mode ``cochlea`` once, in the parent before forking."""
    from sjframe.speech.cochlea import CochleaConfig, cochlea_spikes

    t = np.arange(512) / SAMPLE_RATE
    cochlea_spikes(np.sin(2 * np.pi * 440 * t), SAMPLE_RATE, 0, CochleaConfig(channels=2, mode=cochlea))


def write_shd_file(
    path: Path, utterances: Sequence[Utterance], rendered: Sequence[Rendered], config: GeneratorConfig
) -> None:
    """Write one split in SHD's layout (see the module docstring); atomic (temporary file + rename)."""
    import h5py

    if len(utterances) != len(rendered):
        raise ValueError(f"{len(utterances)} utterances but {len(rendered)} rendered samples")
    train_speakers, test_speakers = make_speakers(config.seed, config.test_fraction, config.speakers_per_variant)
    speakers = sorted(train_speakers + test_speakers, key=lambda s: s.id)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        spikes = f.create_group("spikes")
        times = spikes.create_dataset("times", (len(rendered),), dtype=h5py.vlen_dtype(np.float32))
        units = spikes.create_dataset("units", (len(rendered),), dtype=h5py.vlen_dtype(np.uint16))
        for i, r in enumerate(rendered):
            times[i] = r.times
            units[i] = r.units
        f.create_dataset("labels", data=np.array([u.label for u in utterances], dtype=np.uint8))
        extra = f.create_group("extra")
        extra.create_dataset("keys", data=np.array([w.encode() for w in WORDS[: config.classes]]))
        extra.create_dataset("speaker_names", data=np.array([s.name.encode() for s in speakers]))
        extra.create_dataset("speaker", data=np.array([u.speaker for u in utterances], dtype=np.uint16))
        extra.create_dataset("variant", data=np.array([u.index for u in utterances], dtype=np.uint16))
        extra.create_dataset("rate", data=np.array([u.settings.rate for u in utterances], dtype=np.uint16))
        extra.create_dataset("pitch", data=np.array([u.settings.pitch for u in utterances], dtype=np.uint8))
        extra.create_dataset("pitch_range", data=np.array([u.settings.pitch_range for u in utterances], dtype=np.uint8))
        extra.create_dataset("onset_s", data=np.array([u.onset_s for u in utterances], dtype=np.float32))
        extra.create_dataset("duration_s", data=np.array([r.duration_s for r in rendered], dtype=np.float32))
        if config.noise != "none":
            extra.create_dataset("snr_db", data=np.array([u.snr_db for u in utterances], dtype=np.float32))
        for key, value in asdict(config).items():
            f.attrs[key] = value
        f.attrs["split"] = utterances[0].split if utterances else ""
        mode = f"{config.cochlea} mode" + (f" v{FAST_MODE_VERSION}" if config.cochlea == "fast" else "")
        noise = ""
        if config.noise != "none":
            noise = f", {config.noise} noise at {config.snr_db[0]:g}-{config.snr_db[1]:g} dB SNR"
        f.attrs["generator"] = f"sjframe.speech.generate (eSpeak NG via espeakng-loader, lauscher cochlea, {mode}{noise})"
    os.replace(tmp, path)


def generate_dataset(
    config: GeneratorConfig,
    out_dir: Path,
    name: str = "spoken_digits",
    workers: int | None = None,
    progress: bool = True,
    cache_dir: Path | None = None,
) -> dict[str, Path]:
    """Render every utterance of ``plan_utterances(config)`` and write ``<out_dir>/<name>_{train,test}.h5``.

    ``workers``: processes (default: all cores); results are identical for any number of workers.
    ``cache_dir``: if given, each rendered utterance is also saved there (``<cache_key>.npz``) as soon as
    it is done, and utterances already there are not rendered again: an interrupted generation resumes,
    and a larger version (more ``variants``, same seed) reuses the utterances of a smaller one.
    Returns ``{"train": path, "test": path}``.
    """
    from sjframe.speech import require_speech_packages

    require_speech_packages()
    if workers is None:
        workers = os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    if not name or "/" in name:
        raise ValueError(f"name must be a non-empty file-name prefix, got {name!r}")
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_utterances(config)
    tasks = [(u, config.channels, config.ramp_s, config.cochlea) for split in ("train", "test") for u in plan[split]]
    rendered: list[Rendered | None] = [None] * len(tasks)
    keys: list[str] = []
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        keys = [cache_key(*task) for task in tasks]
        rendered = [load_cached(cache_dir, key) for key in keys]
    todo = [i for i, r in enumerate(rendered) if r is None]
    bar = tqdm(
        total=len(tasks),
        initial=len(tasks) - len(todo),
        desc=f"{name} ({workers} workers)",
        unit="word",
        disable=not progress,
    )
    if todo:
        _warm_up(config.cochlea)  # forked workers inherit the compiled kernels

    def done(i: int, result: Rendered) -> None:
        rendered[i] = result
        if cache_dir is not None:
            save_cached(cache_dir, keys[i], result)
        bar.update()

    if workers == 1 or len(todo) <= 1:
        for i in todo:
            done(i, _render_task(tasks[i]))
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(workers) as pool:
            for i, result in zip(todo, pool.imap(_render_task, [tasks[i] for i in todo], chunksize=1), strict=True):
                done(i, result)
    bar.close()
    paths = {}
    start = 0
    for split in ("train", "test"):
        count = len(plan[split])
        paths[split] = out_dir / f"{name}_{split}.h5"
        part = rendered[start : start + count]
        assert all(r is not None for r in part)
        write_shd_file(paths[split], plan[split], part, config)  # type: ignore[arg-type]
        start += count
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``generate_spoken_digits.py --classes 10|20 --variants N --out DIR --seed S``."""
    parser = argparse.ArgumentParser(
        description="Generate an SHD-format spoken-digit data set (eSpeak NG voices through lauscher's cochlea).",
        epilog="Needs the optional packages of requirements-speech.txt (espeakng-loader, lauscher, numba).",
    )
    d = GeneratorConfig()  # the defaults live in the dataclass; the command line repeats none of them
    parser.add_argument("--classes", type=int, choices=(10, 20), default=d.classes,
                        help="10 English digits, or 20 with German")  # fmt: skip
    parser.add_argument("--variants", type=int, default=d.variants,
                        help=f"utterances per class, train + test (default {d.variants})")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("datasets"), help="output folder (default datasets/)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--name", default="spoken_digits", help="file prefix: <name>_{train,test}.h5")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--test-fraction", type=float, default=d.test_fraction,
                        help="share of speakers/utterances in the test file")  # fmt: skip
    parser.add_argument("--channels", type=int, default=d.channels, help=f"cochlea channels (default {d.channels}, as SHD)")
    parser.add_argument(
        "--cochlea",
        choices=COCHLEA_MODES,
        default=d.cochlea,
        help="exact: stock lauscher's spikes bit for bit (~4-6 s per word); fast: the same model in distribution "
        "(~0.45 s per word; recorded in the files' attributes and the cache keys)",
    )
    parser.add_argument(
        "--noise",
        choices=NOISE_KINDS,
        default=d.noise,
        help="background noise added before the cochlea: white, or pink (power ~ 1/f); default none",
    )
    parser.add_argument(
        "--snr",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        default=d.snr_db,
        help=f"with --noise: signal-to-noise ratio drawn per word uniformly in [LO, HI] dB (default {d.snr_db[0]:g} "
        f"{d.snr_db[1]:g})",
    )
    parser.add_argument(
        "--pad-to",
        type=float,
        default=d.pad_to_s,
        metavar="SECONDS",
        help="pad every waveform with trailing silence to at least this length before the noise (default 0: none)",
    )
    parser.add_argument(
        "--speakers-per-variant",
        type=int,
        default=d.speakers_per_variant,
        help=f"speakers made from each eSpeak voice variant (own accent, pitch, rate; default {d.speakers_per_variant})",
    )
    parser.add_argument("--rate-jitter", type=float, default=d.rate_jitter,
                        help=f"relative spread of the speaking rate ({d.rate_jitter})")  # fmt: skip
    parser.add_argument("--pitch-jitter", type=int, default=d.pitch_jitter,
                        help=f"spread of the pitch, eSpeak units 0..50 ({d.pitch_jitter})")  # fmt: skip
    parser.add_argument("--max-onset", type=float, default=d.max_onset_s,
                        help=f"longest leading silence, s ({d.max_onset_s})")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="folder keeping each rendered utterance: resumes an interrupted run, reuses a smaller version's words",
    )
    args = parser.parse_args(argv)
    from sjframe.speech import missing_speech_packages

    missing = missing_speech_packages()
    if missing:
        from sjframe.speech import INSTALL_HINT

        print(f"error: missing {', '.join(missing)}: {INSTALL_HINT}", file=sys.stderr)
        return 2
    try:
        config = GeneratorConfig(
            classes=args.classes,
            variants=args.variants,
            test_fraction=args.test_fraction,
            seed=args.seed,
            channels=args.channels,
            cochlea=args.cochlea,
            noise=args.noise,
            snr_db=tuple(args.snr),
            speakers_per_variant=args.speakers_per_variant,
            pad_to_s=args.pad_to,
            rate_jitter=args.rate_jitter,
            pitch_jitter=args.pitch_jitter,
            max_onset_s=args.max_onset,
        )
        paths = generate_dataset(
            config, args.out, name=args.name, workers=args.workers, progress=not args.no_progress, cache_dir=args.cache
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, path in paths.items():
        print(f"{split}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
