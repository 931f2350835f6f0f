"""Linear + neuron layer, forward + backward on the CPU: sjframe neurons beside other libraries.

Setting of the foundation issue: T = 100, B = 128, Linear 700 -> 256, 2 CPU threads; the median
wall time of ``loss = (layer(x) * r).sum(); loss.backward()`` over ``--repeats`` runs (after
warm-up), all measured in one run, interleaved round by round so that machine load hits every row
alike. The ratio column is the time relative to SpikingJelly's ``LIFNode`` (torch backend).

    .venv/bin/python benchmarks/bench_neurons.py [--repeats 15] [--threads 2] [--T 100] [--B 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


def _candidates(n_out: int) -> dict[str, Callable[[], nn.Module]]:
    rows: dict[str, Callable[[], nn.Module]] = {
        "sjframe LIF": lambda: LIF(tau_m=2.0, theta=1.0),
        "sjframe CuLIF": lambda: CuLIF(tau_m=2.0, tau_s=2.0, theta=1.0),
        "sjframe PCuLIF": lambda: PCuLIF(tau_m=2.0, tau_s=2.0, theta=1.0, per_neuron=True, num_neurons=n_out),
        "sjframe AdLIF": lambda: AdLIF(num_neurons=n_out, tau_m=2.0, theta=1.0),
    }
    try:
        from spikingjelly.activation_based import neuron as sj_neuron

        rows["SpikingJelly LIFNode (torch)"] = lambda: sj_neuron.LIFNode(tau=2.0, step_mode="m")
    except ImportError as exc:  # pragma: no cover
        print(f"# SpikingJelly missing: {exc}")
    try:
        import snntorch

        rows["snnTorch Leaky"] = lambda: _StepLoop(snntorch.Leaky(beta=0.5), "snntorch")
    except ImportError as exc:  # pragma: no cover
        print(f"# snnTorch missing: {exc}")
    try:
        import norse.torch as norse

        rows["Norse LIF"] = lambda: norse.LIF()  # time-major [T, B, N] multi-step module
    except ImportError as exc:  # pragma: no cover
        print(f"# Norse missing: {exc}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--T", type=int, default=100)
    parser.add_argument("--B", type=int, default=128)
    parser.add_argument("--n-in", type=int, default=700)
    parser.add_argument("--n-out", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = (torch.rand(args.T, args.B, args.n_in) < 0.05).float()
    r = torch.randn(args.T, args.B, args.n_out)
    layers = {}
    for name, make in _candidates(args.n_out).items():
        linear = nn.Linear(args.n_in, args.n_out, bias=False)
        nn.init.normal_(linear.weight, 0.0, 4.0 / args.n_in**0.5)
        layers[name] = (linear, make())

    def run(linear: nn.Module, neuron: nn.Module) -> float:
        for p in list(linear.parameters()) + list(neuron.parameters()):
            p.grad = None
        if hasattr(neuron, "reset"):
            neuron.reset()
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
    for _ in range(args.warmup):
        for linear, neuron in layers.values():
            run(linear, neuron)
    for _ in range(args.repeats):  # interleaved rounds
        for name, (linear, neuron) in layers.items():
            times[name].append(run(linear, neuron))

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
