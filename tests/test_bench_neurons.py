"""benchmarks/bench_neurons.py: the copy that sets the memory-bound limit, and the neuron-alone table."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_neurons  # noqa: E402


def _cache(root: Path, index: int, level: int, size: str) -> None:
    folder = root / f"index{index}"
    folder.mkdir(parents=True)
    (folder / "level").write_text(f"{level}\n")
    (folder / "size").write_text(f"{size}\n")


def test_last_level_cache_is_the_highest_level_in_sysfs(tmp_path: Path) -> None:
    _cache(tmp_path, 0, 1, "32K")
    _cache(tmp_path, 1, 1, "48K")
    _cache(tmp_path, 2, 2, "1024K")
    _cache(tmp_path, 3, 3, "32768K")
    assert bench_neurons.last_level_cache_bytes(tmp_path) == 32 * 2**20
    (tmp_path / "index3" / "size").write_text("2M\n")  # a smaller L3 still beats the larger L2: the level decides
    assert bench_neurons.last_level_cache_bytes(tmp_path) == 2 * 2**20


def test_last_level_cache_unknown_gives_none(tmp_path: Path) -> None:
    assert bench_neurons.last_level_cache_bytes(tmp_path / "missing") is None
    _cache(tmp_path, 0, 1, "garbage")
    (tmp_path / "index1").mkdir()  # no level / size files
    assert bench_neurons.last_level_cache_bytes(tmp_path) is None


def test_copy_arrays_follow_the_stream_rule() -> None:
    mib = 2**20
    assert bench_neurons.copy_array_bytes(13 * mib, 32 * mib) == 128 * mib  # 4x the cache beats 3 sequences
    assert bench_neurons.copy_array_bytes(100 * mib, 32 * mib) == 300 * mib  # 3 sequences beat 4x the cache
    assert bench_neurons.copy_array_bytes(13 * mib, None) == 4 * bench_neurons.DEFAULT_CACHE_BYTES
    assert bench_neurons.copy_array_bytes(13 * mib, 512 * mib) == bench_neurons.COPY_MAX_BYTES  # capped
    assert bench_neurons.copy_array_bytes(1001, None) % 4 == 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="the cpu backend needs g++")
def test_neuron_alone_table_has_every_neuron(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    monkeypatch.setattr(bench_neurons, "COPY_CACHE_FACTOR", 0)  # the copy of 3 tiny sequences: no 128 MiB arrays
    try:
        with torch.random.fork_rng():  # main seeds torch's global generator: other tests keep their stream
            bench_neurons.main(["--skip-linear", "--repeats", "1", "--warmup", "0", "--T", "3", "--B", "2",
                                "--n-out", "16", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert re.search(r"copy_ of two \d+ MiB arrays, .*: \d+\.\d GB/s", out), out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| neuron")]
    assert [line.split("|")[1].strip() for line in rows] == list(bench_neurons._NEURONS)
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(re.fullmatch(r"\d+\.\d+x?|\d+ (%|MB)", c) for c in cells[1:]), line
