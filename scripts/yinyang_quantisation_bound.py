"""Best accuracy any classifier can reach on the Yin-Yang input encodings (latency, latency_substep, raw).

* ``latency`` puts each of ``(x, y, 1 - x, 1 - y)`` at step ``floor(t_min + v * t_span + 0.5)``, so the
  network only sees a grid of ``~t_span`` values per coordinate. The bound is the Bayes accuracy of that
  grid: the majority class of each grid cell, learned on many samples, scored on fresh ones. It is why
  the latency configs use ``t_span = 30`` rather than 18.
* ``latency_substep`` (``sjframe/data/yinyang.py``) writes the event of continuous time ``s`` into step
  ``k = floor(s)`` with the amplitude ``exp(-(k + 1 - s) / tau_s)``; ``s = k + 1 + tau_s * ln(amplitude)``
  recovers the input. The bound is the accuracy of the true Yin-Yang rule applied to the coordinates
  decoded from the float32 frames: what is lost is float32 rounding only.
* ``raw``: the true rule on the float32 inputs (the labels are a function of ``(x, y)``: 100 % up to
  rounding on a region boundary).

``python scripts/yinyang_quantisation_bound.py [--t_span 18 30 40 60] [--tau_s 5]``
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sjframe.data.yinyang import encode_latency, make_yinyang, yinyang_class  # noqa: E402


def bound(t_span: float, t_min: float = 1.0, n_fit: int = 200_000, n_score: int = 20_000) -> float:
    """``latency``: accuracy of the per-cell majority class (cells = the four quantised input steps)."""
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


def _rule_accuracy(xy: np.ndarray, labels: np.ndarray) -> float:
    pred = np.array([yinyang_class(float(a), float(b)) for a, b in xy])
    return float(np.mean(pred == labels))


def substep_bound(t_span: float, tau_s: float = 5.0, t_min: float = 1.0, n_score: int = 20_000) -> float:
    """``latency_substep``: accuracy of the true rule on ``(x, y)`` decoded from the encoded float32 frames."""
    x, y = make_yinyang(n_score, 2)
    last = math.floor(t_min + t_span)
    frames, steps = encode_latency(x, last + 1, t_min, t_span, substep=True, tau_s=tau_s)
    amp = frames.double().gather(1, steps.unsqueeze(1)).squeeze(1)  # [n, 4]
    times = steps.double() + 1.0 + tau_s * torch.log(amp)
    decoded = ((times - t_min) / t_span)[:, :2].numpy()
    return _rule_accuracy(decoded, y.numpy())


def raw_bound(n_score: int = 20_000) -> float:
    """``raw``: accuracy of the true rule on the float32 inputs."""
    x, y = make_yinyang(n_score, 2)
    return _rule_accuracy(x[:, :2].double().numpy(), y.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t_span", type=float, nargs="+", default=[18, 30, 40, 60])
    parser.add_argument("--tau_s", type=float, default=5.0, help="latency_substep's tau_s (steps)")
    args = parser.parse_args()
    print(f"raw inputs (float32): {100 * raw_bound():.2f} %\n")
    print(f"| t_span | latency: best possible accuracy % | latency_substep (tau_s {args.tau_s:g}) % |\n|---:|---:|---:|")
    for t_span in args.t_span:
        print(f"| {t_span:g} | {100 * bound(t_span):.1f} | {100 * substep_bound(t_span, args.tau_s):.2f} |")


if __name__ == "__main__":
    main()
