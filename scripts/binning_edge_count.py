"""How many events of an SHD-layout file change bin between the original code's binning and sjframe's.

The original code (seed 003) bins an event at ``floor(t * 1000 / dt)``; sjframe at
``floor(t * 1000 / dt + 1e-6)`` (``sjframe/data/binning.py``, ``EDGE_TOLERANCE``), so that a decimal bin edge
stored as a float slightly below it (0.02 s in float32 is 0.0199999996 s) lands in the bin it names. This
script counts the events whose bin differs under the two rules, in float64 arithmetic (sjframe reads the
float32 times as float64) and in float32 arithmetic (times kept as stored), and how many of them cross the
window end ``T`` (kept by one rule, dropped by the other). README, "Protocols: validated (default) or the
paper's": ``python scripts/binning_edge_count.py datasets/spoken_digits_small_train.h5
datasets/spoken_digits_small_test.h5 --dt 10 --T 80``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sjframe.data.binning import EDGE_TOLERANCE  # noqa: E402


def edge_moves(times_s: np.ndarray, dt_ms: float, T: int) -> dict[str, Any]:
    """Events whose bin differs between ``floor(t * 1000 / dt)`` and ``floor(t * 1000 / dt + EDGE_TOLERANCE)``.

    ``times_s``: event times in seconds as stored (any float dtype). Returns the number of events, the
    number that change bin in float64 and in float32 arithmetic, and of those how many change whether they
    fall inside the window ``bin < T``."""
    t32 = np.asarray(times_s, dtype=np.float32)
    t64 = t32.astype(np.float64)
    sjframe = np.floor(t64 * 1000.0 / dt_ms + EDGE_TOLERANCE)
    original64 = np.floor(t64 * 1000.0 / dt_ms)
    original32 = np.floor(t32 * np.float32(1000.0) / np.float32(dt_ms)).astype(np.float64)
    return {"events": int(t64.size),
            "moved_float64": int(np.count_nonzero(original64 != sjframe)),
            "moved_float32": int(np.count_nonzero(original32 != sjframe)),
            "window_changed_float64": int(np.count_nonzero((original64 < T) != (sjframe < T))),
            "window_changed_float32": int(np.count_nonzero((original32 < T) != (sjframe < T)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="SHD-layout HDF5 files")
    parser.add_argument("--dt", type=float, default=10.0, help="bin width in ms (default 10)")
    parser.add_argument("--T", type=int, default=80, help="window in bins (default 80)")
    args = parser.parse_args(argv)
    import h5py

    for path in args.files:
        with h5py.File(path, "r") as f:
            ragged = f["spikes/times"][()]
        times = np.concatenate([np.asarray(r) for r in ragged]) if len(ragged) else np.zeros(0, np.float32)
        out = edge_moves(times, args.dt, args.T)
        share = {k: 100.0 * out[k] / max(out["events"], 1) for k in ("moved_float64", "moved_float32")}
        print(f"{path}: {out['events']} events (stored as {times.dtype}); bin changed: {out['moved_float64']} "
              f"({share['moved_float64']:.3f} %) in float64 arithmetic, {out['moved_float32']} "
              f"({share['moved_float32']:.3f} %) in float32; in / out of the window T={args.T} changed: "
              f"{out['window_changed_float64']} (float64), {out['window_changed_float32']} (float32)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
