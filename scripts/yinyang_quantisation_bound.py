"""Best accuracy any classifier can reach on latency-coded Yin-Yang inputs quantised to whole steps.

The latency encoder puts each of ``(x, y, 1 - x, 1 - y)`` at step ``floor(t_min + v * t_span + 0.5)``, so
the network only sees a grid of ``~t_span`` values per coordinate. This script estimates the Bayes
accuracy of that grid: the majority class of each grid cell, learned on many samples, scored on fresh
ones. It is why the default config uses ``t_span = 30`` rather than 18 (``python
scripts/yinyang_quantisation_bound.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sjframe.data.yinyang import make_yinyang  # noqa: E402


def bound(t_span: float, t_min: float = 1.0, n_fit: int = 200_000, n_score: int = 20_000) -> float:
    """Accuracy of the per-cell majority class (cells = the four quantised input steps)."""
    x_fit, y_fit = make_yinyang(n_fit, 1)
    x_score, y_score = make_yinyang(n_score, 2)

    def cells(x: np.ndarray) -> list[tuple[int, ...]]:
        steps = np.floor(t_min + x[:, :4] * t_span + 0.5).astype(int)
        return [tuple(row) for row in steps]

    votes: defaultdict[tuple[int, ...], Counter[int]] = defaultdict(Counter)
    for cell, label in zip(cells(x_fit.numpy()), y_fit.tolist(), strict=True):
        votes[cell][label] += 1
    pred = [votes[c].most_common(1)[0][0] if c in votes else 0 for c in cells(x_score.numpy())]
    return float(np.mean(np.array(pred) == y_score.numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t_span", type=float, nargs="+", default=[18, 30, 40, 60])
    args = parser.parse_args()
    print("| t_span | best possible accuracy % |\n|---:|---:|")
    for t_span in args.t_span:
        print(f"| {t_span:g} | {100 * bound(t_span):.1f} |")


if __name__ == "__main__":
    main()
