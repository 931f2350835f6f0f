"""Build the CPU kernels (``backend: cpu``) ahead of use, e.g. at install time.

The CPU backend compiles each kernel specialisation (neuron x storage dtype x surrogate x reset x
gradient mode) on its first use and caches the library on disk (``$SJFRAME_KERNEL_CACHE``, else a
per-user temp folder; see ``cupy_neurons/build.py``). This script compiles the common ones now, in
parallel, into that cache, so that a run starts without compiling:

* every neuron kernel (CuLIF / PCuLIF, AdLIF, LIF) in float32 and float64, both resets, with the
  gradient modes ``dense`` (the surrogate), ``sparse`` (the surrogate truncated to the default band)
  and ``localzo``, for the default surrogate (``fast_sigmoid``, rho 5) or, with ``--all-surrogates``,
  every surrogate at its default parameters;
* the S3GD / LocalZO kernels of the fused ``Linear + LIF`` layer (the S3GD paper's surrogate).

Other surrogate parameters are compiled on first use as before.

    .venv/bin/python scripts/prebuild_cpu_kernels.py [--all-surrogates] [--jobs N] [--kind fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cupy_neurons import build, kernels  # noqa: E402
from cupy_neurons.sparse import kernels as sparse_kernels  # noqa: E402
from sjframe.spike import GradientSpec  # noqa: E402
from sjframe.spike.surrogate import SURROGATE_TABLE, get_surrogate  # noqa: E402


def items(all_surrogates: bool) -> list[tuple[build.Specialisation, tuple[build.KernelSig, ...]]]:
    """The (specialisation, kernels) pairs to build: what the launcher builds at their first use."""
    surrogates = [get_surrogate(name) for name in SURROGATE_TABLE] if all_surrogates else [get_surrogate()]
    out: dict[build.Specialisation, tuple[build.KernelSig, ...]] = {}
    for neuron, sigs in kernels.NEURON_KERNELS.items():
        for dtype in ("float32", "float64"):
            for detach in (True, False):
                out[kernels.specialisation(neuron, dtype, "0.0f", detach, localzo=True)] = sigs
                for sur in surrogates:
                    for mode in ("dense", "sparse"):
                        expr = GradientSpec(mode=mode).surrogate_for(sur).cuda_expr("u")
                        out[kernels.specialisation(neuron, dtype, expr, detach)] = sigs
    s3gd = GradientSpec(mode="sparse").surrogate_for(get_surrogate("fast_sigmoid", rho=100.0)).cuda_expr("u")
    for dtype in (torch.float32, torch.float64):
        for expr in (s3gd, "0.0f"):  # S3GD (band-truncated surrogate), LocalZO (no surrogate)
            out[sparse_kernels.specialisation(dtype, expr)] = tuple(sparse_kernels.KERNELS.values())
    return list(out.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all-surrogates", action="store_true", help="every surrogate, not only fast_sigmoid")
    parser.add_argument("--jobs", type=int, default=None, help="compilers at once (default: the CPU count)")
    parser.add_argument("--kind", choices=sorted(build.HOST_BUILDS), default="fast",
                        help="host build (fast: the CPU backend; check: the sequential test build)")
    args = parser.parse_args()
    todo = items(args.all_surrogates)
    t0 = time.perf_counter()
    paths = build.prebuild(todo, args.kind, args.jobs)
    print(f"{len(paths)} CPU kernel libraries ({args.kind} build) in {build.cache_dir()} "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
