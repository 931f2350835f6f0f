"""Non-spiking baselines for the default experiment's table: the same Yin-Yang splits, raw inputs.

A stopgap until baselines are models inside the framework (issue #17): scikit-learn's logistic
regression and a one-hidden-layer MLP (200 ReLU units, as many as the SNN's hidden layer) on the raw
inputs ``(x, y, 1 - x, 1 - y)`` of ``build_dataset("yinyang", split, encoding="raw")``, fitted on the
training split and scored on the test split; no setting is chosen on either (fixed defaults, no search).
Prints mean ± sd and the 95 % t interval over seeds (the seed changes the MLP's initialisation and
batch order; logistic regression is deterministic)::

    python scripts/yinyang_baselines.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sjframe.data import build_dataset  # noqa: E402


def split_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x [n, 4], y [n])`` of a Yin-Yang split, raw encoding."""
    data = build_dataset("yinyang", split, encoding="raw")
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    return np.stack([x.numpy() for x in xs]), np.array(ys)


def summary(values: list[float]) -> str:
    """``mean ± sd [95 % t interval]`` in percent (sd and interval omitted for one value)."""
    a = 100.0 * np.asarray(values)
    if len(a) < 2:
        return f"{a.mean():.2f} %"
    sd = a.std(ddof=1)
    half = stats.t.ppf(0.975, len(a) - 1) * sd / np.sqrt(len(a))
    return f"{a.mean():.2f} ± {sd:.2f} % [{a.mean() - half:.2f}, {a.mean() + half:.2f}]"


def main() -> None:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    x_train, y_train = split_arrays("train")
    x_test, y_test = split_arrays("test")
    # logistic regression has no randomness (lbfgs on a convex loss): one fit serves every seed
    logistic = LogisticRegression(max_iter=2000).fit(x_train, y_train).score(x_test, y_test)
    rows = {"logistic regression (deterministic)": [logistic], "MLP 4-200-3 (ReLU, Adam, 500 epochs)": []}
    for seed in args.seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp = MLPClassifier(hidden_layer_sizes=(200,), max_iter=500, random_state=seed).fit(x_train, y_train)
        rows["MLP 4-200-3 (ReLU, Adam, 500 epochs)"].append(mlp.score(x_test, y_test))
    print(f"Yin-Yang test accuracy, {len(x_train)} train / {len(x_test)} test samples, seeds {args.seeds}")
    for name, values in rows.items():
        print(f"  {name:40s} {summary(values)}   per seed: {', '.join(f'{100 * v:.1f}' for v in values)}")


if __name__ == "__main__":
    main()
