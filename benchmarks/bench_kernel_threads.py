"""How the CPU kernels scale with threads and where their data lives: time per neuron-step per thread.

For each neuron, the forward and backward kernel launches of one module call (``backend='cpu'``, the ``fast``
build, float32) are recorded and replayed through ``cupy_neurons.launch.launch`` on the same buffers (as the
``kernels alone`` column of ``bench_neurons.py``), at 1 and 2 threads, for two sizes: ``B = 128`` (T = 100, 256
neurons: 13 MB per sequence, streamed from memory) and ``B = 8`` (0.8 MB per sequence; each launch replayed once
untimed right before its timed replay, so that its sequences are in the L2 / L3 caches: the forward writes the
backward's inputs ``h_seq`` etc. with non-temporal stores, which leave them in memory only, so warming with the pair
of launches, as this script did until 2026-12-04, timed the backward reading them from memory). The table gives
nanoseconds per neuron-step per thread (``time x threads / (T x N)``): equal at 1 and 2 threads means the kernel
scales perfectly (bound by each core, not by the shared memory bandwidth); the cache-resident size shows the kernel's
arithmetic and cache traffic (and a launch's fixed cost, a few microseconds). All rows interleaved round by round, median.

    .venv/bin/python benchmarks/bench_kernel_threads.py [--repeats 21] [--warmup 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_neurons import _NEURONS, _Build, _rotated, recorded_launches  # noqa: E402

from cupy_neurons import launch  # noqa: E402

SIZES = {"from memory (B = 128)": 128, "cache-resident (B = 8)": 8}
THREADS = (1, 2)


def record_launches(make: Callable[[int, str], torch.nn.Module], T: int, B: int, n_out: int) -> list[tuple]:
    """The forward and backward launches of one forward + backward of a fresh ``backend='cpu'`` module."""
    neuron = make(n_out, "cpu")
    x = (torch.randn(T, B, n_out) * 0.6 + 0.4).requires_grad_()
    r = torch.randn(T, B, n_out)
    with _Build("fast"):
        recorded = recorded_launches(lambda: neuron(x).backward(r))
    if len(recorded) != 2:
        raise SystemExit(f"bench_kernel_threads: expected a forward and a backward launch, got {len(recorded)}")
    return recorded


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--n-out", type=int, default=256)
    args = parser.parse_args(argv)
    if min(args.repeats, args.T, args.n_out) < 1 or args.warmup < 0:
        raise SystemExit("bench_kernel_threads: --repeats, --T, --n-out must be >= 1 and --warmup >= 0")
    T = args.T
    replays = {(name, size): record_launches(make, T, B, args.n_out)
               for name, (make, _) in _NEURONS.items() for size, B in SIZES.items()}
    times: dict[tuple, list[float]] = {(*key, threads, part): [] for key in replays for threads in THREADS
                                       for part in ("forward", "backward")}
    keys = [(key, threads) for key in replays for threads in THREADS]
    old_threads = torch.get_num_threads()
    try:
        with _Build("fast"):
            for rnd in range(args.warmup + args.repeats):
                for key, threads in _rotated(keys, rnd):
                    torch.set_num_threads(threads)  # the launcher runs torch.get_num_threads() OpenMP threads
                    for part, launch_args in zip(("forward", "backward"), replays[key], strict=True):
                        if SIZES[key[1]] < 128:  # bring this launch's sequences back into the caches (see above)
                            launch.launch(*launch_args)
                        t0 = time.perf_counter()
                        launch.launch(*launch_args)
                        if rnd >= args.warmup:
                            times[(*key, threads, part)].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)

    print(f"# CPU kernels replayed (fast build, float32), T = {T}, {args.n_out} neurons per sample, median of "
          f"{args.repeats} interleaved rounds (torch {torch.__version__}); ns per neuron-step per thread")
    print("| neuron | data | threads | forward ms | backward ms | forward ns | backward ns |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (name, size), B in ((key, SIZES[key[1]]) for key in replays):
        steps = T * B * args.n_out
        for threads in THREADS:
            fwd = statistics.median(times[(name, size, threads, "forward")])
            bwd = statistics.median(times[(name, size, threads, "backward")])
            print(f"| {name} | {size} | {threads} | {fwd * 1e3:.3f} | {bwd * 1e3:.3f} | "
                  f"{fwd * threads / steps * 1e9:.2f} | {bwd * threads / steps * 1e9:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
