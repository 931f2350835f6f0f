"""benchmarks/bench_train.py: end-to-end runs per backend on a tiny config, and its table."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.entry_points import write_tiny_shd_config

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_train  # noqa: E402


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="the cpu backend needs g++")
def test_two_backends_two_rounds_with_test(tmp_path, capsys):
    config = write_tiny_shd_config(tmp_path, plots=False)
    assert bench_train.main([str(config), "--epochs", "1", "--rounds", "2", "--test", "--", "--train.max_batches", "2"]) == 0
    out = capsys.readouterr().out
    runs = re.findall(r"round (\d) +(torch|cpu): +([\d.]+) s wall +([\d.]+) s CPU, 1 epochs", out)
    # rounds alternate the order: torch, cpu, then cpu, torch
    assert [(r, b) for r, b, _, _ in runs] == [("0", "torch"), ("0", "cpu"), ("1", "cpu"), ("1", "torch")]
    assert all(float(wall) > 0 and float(cpu) > 0 for _, _, wall, cpu in runs)
    rows = {m[0]: m for m in re.findall(r"^\| (torch|cpu) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)x \| ([\d.]+)x \|", out, re.M)}
    assert set(rows) == {"torch", "cpu"} and rows["torch"][3] == "1.00"
    walls = {b: sorted(float(w) for _, bb, w, _ in runs if bb == b) for b in ("torch", "cpu")}
    median = {b: sum(v) / 2 for b, v in walls.items()}  # two rounds: the median is the mean of the two
    # the walls are printed to 0.1 s (each within 0.05 s of the value the ratio used) and the ratio to 0.01
    ratio = median["torch"] / median["cpu"]
    bound = ratio * (0.05 / median["torch"] + 0.05 / median["cpu"]) * 1.01 + 0.005
    assert float(rows["cpu"][3]) == pytest.approx(ratio, abs=bound)
    assert "test acc_fs / acc_fs_spike / acc_fr per round" in out
    assert re.search(r"\| cpu \|.*\| [\d.]+ / [\d.]+ / [\d.]+; [\d.]+ / [\d.]+ / [\d.]+ \|$", out, re.M)


def test_a_failing_run_names_the_command(tmp_path):
    config = write_tiny_shd_config(tmp_path, plots=False)
    with pytest.raises(SystemExit, match=r"exited with status 2: train.py: error: .*no_such_key"):
        bench_train.main([str(config), "--backends", "torch", "--rounds", "1", "--", "--train.no_such_key", "1"])
