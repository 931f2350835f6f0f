"""Launch a kernel of a specialisation on torch tensors: CuPy on CUDA tensors, the host build on CPU.

``launch(spec, sig, n_threads, args)`` runs kernel ``sig`` of ``spec`` with one thread per
neuron (``n_threads`` = N, 1-D grid of :data:`BLOCK` threads). ``args`` follow ``sig.params``:
a tensor (or ``None`` = null) for each pointer, a Python number for ``acc`` / ``int`` / ``index``.

* CUDA tensors: the NVRTC module of ``render_device(spec)`` (``cupy.RawModule``, compiled once per
  text and device, cached) launched on torch's current stream of the tensors' device.
* CPU tensors: the ``g++`` host build of the same text (``host_shim.h``), loaded with ctypes; a
  bundle of many specialisations can be built at once with :func:`preload_host` (one compiler run).

Every launch is counted in :func:`launch_counts` (``{(device_type, kernel_name): count}``), the
proof used by the GPU tests that the kernels really ran.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from cupy_neurons import build
from cupy_neurons.build import HostLibrary, KernelSig, Specialisation

__all__ = ["BLOCK", "cupy_args", "launch", "launch_counts", "launch_cupy", "preload_host"]

BLOCK = 256

_TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


class _Registry:
    """Process-wide caches: host libraries per specialisation and the launch counter (locked)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.host: dict[Specialisation, HostLibrary] = {}
        self.counts: Counter[tuple[str, str]] = Counter()


_REGISTRY = _Registry()


def launch_counts() -> dict[tuple[str, str], int]:
    """Copy of the launch counter: ``{(device type, kernel name): number of launches}``."""
    with _REGISTRY.lock:
        return dict(_REGISTRY.counts)


def preload_host(items: Sequence[tuple[Specialisation, Sequence[KernelSig]]]) -> HostLibrary:
    """Build the host library of many specialisations in one compiler run and use it for them."""
    lib = build.host_library(tuple((spec, tuple(sigs)) for spec, sigs in items))
    with _REGISTRY.lock:
        for spec, _ in lib.items:
            _REGISTRY.host.setdefault(spec, lib)
    return lib


def _host_lib(spec: Specialisation, sig: KernelSig, all_sigs: Sequence[KernelSig]) -> HostLibrary:
    with _REGISTRY.lock:
        lib = _REGISTRY.host.get(spec)
    if lib is not None and lib.has_kernel(spec, sig):
        return lib
    return preload_host([(spec, tuple(all_sigs) if sig in all_sigs else (sig,))])


def _check_args(spec: Specialisation, sig: KernelSig, args: Sequence[Any]) -> torch.device:
    if len(args) != len(sig.params):
        raise ValueError(f"kernel {sig.name} takes {len(sig.params)} arguments, got {len(args)}")
    dtype = _TORCH_DTYPE[spec.dtype]
    acc = torch.float64 if spec.dtype == "float64" else torch.float32
    device = None
    for (kind, name), value in zip(sig.params, args):
        if not kind.endswith("ptr"):
            if isinstance(value, torch.Tensor):
                raise ValueError(f"kernel {sig.name}: argument {name} ({kind}) must be a number, not a tensor")
            continue
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"kernel {sig.name}: argument {name} must be a tensor or None, got {type(value).__name__}")
        want = {"acc": acc, "scalar": dtype, "float": torch.float32, "int": torch.int32, "index": torch.int64}[
            kind.removeprefix("const_").removesuffix("_ptr")]
        if value.dtype != want:
            raise ValueError(f"kernel {sig.name}: argument {name} must have dtype {want}, got {value.dtype}")
        if not value.is_contiguous():
            raise ValueError(f"kernel {sig.name}: argument {name} must be contiguous")
        if device is None:
            device = value.device
        elif value.device != device:
            raise ValueError(f"kernel {sig.name}: argument {name} is on {value.device}, others on {device}")
    if device is None:
        raise ValueError(f"kernel {sig.name}: no tensor argument")
    return device


def launch(
    spec: Specialisation,
    sig: KernelSig,
    n_threads: int,
    args: Sequence[Any],
    all_sigs: Sequence[KernelSig] = (),
) -> None:
    """Run kernel ``sig`` of ``spec`` over ``n_threads`` threads on the tensors' device.

    ``all_sigs``: every kernel of the source (so that one host build serves them all).
    """
    device = _check_args(spec, sig, args)
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0, got {n_threads}")
    if n_threads == 0:
        return
    grid = (n_threads + BLOCK - 1) // BLOCK
    if device.type == "cuda":
        launch_cupy(spec, sig.name, sig.params, grid, BLOCK, args, device)
    elif device.type == "cpu":
        fn = _host_lib(spec, sig, all_sigs).function(spec, sig)
        cargs = [value.data_ptr() if isinstance(value, torch.Tensor) else value for value in args]
        fn(grid, BLOCK, *cargs)
    else:
        raise ValueError(f"kernel {sig.name}: tensors on {device} are not supported (cuda or cpu)")
    with _REGISTRY.lock:
        _REGISTRY.counts[(device.type, sig.name)] += 1


@functools.lru_cache(maxsize=512)
def _cupy_function(spec: Specialisation, name: str, device_index: int) -> Any:
    import cupy

    with cupy.cuda.Device(device_index):
        return build.cupy_module(build.render_device(spec)).get_function(name)


def cupy_args(dtype: str, params: Sequence[tuple[str, str]], args: Sequence[Any]) -> tuple[Any, ...]:
    """CuPy ``RawKernel`` arguments of a kernel: numpy scalars of the exact C types of ``params``.

    CuPy passes each argument by value with the size of its numpy type, so every one must match
    the C declaration (:data:`cupy_neurons.build._C_DECL`): a pointer (tensor or None) is its
    address as ``uint64`` (``data_ptr()``: also right for bfloat16 and for tensors that require
    grad, which ``cupy.asarray`` refuses), ``acc`` is ``SJ_ACC`` of the storage ``dtype`` name
    (float64 for float64, else float32), ``float`` float32, ``int`` int32, ``index`` int64 and
    ``u64`` uint64.
    """
    import numpy as np

    types = {"acc": np.float64 if dtype == "float64" else np.float32, "float": np.float32, "int": np.int32,
             "index": np.int64, "u64": np.uint64}
    out = []
    for (kind, name), value in zip(params, args, strict=True):
        if kind.endswith("ptr"):
            out.append(np.uint64(0 if value is None else value.data_ptr()))
        elif kind in types:
            out.append(types[kind](value))
        else:
            raise ValueError(f"argument {name}: unknown parameter kind {kind!r}")
    return tuple(out)


def launch_cupy(spec: Specialisation, name: str, params: Sequence[tuple[str, str]], grid: int, block: int,
                args: Sequence[Any], device: torch.device) -> None:
    """Launch kernel ``name`` of ``spec`` (NVRTC module cached per specialisation and device) with ``grid``
    blocks of ``block`` threads on torch's current stream of the CUDA ``device``; ``args`` follow ``params``
    (see :func:`cupy_args`). Shared by the neuron and the sparse launchers."""
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    converted = cupy_args(spec.dtype, params, args)
    fn = _cupy_function(spec, name, index)
    with cupy.cuda.Device(index):
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(device).cuda_stream)
        fn((grid,), (block,), converted, stream=stream)
