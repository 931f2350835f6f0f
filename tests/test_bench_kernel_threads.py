"""benchmarks/bench_kernel_threads.py: the replayed kernels at 1 and 2 threads, two sizes, and its table."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_kernel_threads  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the cpu backend needs g++")


def test_table_has_every_neuron_size_and_thread_count(capsys) -> None:  # noqa: ANN001
    threads = torch.get_num_threads()
    assert bench_kernel_threads.main(["--repeats", "1", "--warmup", "0", "--T", "3", "--n-out", "16"]) == 0
    assert torch.get_num_threads() == threads  # restored
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "ms |" not in line]
    expected = len(bench_kernel_threads._NEURONS) * len(bench_kernel_threads.SIZES) * len(bench_kernel_threads.THREADS)
    assert len(rows) == expected
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[2] in ("1", "2") and all(re.fullmatch(r"\d+\.\d+", c) for c in cells[3:]), line


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(SystemExit, match="--repeats"):
        bench_kernel_threads.main(["--repeats", "0"])
