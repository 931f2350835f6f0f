"""Neurons forward + backward on the CPU: the CPU kernels, the fused torch path and other libraries.

Two tables, all rows measured in one run, interleaved round by round so that machine load hits every
row alike (median wall time over ``--repeats`` rounds after warm-up; T = 100, B = 128, 256 neurons,
2 CPU threads by default):

The order of the rows is rotated by one every round, so that no row always follows the same one.

1. **The neuron alone** (``y = neuron(x); y.backward(r)``, ``x [T, B, 256]`` requiring grad): the fused
   torch path (``backend='torch'``) beside the CPU kernels (``backend='cpu'``: the ``fast`` host build, no
   FMA contraction, and the ``fma`` build with contraction), the speed-up, and the **memory-bound limit**:
   the bytes the neuron must read and write (the ``[T, N]`` sequences its forward and backward kernels
   touch, e.g. CuLIF: ``x``, ``s``, ``h`` forward, ``gs``, ``h``, ``dx`` backward) divided by the copy
   bandwidth measured in the same run (``dst.copy_(src)``, counted as read + write, of two float32 arrays of at
   least 4x the last-level cache each: STREAM's sizing rule, so that no copy reads from the cache what the previous
   one left there; arrays of 3 ``[T, N]`` sequences, 39 MB against a 32 MB cache, copied 9-42 % faster than
   128 MiB arrays in the same process). The copy's bandwidth still differs between processes on a shared virtual
   machine (33-39 or 50-60 GB/s here, where the kernels' times do not move with it): compare runs by their printed
   bandwidth. ``% of limit`` = limit / kernel time. ``kernels alone``: the same forward and backward kernel
   launches (recorded from one module call: same specialisation, sizes and tensors) replayed through
   ``cupy_neurons.launch.launch`` on those reused buffers, without the custom ops, autograd and fresh outputs of a
   module call; its ``% of limit`` shows how much of the gap is the kernels and how much the call around them.
   The last columns: the CPU kernels with bfloat16 storage
   (inputs, outputs and saved sequences in bfloat16, float32 arithmetic inside) and their speed-up over float32.
2. **Linear + neuron** (Linear 700 -> 256 without bias, ``loss = (layer(x) * r).sum(); loss.backward()``):
   the sjframe neurons on the fused torch path and on the CPU kernels beside SpikingJelly's ``LIFNode``,
   snnTorch and Norse; the ratio column is the time relative to ``LIFNode`` (torch backend).

    .venv/bin/python benchmarks/bench_neurons.py [--repeats 15] [--threads 2] [--T 100] [--B 128]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cupy_neurons import launch  # noqa: E402
from sjframe.neurons.adlif import AdLIF  # noqa: E402
from sjframe.neurons.culif import CuLIF, PCuLIF  # noqa: E402
from sjframe.neurons.lif import LIF  # noqa: E402


class _StepLoop(nn.Module):
    """Runs a single-step neuron (snnTorch, Norse cells) over time: ``[T, B, N] -> [T, B, N]``."""

    def __init__(self, cell: nn.Module, kind: str) -> None:
        super().__init__()
        self.cell, self.kind = cell, kind

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        out, state = [], None
        if self.kind == "snntorch":
            state = self.cell.init_leaky()
            for t in range(x_seq.shape[0]):
                spk, state = self.cell(x_seq[t], state)
                out.append(spk)
        else:
            for t in range(x_seq.shape[0]):
                spk, state = self.cell(x_seq[t], state)
                out.append(spk)
        return torch.stack(out)


#: neuron -> (constructor, [T, N] sequences its forward + backward kernels read or write with a loss on the spikes)
_NEURONS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "LIF": (lambda n, backend: LIF(tau_m=2.0, theta=1.0, backend=backend), 6),  # x s h | gs h dx
    "CuLIF": (lambda n, backend: CuLIF(tau_m=2.0, tau_s=2.0, theta=1.0, backend=backend), 6),  # x s h | gs h dx
    # + I_{t-1} written forward and read backward (the decay gradients)
    "PCuLIF": (lambda n, backend: PCuLIF(tau_m=2.0, tau_s=2.0, theta=1.0, per_neuron=True, num_neurons=n,
                                         backend=backend), 8),
    # x s h w_{t-1} | gs h x w_{t-1} dx
    "AdLIF": (lambda n, backend: AdLIF(num_neurons=n, tau_m=2.0, theta=1.0, backend=backend), 9),
}
#: row label -> host build of the CPU-kernel rows ($SJFRAME_HOST_BUILD while the row runs; None: torch)
_BUILDS = {"torch": None, "cpu": "fast", "cpu fma": "fma", "cpu bf16": "fast"}
#: row label -> storage dtype of the neuron alone (table 1); the kernels compute in float32 either way
_DTYPES = {"cpu bf16": torch.bfloat16}


class _Build:
    """Sets ``$SJFRAME_HOST_BUILD`` for one row's run (the launcher reads it at every launch)."""

    def __init__(self, kind: str | None) -> None:
        self.kind, self.old = kind, None

    def __enter__(self) -> None:
        self.old = os.environ.get("SJFRAME_HOST_BUILD")
        if self.kind is not None:
            os.environ["SJFRAME_HOST_BUILD"] = self.kind

    def __exit__(self, *exc: object) -> None:
        if self.old is None:
            os.environ.pop("SJFRAME_HOST_BUILD", None)
        else:
            os.environ["SJFRAME_HOST_BUILD"] = self.old


