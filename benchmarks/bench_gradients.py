"""Backward time and memory of a Linear(N_in -> N) + LIF layer: dense surrogate vs S3GD sparse vs LocalZO.

Setup (the papers' measurement: the second hidden layer's backward): Bernoulli input spikes
``[T, B, N_in]`` (rate ``--rate``) -> layer 1 (sparse, gives the previous active set) -> the timed
layer 2 (``N_in = N`` inputs, ``N`` LIF neurons, ``beta = exp(-1/10)``, threshold 1, the FMNIST
normal init with ``wm = 20``). Layer 2's input is a leaf that needs a gradient, so every mode
computes ``dW`` and the input gradient: dense everywhere (autograd through
:func:`sjframe.neurons.lif.lif_multi_step`, or the cupy LIF kernel + cuBLAS on a GPU), sparse
and LocalZO only at layer 1's active entries (:func:`sjframe.layers.sparse_linear_lif.sparse_linear_lif`).

Printed per (T, N): the measured active fraction of layer 2 (sparse: ``|u| < b_th``; LocalZO:
``g != 0``), the backward time of each mode (median of ``--repeats``) and its speedup over dense,
and memory: on CUDA the peak allocated bytes of forward + backward, on the CPU the bytes the
forward saves for the backward (``saved_tensors_hooks``, unique storages).

Clock: CUDA wall time (synchronised); on the CPU the **process CPU time** with one thread by
default (``--threads``), which shared machines disturb much less than wall time.

Usage::

    python benchmarks/bench_gradients.py                         # the papers' sizes (B = 256), slow on a CPU
    python benchmarks/bench_gradients.py --batch 32 --T 100 300 --N 200 1000 --repeats 1
    python benchmarks/bench_gradients.py --device cuda --backend cupy   # GPU: kernels
    python3 benchmarks/bench_gradients.py --quick --device cuda --backend cupy   # the device check (gpu_checks.sh)

``--quick``: T in {100, 500} (the smallest and the largest of the papers' sizes), N in {200, 1000}, B = 256,
median of 3.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sjframe.layers.sparse_linear_lif import sparse_linear_lif  # noqa: E402
from sjframe.neurons.lif import LIF  # noqa: E402
from sjframe.spike import GradientSpec  # noqa: E402
from sjframe.spike.surrogate import get_surrogate  # noqa: E402

SUR = get_surrogate("fast_sigmoid", rho=100.0)
BETA_TAU = 10.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _SavedBytes:
    """Counts the bytes of unique storages saved for backward inside the context."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        self.storages[st.data_ptr()] = st.nbytes()
        return t

    @staticmethod
    def unpack(t: torch.Tensor) -> torch.Tensor:
        return t

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def run_mode(mode: str, x1: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, backend: str, spec_kw: dict) -> dict:
    device = x1.device
    beta = torch.exp(torch.tensor(-1.0 / BETA_TAU)).item()
    layer1 = sparse_linear_lif(x1, w1, beta, 1.0, SUR, GradientSpec(mode="sparse", **spec_kw.get("sparse", {})))
    s1 = layer1.spikes.detach().requires_grad_()
    w2 = w2.detach().requires_grad_()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    saved = _SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        if mode == "dense":
            neuron = LIF(tau_m=BETA_TAU, theta=1.0, surrogate=SUR, backend=backend).to(device)
            s2 = neuron(F.linear(s1, w2))
            active = None
        else:
            spec = GradientSpec(mode=mode, **spec_kw.get(mode, {}))
            out = sparse_linear_lif(s1, w2, beta, 1.0, SUR, spec, in_active=layer1.active, backend=backend)
            s2, active = out.spikes, out.active
    grad = torch.randn_like(s2)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    _sync(device)
    t0 = clock()
    s2.backward(grad)
    _sync(device)
    elapsed = clock() - t0
    memory = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else saved.total
    return {"time": elapsed, "memory": memory, "active": None if active is None else active.fraction,
            "rate": float(s2.detach().mean())}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--T", type=int, nargs="+", default=[100, 300, 500])
    p.add_argument("--N", type=int, nargs="+", default=[200, 1000])
    p.add_argument("--rate", type=float, default=0.05, help="input spike probability per step")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="torch", choices=["torch", "cupy", "cpu"])
    p.add_argument("--b_th", type=float, default=0.2)
    p.add_argument("--delta", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (CPU runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="the device check's size: T 100 and 500, median of 3")
    args = p.parse_args(argv)
    if args.quick:
        args.T, args.repeats = [100, 500], 3
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gradients: --device cuda asked for but CUDA is not available")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    spec_kw = {"sparse": {"b_th": args.b_th}, "localzo": {"delta": args.delta}}
    modes = ("dense", "sparse", "localzo")
    # warm-up (lazy initialisation, kernel compilation) at a small size, not timed
    wx = (torch.rand(20, 8, min(args.N)) < args.rate).float().to(device)
    ww = torch.randn(min(args.N), min(args.N)).to(device) * 0.3
    for mode in modes:
        run_mode(mode, wx, ww, ww, args.backend, spec_kw)
    rows = []
    grid = [(T, N) for T in args.T for N in args.N]
    for T, N in tqdm(grid, desc="sizes", file=sys.stderr):
        gen = torch.Generator().manual_seed(args.seed)
        beta = torch.exp(torch.tensor(-1.0 / BETA_TAU)).item()
        x1 = (torch.rand(T, args.batch, N, generator=gen) < args.rate).float().to(device)
        scale = 20.0 * (1.0 - beta) / N**0.5
        w1 = (torch.randn(N, N, generator=gen) * scale).to(device)
        w2 = (torch.randn(N, N, generator=gen) * scale).to(device)
        res = {}
        for mode in modes:
            runs = [run_mode(mode, x1, w1, w2, args.backend, spec_kw) for _ in range(args.repeats)]
            res[mode] = {**runs[0], "time": statistics.median(r["time"] for r in runs)}
        rows.append((T, N, res))
    dev = (torch.cuda.get_device_name(device) if device.type == "cuda"
           else f"CPU ({torch.get_num_threads()} thread(s), process CPU time)")
    mem_kind = "peak CUDA MB" if device.type == "cuda" else "saved-for-backward MB"
    print(f"# bench_gradients: Linear(N -> N) + LIF, layer 2 backward; B = {args.batch}, input rate {args.rate}, "
          f"b_th = {args.b_th}, delta = {args.delta}; device {dev}, backend {args.backend}; "
          f"median of {args.repeats}; {time.strftime('%Y-%m-%d')}")
    print(f"| T | N | spike rate | active sparse | active LocalZO | dense bwd s | sparse bwd s (x) "
          f"| LocalZO bwd s (x) | {mem_kind} dense / sparse / LocalZO |")
    print("|---|---|---|---|---|---|---|---|---|")
    for T, N, r in rows:
        d = r["dense"]["time"]
        mem = " / ".join(f"{r[m]['memory'] / 2**20:.1f}" for m in modes)
        print(
            f"| {T} | {N} | {r['dense']['rate']:.4f} | {r['sparse']['active']:.4f} | {r['localzo']['active']:.4f} "
            f"| {d:.3f} | {r['sparse']['time']:.3f} ({d / r['sparse']['time']:.1f}x) "
            f"| {r['localzo']['time']:.3f} ({d / r['localzo']['time']:.1f}x) "
            f"| {mem} |"
        )


if __name__ == "__main__":
    main()
