"""scripts/binning_edge_count.py: which event times change bin between floor and floor(+1e-6)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np

from sjframe.data.binning import bin_events

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("_binning_edge_count", ROOT / "scripts" / "binning_edge_count.py")
edge = importlib.util.module_from_spec(spec)
spec.loader.exec_module(edge)


def test_counts_decimal_edges_stored_below_the_edge() -> None:
    # 0.02 s and 0.41 s as float32 lie less than 1e-8 s below their decimal edge (plain floor in float64: bins 1
    # and 40; with the tolerance: 2 and 41); 0.39 s lies 1.4e-8 s below (bin 38 by both rules); 0.015 s is mid-bin
    times = np.array([0.015, 0.02, 0.39, 0.41], dtype=np.float32)
    assert np.float64(np.float32(0.02)) < 0.02 and np.float64(np.float32(0.41)) < 0.41
    out = edge.edge_moves(times, dt_ms=10.0, T=80)
    assert out["events"] == 4 and out["moved_float64"] == 2 and out["window_changed_float64"] == 0
    # the sjframe rule is the library's binning
    frames = bin_events(times.astype(np.float64), np.arange(4), np.array([0, 4]), num_units=4, T=80,
                        dt_ms=10.0, time_unit="s")
    assert frames.dense(0).nonzero().tolist() == [[1, 0], [2, 1], [38, 2], [41, 3]]


def test_window_end_crossing_is_counted() -> None:
    out = edge.edge_moves(np.array([0.02], np.float32), dt_ms=10.0, T=2)
    assert out["moved_float64"] == 1 and out["window_changed_float64"] == 1  # bin 1 (kept) vs 2 (dropped)


def test_main_reads_an_shd_layout_file(tmp_path, capsys) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        vlen = h5py.vlen_dtype(np.float32)
        ds = f.create_dataset("spikes/times", (2,), dtype=vlen)
        ds[0] = np.array([0.015, 0.02], np.float32)
        ds[1] = np.array([0.79], np.float32)
    assert edge.main([str(path), "--dt", "10", "--T", "80"]) == 0
    assert "3 events" in capsys.readouterr().out
