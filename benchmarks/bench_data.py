#!/usr/bin/env python
"""Data loading speed on a generated SHD-size file: reading, binning, cache, items, batches.

Writes a random file in SHD's layout (``--samples`` samples of ``--events`` events over
``--duration`` s, 700 units) to a temporary folder, then times each stage and prints a table of
seconds and samples/s. Example (the figures in the data developer's report)::

    nice -n 10 .venv/bin/python benchmarks/bench_data.py --samples 10000 --events 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sjframe.data import build_dataset, time_major_collate  # noqa: E402
from sjframe.data.binning import bin_events_chunked  # noqa: E402
from sjframe.data.shd import SHD_UNITS, read_shd_events  # noqa: E402
from sjframe.data.writers import write_shd_file  # noqa: E402


def _generate(path: Path, samples: int, events: int, duration: float, seed: int) -> int:
    rng = np.random.default_rng(seed)
    counts = rng.integers(events // 2, events * 3 // 2 + 1, size=samples)  # mean = events
    times = [np.sort(rng.uniform(0.0, duration, size=int(k))).astype(np.float32) for k in counts]
    units = [rng.integers(0, SHD_UNITS, size=int(k)) for k in counts]
    write_shd_file(path, times, units, [i % 20 for i in range(samples)])
    return int(counts.sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SHD-size data loading benchmark")
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--events", type=int, default=2000, help="mean events per sample")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds spanned by each sample's events")
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--dt", type=float, default=10.0, help="bin width in ms")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--items", type=int, default=2000, help="items densified one by one (subset)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows: list[tuple[str, float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        n_events = _generate(root / "shd_train.h5", args.samples, args.events, args.duration, args.seed)
        size_mb = (root / "shd_train.h5").stat().st_size / 2**20
        print(f"file: {args.samples} samples, {n_events} events, {size_mb:.0f} MiB "
              f"(written in {time.perf_counter() - t0:.1f} s); T={args.T}, dt={args.dt} ms")

        t0 = time.perf_counter()
        times, units, offsets, _ = read_shd_events(root / "shd_train.h5")
        rows.append(("read h5 (all samples)", time.perf_counter() - t0, args.samples))

        t0 = time.perf_counter()
        frames = bin_events_chunked(times, units, offsets, num_units=SHD_UNITS, T=args.T, dt_ms=args.dt, time_unit="s")
        rows.append(("bin all samples (vectorised)", time.perf_counter() - t0, args.samples))
        del times, units, offsets

        opts = {"root": root, "T": args.T, "dt": args.dt, "val_fraction": 0.0, "cache": True}
        t0 = time.perf_counter()
        build_dataset("shd", "train", **opts)
        rows.append(("build_dataset, cache miss (read+bin+save)", time.perf_counter() - t0, args.samples))
        t0 = time.perf_counter()
        ds = build_dataset("shd", "train", **opts)
        rows.append(("build_dataset, cache hit", time.perf_counter() - t0, args.samples))

        n_items = min(args.items, len(ds))
        t0 = time.perf_counter()
        for i in range(n_items):
            ds[i]
        rows.append((f"items one by one ([{args.T}, 700] frames)", time.perf_counter() - t0, n_items))

        loader = DataLoader(ds, batch_size=args.batch, shuffle=True, collate_fn=time_major_collate)
        t0 = time.perf_counter()
        seen = 0
        for x, _ in loader:
            seen += x.shape[1]
        rows.append((f"DataLoader epoch, batch {args.batch}, 0 workers", time.perf_counter() - t0, seen))
        assert frames.sample_counts().sum() == ds.event_counts().sum()

    print(f"\n| {'stage':<44} | {'seconds':>8} | {'samples/s':>10} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 12}|")
    for name, seconds, n in rows:
        print(f"| {name:<44} | {seconds:8.2f} | {n / seconds:10.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
