"""Speech synthesis and a cochlea model, used to generate SHD-format spoken-digit data on this machine.

The pipeline (see ``datasets/generate_spoken_digits.py``):

1. ``sjframe.speech.espeak``: eSpeak NG (from the ``espeakng-loader`` wheel, called through ctypes)
   speaks a word with a chosen voice, variant, rate, pitch and pitch range: mono int16 at 22,050 Hz.
2. ``sjframe.speech.cochlea``: lauscher's cochlea model (basilar membrane -> inner hair cell ->
   bushy cell, 700 channels) turns the waveform into spike times (s) and unit ids: ``exact`` mode,
   lauscher's plain-Python hair-cell and bushy-cell loops compiled by numba at run time (identical
   spikes for the same seed as stock lauscher); ``fast`` mode, the same model in distribution with a
   batched membrane and binomial fibre counts (about 13x faster).
3. ``sjframe.speech.generate``: the spoken-digit data set (10 English or 10 + 10 English/German
   digits, train/test split by speaker) written in SHD's HDF5 layout.

The three packages are optional extras (``requirements-speech.txt``); the core install does not
need them. Licences: eSpeak NG is GPL-3.0, lauscher LGPL-2.1, numba BSD-2-Clause. Only step 3's
HDF5 writing needs the core install; the generated files are read by ``sjframe.data``'s SHD reader.
"""

from __future__ import annotations

import importlib.util

__all__ = ["INSTALL_HINT", "SPEECH_PACKAGES", "missing_speech_packages", "require_speech_packages"]

# import name -> distribution name on PyPI
SPEECH_PACKAGES: dict[str, str] = {"espeakng_loader": "espeakng-loader", "lauscher": "lauscher", "numba": "numba"}

INSTALL_HINT = (
    "the spoken-digit generator needs the optional speech packages: "
    "`pip install -r requirements-speech.txt` (espeakng-loader: eSpeak NG, GPL-3.0; lauscher: LGPL-2.1; numba)"
)


def missing_speech_packages() -> list[str]:
    """PyPI names of the optional speech packages that cannot be imported here (empty when all are present)."""
    return [dist for module, dist in SPEECH_PACKAGES.items() if importlib.util.find_spec(module) is None]


def require_speech_packages() -> None:
    """Raise ``ImportError`` naming the missing optional packages and how to install them."""
    missing = missing_speech_packages()
    if missing:
        raise ImportError(f"missing {', '.join(missing)}: {INSTALL_HINT}")
