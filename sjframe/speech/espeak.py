"""eSpeak NG speech synthesis through ctypes (the shared library shipped by ``espeakng-loader``).

``synthesize(text, VoiceSettings(...))`` returns mono int16 samples at ``SAMPLE_RATE`` = 22,050 Hz.
The C API used (``speak_lib.h``): ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)``
returns the sample rate; ``espeak_SetSynthCallback`` receives the samples in chunks;
``espeak_SetVoiceByName("<voice>+<variant>")`` picks a language voice (``en-US``, ``de``, ...) and a
voice variant (``m3``, ``f2``, ... from ``espeak-ng-data/voices/!v``); ``espeak_SetParameter`` sets
rate (words per minute), pitch (0..100) and pitch range (0..100); ``espeak_Synth`` speaks UTF-8 text;
``espeak_Synchronize`` waits for the end.

Reproducibility: the library keeps internal state from one utterance to the next (noise and pitch
generators, buffers), so the same call gives slightly different samples depending on what was
spoken before in the same process, and it draws noise from the C library's ``rand()``. Therefore
``synthesize(..., isolated=True)`` (the default) speaks every utterance in a freshly forked child
process that has never spoken before, with ``srand(1)`` (the state of a process that never called
``rand``): its output depends only on its arguments. The library is never initialised in the calling
process in that mode.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "MAX_RATE",
    "MIN_RATE",
    "SAMPLE_RATE",
    "VoiceSettings",
    "espeak_data_path",
    "list_variants",
    "list_voices",
    "synthesize",
]

SAMPLE_RATE = 22050
MIN_RATE = 80  # espeakRATE_MINIMUM, words per minute
MAX_RATE = 450  # espeakRATE_MAXIMUM

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class VoiceSettings:
    """How eSpeak NG speaks one utterance.

    ``voice``: language voice name (a file under ``espeak-ng-data/lang``, e.g. ``en-US``, ``en-GB-x-rp``,
    ``de``); ``variant``: voice variant (a file under ``espeak-ng-data/voices/!v``, e.g. ``m3``, ``f2``,
    ``Andy``) or ``None``; ``rate``: words per minute in [80, 450]; ``pitch`` and ``pitch_range`` in
    [0, 100] (eSpeak's defaults: 175, 50, 50).
    """

    voice: str
    variant: str | None = None
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.voice, str) or not self.voice or "+" in self.voice:
            raise ValueError(f"voice must be a non-empty voice name without '+', got {self.voice!r}")
        if self.variant is not None and (not isinstance(self.variant, str) or not self.variant or "+" in self.variant):
            raise ValueError(f"variant must be None or a non-empty name without '+', got {self.variant!r}")
        for name, lo, hi in (("rate", MIN_RATE, MAX_RATE), ("pitch", 0, 100), ("pitch_range", 0, 100)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")

    @property
    def name(self) -> str:
        """The string given to ``espeak_SetVoiceByName``: ``voice`` or ``voice+variant``."""
        return self.voice if self.variant is None else f"{self.voice}+{self.variant}"


def _loader():  # noqa: ANN202 - the optional module
    try:
        import espeakng_loader
    except ImportError as e:
        from sjframe.speech import INSTALL_HINT

        raise ImportError(f"espeakng-loader is not installed: {INSTALL_HINT}") from e
    return espeakng_loader


def espeak_data_path() -> Path:
    """The ``espeak-ng-data`` folder shipped by ``espeakng-loader``."""
    return Path(_loader().get_data_path())


def list_voices() -> list[str]:
    """Names of the language voices (files under ``espeak-ng-data/lang``), sorted."""
    root = espeak_data_path() / "lang"
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def list_variants() -> list[str]:
    """Names of the voice variants (files under ``espeak-ng-data/voices/!v``), sorted."""
    return sorted(p.name for p in (espeak_data_path() / "voices" / "!v").iterdir() if p.is_file())


def _check_settings(settings: VoiceSettings) -> None:
    voices = list_voices()
    if settings.voice not in voices:
        raise ValueError(f"unknown eSpeak NG voice {settings.voice!r}; valid: {voices}")
    if settings.variant is not None and settings.variant not in list_variants():
        raise ValueError(f"unknown eSpeak NG voice variant {settings.variant!r}; valid: {list_variants()}")


def _synthesize_here(text: str, settings: VoiceSettings, seed_rand: bool = False) -> bytes:
    """Speak ``text`` in this process; returns native-endian int16 samples as bytes.

    ``seed_rand``: call the C library's ``srand(1)`` right before synthesis (eSpeak NG draws noise from
    ``rand()``); only done in the isolated child, as it changes the process-wide ``rand`` state.
    """
    loader = _loader()
    lib = ctypes.CDLL(loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
        ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    lib.espeak_Synth.restype = ctypes.c_int

    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, loader.get_data_path().encode(), 0)
    if rate != SAMPLE_RATE:
        raise RuntimeError(f"espeak_Initialize returned {rate}, expected the sample rate {SAMPLE_RATE}")
    chunks: list[bytes] = []

    def on_samples(wav, n, _events) -> int:  # noqa: ANN001 - ctypes arguments
        if n > 0 and wav:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0  # continue synthesis

    callback = _CALLBACK(on_samples)  # kept alive until synthesis ends
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(settings.name.encode()) != _EE_OK:
        raise ValueError(f"espeak_SetVoiceByName({settings.name!r}) failed")
    for param, value in ((_PARAM_RATE, settings.rate), (_PARAM_PITCH, settings.pitch), (_PARAM_RANGE, settings.pitch_range)):
        if lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
            raise RuntimeError(f"espeak_SetParameter({param}, {value}) failed")
    encoded = text.encode("utf-8")
    if seed_rand:
        ctypes.CDLL(None).srand(1)
    if lib.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None) != _EE_OK:
        raise RuntimeError(f"espeak_Synth failed for {text!r}")
    lib.espeak_Synchronize()
    return b"".join(chunks)


def _synthesize_forked(text: str, settings: VoiceSettings) -> bytes:
    """Run ``_synthesize_here`` in a forked child; the child sends status byte + payload through a pipe."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        status = 1
        try:
            os.close(read_fd)
            try:
                payload = b"\x00" + _synthesize_here(text, settings, seed_rand=True)
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                payload = b"\x01" + f"{type(e).__name__}: {e}".encode()
            view = memoryview(payload)
            while view:
                view = view[os.write(write_fd, view) :]
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    parts = []
    with os.fdopen(read_fd, "rb") as pipe:
        while block := pipe.read(1 << 16):
            parts.append(block)
    _, wait_status = os.waitpid(pid, 0)
    data = b"".join(parts)
    if os.waitstatus_to_exitcode(wait_status) != 0 or not data:
        raise RuntimeError(f"the eSpeak NG child process failed for {text!r} ({settings.name}), status {wait_status}")
    if data[:1] != b"\x00":
        raise RuntimeError(f"eSpeak NG failed for {text!r} ({settings.name}): {data[1:].decode(errors='replace')}")
    return data[1:]


def synthesize(text: str, settings: VoiceSettings, isolated: bool = True) -> np.ndarray:
    """Speak ``text`` with ``settings``; returns mono int16 samples ``[n]`` at ``SAMPLE_RATE`` Hz.

    ``isolated=True`` speaks in a freshly forked process (output depends only on the arguments; POSIX
    only); ``isolated=False`` speaks in this process (faster, but the samples depend on what this
    process spoke before).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    if not isinstance(settings, VoiceSettings):
        raise ValueError(f"settings must be a VoiceSettings, got {type(settings).__name__}")
    _check_settings(settings)
    if isolated and not hasattr(os, "fork"):
        raise ValueError("isolated=True needs os.fork (POSIX); pass isolated=False on this platform")
    raw = _synthesize_forked(text, settings) if isolated else _synthesize_here(text, settings)
    samples = np.frombuffer(raw, dtype=np.int16).copy()
    if samples.size == 0:
        raise RuntimeError(f"eSpeak NG produced no samples for {text!r} ({settings.name})")
    return samples
