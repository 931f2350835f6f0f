"""scripts/yinyang_baselines.py: the summary statistics and the raw splits it fits on."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("_yinyang_baselines", ROOT / "scripts" / "yinyang_baselines.py")
baselines = importlib.util.module_from_spec(spec)
spec.loader.exec_module(baselines)


def test_summary_is_mean_sd_and_t_interval_in_percent() -> None:
    values = [0.9, 0.95, 0.97]
    mean, sd = 100 * np.mean(values), 100 * np.std(values, ddof=1)
    low, high = stats.t.interval(0.95, 2, loc=mean, scale=sd / np.sqrt(3))
    assert baselines.summary(values) == f"{mean:.2f} ± {sd:.2f} % [{low:.2f}, {high:.2f}]"
    assert baselines.summary([0.642]) == "64.20 %"


def test_raw_splits_are_the_published_sizes_and_disjoint() -> None:
    x_train, y_train = baselines.split_arrays("train")
    x_test, y_test = baselines.split_arrays("test")
    assert x_train.shape == (5000, 4) and x_test.shape == (1000, 4)
    assert set(np.unique(y_train)) == {0, 1, 2}
    np.testing.assert_allclose(x_train[:, 2], 1 - x_train[:, 0], atol=1e-6)  # (x, y, 1 - x, 1 - y)
    assert not (x_train[:, None, :2] == x_test[None, :, :2]).all(-1).any()