def recorded_launches(call: Callable[[], object]) -> list[tuple]:
    """The arguments of every kernel launch the ops make while ``call()`` runs (the launches still run), in order:
    each can be replayed with ``launch.launch(*args)`` on the same tensors."""
    import cupy_neurons.ops as ops

    recorded: list[tuple] = []

    def recorder(*launch_args: object) -> None:
        recorded.append(launch_args)
        launch.launch(*launch_args)

    ops.launch = recorder
    try:
        call()
    finally:
        ops.launch = launch.launch
    return recorded


def _candidates(n_out: int) -> dict[str, tuple[Callable[[], nn.Module], str | None]]:
    rows: dict[str, tuple[Callable[[], nn.Module], str | None]] = {}
    for label, build in (("torch", None), ("cpu", "fast")):
        for name, (make, _) in _NEURONS.items():
            rows[f"sjframe {name} ({label})"] = (lambda make=make, label=label: make(n_out, label), build)
    try:
        from spikingjelly.activation_based import neuron as sj_neuron

        rows["SpikingJelly LIFNode (torch)"] = (lambda: sj_neuron.LIFNode(tau=2.0, step_mode="m"), None)
    except ImportError as exc:  # pragma: no cover
        print(f"# SpikingJelly missing: {exc}")
    try:
        import snntorch

        rows["snnTorch Leaky"] = (lambda: _StepLoop(snntorch.Leaky(beta=0.5), "snntorch"), None)
    except ImportError as exc:  # pragma: no cover
        print(f"# snnTorch missing: {exc}")
    try:
        import norse.torch as norse

        rows["Norse LIF"] = (lambda: norse.LIF(), None)  # time-major [T, B, N] multi-step module
    except ImportError as exc:  # pragma: no cover
        print(f"# Norse missing: {exc}")
    return rows


