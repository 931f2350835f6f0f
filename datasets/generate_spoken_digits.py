#!/usr/bin/env python
"""Generate an SHD-format spoken-digit data set on this machine (eSpeak NG voices through lauscher's cochlea).

Usage (from the repository root)::

    python datasets/generate_spoken_digits.py --classes 10|20 --variants N --out datasets/ --seed 0 [--workers W]

writes ``<out>/spoken_digits_{train,test}.h5`` in SHD's layout (``--name`` changes the prefix), read by
``build_dataset("spoken_digits", ...)``. Needs the optional packages of ``requirements-speech.txt``
(``pip install -r requirements-speech.txt``: espeakng-loader (eSpeak NG, GPL-3.0), lauscher (LGPL-2.1),
numba). See ``sjframe/speech/generate.py`` for the data set's design.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sjframe.speech.generate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
