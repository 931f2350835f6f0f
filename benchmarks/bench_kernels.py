"""GPU speed of the neuron kernels: forward and forward+backward, torch vs sjframe cupy vs SpikingJelly.

For each neuron (CuLIF, PCuLIF per neuron, AdLIF, LIF) at N = 2^20 neurons (B x F) and T in
{8, 32, 128}: the median time of

* ``fwd``: ``layer(x)`` under ``torch.no_grad()``;
* ``fwd+bwd``: ``s = layer(x); s.backward(g)`` (gradient on the spikes; parameter gradients on);

for sjframe's ``backend='torch'`` and ``backend='cupy'`` layers and, in the LIF rows, SpikingJelly
2.0's ``LIFNode`` (soft reset, detach_reset) with each of its CUDA implementations (``cuda`` and
``triton``, chosen through ``SJ_LIF_CUDA_IMPLEMENTATION`` in a child process each; the faster is
its best; SpikingJelly 2.0.0 runs them only for a float32 state, and ``LIFNode`` keeps its state in
the input's dtype, so with ``--dtype float16 / bfloat16`` both are reported unavailable: its
module would run the torch reference). Achieved bandwidth = minimum bytes moved / time, shown as a
fraction of the measured device-to-device copy bandwidth (``dst.copy_(src)`` of 1 GiB: 2 GiB moved).

Minimum bytes moved, in [T, N] tensors of the storage dtype (per-neuron [N] terms are ignored):

=========== ================================ ===========================================
neuron      fwd (no grad)                    fwd+bwd (training)
=========== ================================ ===========================================
LIF, CuLIF  x in; s, h out: 3                fwd 3 + bwd (gs, h in; dx out) 3 = 6
PCuLIF      3                                fwd 4 (+ I_{t-1} saved) + bwd 4 = 8
AdLIF       3                                fwd 4 (+ w_{t-1} saved) + bwd 5 (also x) = 9
SJ LIFNode  x in; s out: 2                   fwd 3 (v saved) + bwd 3 = 6
=========== ================================ ===========================================

``--quick`` (the device check, ``scripts/gpu_checks.sh bench``): T in {32, 128}, median of 5, and a
block-size sweep: a LIF layer of N = 4096 / 16384 / 65536 neurons (B = 1, T = 128) with the block that
:func:`cupy_neurons.launch.block_size` picks from the SM count against a fixed 256.

Run on a machine with a GPU (exits with a message otherwise)::

    python3 benchmarks/bench_kernels.py [--dtype float32] [--repeats 20] [--T 8 32 128] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sjframe.neurons import build_neuron  # noqa: E402
from sjframe.neurons.base import cupy_unavailable_reason  # noqa: E402

N_NEURONS = 2**20
BATCH = 32
NEURONS = {  # row name -> (neuron_type, fwd units, fwd+bwd units)
    "CuLIF": ("culif", 3, 6),
    "PCuLIF": ("pculif_neuron", 3, 8),
    "AdLIF": ("adlif", 3, 9),
    "LIF": ("lif", 3, 6),
}
SJ_UNITS = (2, 6)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _time_ms(fn: Callable[[], None], repeats: int, warmup: int = 3) -> float:
    """Median of ``repeats`` CUDA-event timings of ``fn`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(repeats: int) -> float:
    """Device-to-device copy bandwidth in bytes/s (1 GiB source, read + write counted)."""
    src = torch.empty(2**28, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = _time_ms(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * src.element_size() / (ms * 1e-3)


def _fwd_and_train(layer: torch.nn.Module, x: torch.Tensor, reset: Callable[[torch.nn.Module], None],
                   repeats: int) -> tuple[float, float]:
    grad = torch.ones_like(x)

    def fwd() -> None:
        reset(layer)
        with torch.no_grad():
            layer(x)

    def train() -> None:
        reset(layer)
        s = layer(x)
        s.backward(grad)

    return _time_ms(fwd, repeats), _time_ms(train, repeats)


def bench_sjframe(kind: str, backend: str, t_steps: int, dtype: torch.dtype, repeats: int) -> tuple[float, float]:
    from spikingjelly.activation_based import functional

    feat = N_NEURONS // BATCH
    layer = build_neuron(kind, feat, {"tau_m_steps": 4.0, "tau_s_steps": 3.0, "theta": 1.0}, backend=backend).cuda()
    x = (torch.randn(t_steps, BATCH, feat, device="cuda") * 1.5 + 0.5).to(dtype).requires_grad_()
    return _fwd_and_train(layer, x, functional.reset_net, repeats)


def bench_spikingjelly_child(impl: str, t_steps: int, dtype: torch.dtype, repeats: int) -> dict:
    """Run in a child process whose SJ_LIF_CUDA_IMPLEMENTATION is ``impl``."""
    from spikingjelly._ops.lif import _selection
    from spikingjelly.activation_based import functional, neuron

    feat = N_NEURONS // BATCH
    layer = neuron.LIFNode(tau=2.0, v_reset=None, detach_reset=True, step_mode="m").cuda()
    x = (torch.randn(t_steps, BATCH, feat, device="cuda") * 1.5 + 0.5).to(dtype).requires_grad_()
    fwd, train = _fwd_and_train(layer, x, functional.reset_net, repeats)
    chosen = _selection.diagnostics(x.device)["implementation"]
    return {"fwd": fwd, "train": train, "implementation": chosen}


def bench_spikingjelly(impl: str, t_steps: int, dtype_name: str, repeats: int) -> dict | None:
    env = dict(os.environ, SJ_LIF_CUDA_IMPLEMENTATION=impl)
    cmd = [sys.executable, __file__, "--sj-child", impl, "--T", str(t_steps), "--dtype", dtype_name,
           "--repeats", str(repeats)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"SpikingJelly implementation {impl!r} unavailable: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def bench_block_sweep(repeats: int, t_steps: int = 128, sizes: tuple[int, ...] = (4096, 16384, 65536)) -> None:
    """LIF (cupy) fwd and fwd+bwd at small N: the block from ``block_size`` vs a fixed 256 (same layer, same x)."""
    from spikingjelly.activation_based import functional

    from cupy_neurons import launch

    chosen = launch.block_size
    sms = launch.sm_count(torch.cuda.current_device())
    print(f"block-size sweep: LIF (cupy), B = 1, T = {t_steps}, float32, {sms} SMs; median of {repeats}")
    print(f"{'N':>7} {'block':>6} {'fwd ms (256)':>13} {'fwd ms':>8} {'f+b ms (256)':>13} {'f+b ms':>8}")
    for n in sizes:
        layer = build_neuron("lif", n, {"tau_m_steps": 4.0, "tau_s_steps": 3.0, "theta": 1.0}, backend="cupy").cuda()
        x = (torch.randn(t_steps, 1, n, device="cuda") * 1.5 + 0.5).requires_grad_()
        times = {}
        for label, pick in (("256", lambda n_threads, sms_: launch.BLOCK), ("chosen", chosen)):
            launch.block_size = pick  # this process only: the launcher looks the function up at each launch
            try:
                times[label] = _fwd_and_train(layer, x, functional.reset_net, repeats)
            finally:
                launch.block_size = chosen
        (f256, t256), (fc, tc) = times["256"], times["chosen"]
        print(f"{n:>7} {chosen(n, sms):>6} {f256:>13.3f} {fc:>8.3f} {t256:>13.3f} {tc:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--T", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--neurons", nargs="+", choices=sorted(NEURONS), default=list(NEURONS))
    parser.add_argument("--no-sj", action="store_true", help="skip the SpikingJelly rows")
    parser.add_argument("--quick", action="store_true",
                        help="the device check's size: T 32 and 128, median of 5, plus the block-size sweep")
    parser.add_argument("--sj-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick and not args.sj_child:
        args.T, args.repeats = [32, 128], 5

    reason = cupy_unavailable_reason()
    if reason is not None:
        sys.exit(f"bench_kernels.py needs a CUDA GPU with CuPy: {reason}. Nothing was measured.")
    dtype = DTYPES[args.dtype]
    if args.sj_child:
        print(json.dumps(bench_spikingjelly_child(args.sj_child, args.T[0], dtype, args.repeats)))
        return

    es = torch.empty((), dtype=dtype).element_size()
    bw = copy_bandwidth(args.repeats)
    device = torch.cuda.get_device_name()
    print(f"device: {device}; dtype {args.dtype}; N = 2^20 neurons (B = {BATCH}); median of {args.repeats}")
    print(f"device-to-device copy bandwidth: {bw / 1e9:.0f} GB/s")
    rows = []
    jobs = [(name, t) for name in args.neurons for t in args.T]
    for name, t_steps in tqdm(jobs, desc="benchmark", file=sys.stderr):
        kind, fwd_units, train_units = NEURONS[name]
        res = {b: bench_sjframe(kind, b, t_steps, dtype, args.repeats) for b in ("torch", "cupy")}
        torch.cuda.empty_cache()
        sj = None
        if name == "LIF" and not args.no_sj:
            found = [r for r in (bench_spikingjelly(i, t_steps, args.dtype, args.repeats) for i in ("cuda", "triton")) if r]
            sj = min(found, key=lambda r: r["train"]) if found else None
            for r in found:
                rows.append((f"SJ LIFNode ({r['implementation']})", t_steps, r["fwd"], r["train"],
                             SJ_UNITS[0], SJ_UNITS[1], None))
        for backend in ("torch", "cupy"):
            fwd, train = res[backend]
            speedup = res["torch"][1] / train if backend == "cupy" else None
            rows.append((f"{name} ({backend})", t_steps, fwd, train, fwd_units, train_units, speedup))
        if sj is not None:
            ratio = sj["train"] / res["cupy"][1]
            print(f"LIF T={t_steps}: sjframe cupy fwd+bwd is {ratio:.2f}x the speed of SpikingJelly's best "
                  f"({sj['implementation']})", file=sys.stderr)

    n_elem = N_NEURONS
    head = (f"{'row':<26} {'T':>4} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd GB/s':>9} {'fwd %copy':>9} "
            f"{'f+b GB/s':>9} {'f+b %copy':>9} {'x torch':>8}")
    print(head)
    print("-" * len(head))
    for label, t_steps, fwd, train, fu, tu, speedup in rows:
        gb_f = fu * t_steps * n_elem * es / (fwd * 1e-3)
        gb_t = tu * t_steps * n_elem * es / (train * 1e-3)
        sp = f"{speedup:8.1f}" if speedup is not None else f"{'':>8}"
        print(f"{label:<26} {t_steps:>4} {fwd:>9.3f} {train:>11.3f} {gb_f / 1e9:>9.0f} {100 * gb_f / bw:>8.0f}% "
              f"{gb_t / 1e9:>9.0f} {100 * gb_t / bw:>8.0f}% {sp}")
    if args.quick and args.dtype == "float32":
        print()
        bench_block_sweep(args.repeats)


if __name__ == "__main__":
    main()