#: STREAM's rule: each array of the copy at least this many times the last-level cache
COPY_CACHE_FACTOR = 4
#: the copy's arrays at most this many bytes each (a cache above 256 MiB gets arrays below its 4x, said in the output)
COPY_MAX_BYTES = 2**30
#: the last-level cache assumed where sysfs does not give it
DEFAULT_CACHE_BYTES = 32 * 2**20
_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def last_level_cache_bytes(root: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The size in bytes of cpu0's highest-level cache (the largest one at that level), from Linux sysfs
    (``index*/level`` and ``index*/size``, e.g. ``32768K``); None where sysfs does not say."""
    best: tuple[int, int] | None = None
    for index in sorted(root.glob("index*")):
        try:
            level = int((index / "level").read_text())
            match = re.fullmatch(r"(\d+)([KMG]?)", (index / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if match is None:
            continue
        size = int(match[1]) * _SIZE_UNITS[match[2]]
        if best is None or (level, size) > best:
            best = (level, size)
    return None if best is None else best[1]


def copy_array_bytes(sequence_bytes: int, cache_bytes: int | None) -> int:
    """Bytes of each of the copy's two arrays: the larger of :data:`COPY_CACHE_FACTOR` x the last-level cache
    (:data:`DEFAULT_CACHE_BYTES` when unknown) and 3 of the neuron's ``[T, N]`` sequences, at most
    :data:`COPY_MAX_BYTES`, a whole number of float32 values."""
    want = max(COPY_CACHE_FACTOR * (cache_bytes or DEFAULT_CACHE_BYTES), 3 * sequence_bytes)
    return min(want, COPY_MAX_BYTES) // 4 * 4


def _rotated(keys: list, rnd: int) -> list:
    """The rows of round ``rnd`` in an order rotated by one each round, so that no row always follows the same one
    (a row right after the fused torch path measured consistently slower than the same kernels one row later)."""
    k = rnd % len(keys)
    return keys[k:] + keys[:k]


def _median_ms(ts: list[float]) -> float:
    return statistics.median(ts) * 1e3


def neuron_alone(args: argparse.Namespace) -> None:
    """Table 1: each neuron alone on the fused torch path and the CPU kernels, and the copy-bandwidth limit."""
    T, B, N = args.T, args.B, args.n_out
    x32 = torch.randn(T, B, N) * 0.6 + 0.4
    r32 = torch.randn(T, B, N)
    inputs = {dtype: (x32.to(dtype).requires_grad_(), r32.to(dtype))
              for dtype in {torch.float32, *_DTYPES.values()}}
    cache = last_level_cache_bytes()
    copy_bytes = copy_array_bytes(T * B * N * 4, cache)
    src, dst = torch.randn(copy_bytes // 4), torch.empty(copy_bytes // 4)
    rows = {(name, label): (make(N, "torch" if build is None else "cpu").to(_DTYPES.get(label, torch.float32)), build,
                            _DTYPES.get(label, torch.float32))
            for name, (make, _) in _NEURONS.items() for label, build in _BUILDS.items()}

    def run(neuron: nn.Module, build: str | None, dtype: torch.dtype) -> float:
        x, r = inputs[dtype]
        x.grad = None
        for p in neuron.parameters():
            p.grad = None
        neuron.reset()
        with _Build(build):
            t0 = time.perf_counter()
            neuron(x).backward(r)
            return time.perf_counter() - t0

    def copy() -> float:
        t0 = time.perf_counter()
        dst.copy_(src)
        return time.perf_counter() - t0

    def record_launches(neuron: nn.Module) -> list[tuple]:
        """The kernel launches of one forward + backward of ``neuron`` (fast build, float32), with their tensors."""
        return recorded_launches(lambda: run(neuron, "fast", torch.float32))

    replays = {name: record_launches(rows[(name, "cpu")][0]) for name in _NEURONS}

    def replay(name: str) -> float:
        with _Build("fast"):
            t0 = time.perf_counter()
            for launch_args in replays[name]:
                launch.launch(*launch_args)
            return time.perf_counter() - t0

    jobs: dict[object, Callable[[], float]] = {key: (lambda row=row: run(*row)) for key, row in rows.items()}
    jobs.update({("kernels", name): (lambda name=name: replay(name)) for name in _NEURONS})
    jobs["copy"] = copy
    times: dict[object, list[float]] = {key: [] for key in jobs}
    for rnd in range(args.warmup + args.repeats):
        for key in _rotated(list(jobs), rnd):
            elapsed = jobs[key]()
            if rnd >= args.warmup:
                times[key].append(elapsed)
    bandwidth = 2 * src.numel() * 4 / statistics.median(times["copy"])  # bytes read + written per second
    print(f"# The neuron alone, forward + backward (loss on the spikes), T = {T}, B = {B}, N = {N}, "
          f"{args.threads} CPU threads, float32, median of {args.repeats} interleaved rounds (torch {torch.__version__})")
    rule = "unknown last-level cache" if cache is None else f"{cache / 2**20:.0f} MiB last-level cache"
    if cache is not None and copy_bytes < COPY_CACHE_FACTOR * cache:
        rule += f", arrays capped at {COPY_MAX_BYTES / 2**20:.0f} MiB: below STREAM's {COPY_CACHE_FACTOR}x"
    print(f"# copy bandwidth (copy_ of two {copy_bytes / 2**20:.0f} MiB arrays, {rule}; read + write) measured in this "
          f"run: {bandwidth / 1e9:.1f} GB/s")
    print("| neuron | fused torch ms | cpu kernels ms | speed-up | cpu fma build ms | bytes read + written | "
          "memory-bound limit ms | % of limit | kernels alone ms | % of limit, kernels alone | "
          "cpu, bfloat16 storage ms | bfloat16 / float32 speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (_, seqs) in _NEURONS.items():
        torch_ms, cpu_ms, fma_ms, bf16_ms = (_median_ms(times[(name, label)]) for label in _BUILDS)
        nbytes = seqs * T * B * N * 4
        limit_ms = nbytes / bandwidth * 1e3
        alone_ms = _median_ms(times[("kernels", name)])
        print(f"| {name} | {torch_ms:.1f} | {cpu_ms:.1f} | {torch_ms / cpu_ms:.2f}x | {fma_ms:.1f} | "
              f"{nbytes / 1e6:.0f} MB | {limit_ms:.1f} | {100 * limit_ms / cpu_ms:.0f} % | {alone_ms:.1f} | "
              f"{100 * limit_ms / alone_ms:.0f} % | {bf16_ms:.1f} | {cpu_ms / bf16_ms:.2f}x |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--B", type=int, default=128)
    parser.add_argument("--n-in", type=int, default=700)
    parser.add_argument("--n-out", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-alone", action="store_true", help="only the Linear + neuron table")
    parser.add_argument("--skip-linear", action="store_true", help="only the neuron-alone table")
    parser.add_argument("--malloc-tune", choices=("on", "off"), default="on",
                        help="on: glibc keeps freed blocks <= 32 MiB (cupy_neurons.launch.tune_cpu_allocator, what the "
                             "CPU kernels do at their first launch) from the start, for every row alike; off: never")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.malloc_tune == "on":
        print(f"# allocator tuned for every row: {launch.tune_cpu_allocator()}")
    else:
        os.environ[launch.MALLOC_TUNE_ENV] = "0"
        print("# allocator left as it is (glibc defaults) for every row")
    if not args.skip_alone:
        neuron_alone(args)
        print()
    if args.skip_linear:
        return

    x = (torch.rand(args.T, args.B, args.n_in) < 0.05).float()
    r = torch.randn(args.T, args.B, args.n_out)
    layers = {}
    builds = {}
    for name, (make, build) in _candidates(args.n_out).items():
        linear = nn.Linear(args.n_in, args.n_out, bias=False)
        nn.init.normal_(linear.weight, 0.0, 4.0 / args.n_in**0.5)
        layers[name] = (linear, make())
        builds[name] = build

    def run(linear: nn.Module, neuron: nn.Module, build: str | None) -> float:
        for p in list(linear.parameters()) + list(neuron.parameters()):
            p.grad = None
        if hasattr(neuron, "reset"):
            neuron.reset()
        with _Build(build):
            t0 = time.perf_counter()
            y = neuron(linear(x))
            if isinstance(y, tuple):  # Norse returns (spikes, state)
                y = y[0]
            (y * r).sum().backward()
            elapsed = time.perf_counter() - t0
        layers_rate[id(neuron)] = y.mean().item()
        return elapsed

    layers_rate: dict[int, float] = {}
    times: dict[str, list[float]] = {name: [] for name in layers}
    for rnd in range(args.warmup + args.repeats):  # interleaved rounds, the order rotated
        for name in _rotated(list(layers), rnd):
            elapsed = run(*layers[name], builds[name])
            if rnd >= args.warmup:
                times[name].append(elapsed)

    ref_name = "SpikingJelly LIFNode (torch)"
    ref = statistics.median(times[ref_name]) if ref_name in times else float("nan")
    print(f"# Linear({args.n_in} -> {args.n_out}) + neuron, forward + backward, T = {args.T}, B = {args.B}, "
          f"{args.threads} CPU threads, median of {args.repeats} (torch {torch.__version__})")
    print(f"| {'layer':30s} | median ms | vs SJ LIFNode | firing rate |")
    print(f"|{'-' * 32}|----------:|-------------:|------------:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        rate = layers_rate[id(layers[name][1])]
        print(f"| {name:30s} | {med * 1e3:9.1f} | {med / ref:11.2f}x | {rate:11.3f} |")


if __name__ == "__main__":
    main()
