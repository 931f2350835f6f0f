#!/usr/bin/env python
"""Convert raw N-MNIST (40-bit ``.bin`` files) to the HDF5 files sjframe reads.

Usage: ``python datasets/convert_nmnist.py RAW_ROOT [OUT_DIR]`` where ``RAW_ROOT`` holds
``Train/<digit>/*.bin`` and ``Test/<digit>/*.bin`` (the unpacked ``Train.zip`` / ``Test.zip``);
writes ``OUT_DIR/nmnist_train.h5`` and ``OUT_DIR/nmnist_test.h5`` (``OUT_DIR`` defaults to
``datasets``). See ``sjframe/data/nmnist.py`` for the layout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sjframe.data.nmnist import convert_nmnist  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw_root", type=Path, help="folder with Train/ and Test/ (digit sub-folders of .bin files)")
    parser.add_argument("out_dir", type=Path, nargs="?", default=Path("datasets"), help="where nmnist_{train,test}.h5 go")
    args = parser.parse_args(argv)
    for folder, split in (("Train", "train"), ("Test", "test")):
        out = convert_nmnist(args.raw_root / folder, args.out_dir / f"nmnist_{split}.h5")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
