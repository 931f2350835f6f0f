"""Launch a kernel of a specialisation on torch tensors: CuPy on CUDA tensors, the host build on CPU.

``launch(spec, sig, n_threads, args)`` runs kernel ``sig`` of ``spec`` with one thread per
neuron (``n_threads`` = N, a 1-D grid; :func:`block_size` threads a block on a GPU, :data:`BLOCK`
on the host). ``args`` follow ``sig.params``: a tensor (or ``None`` = null) for each pointer, a
Python number for ``acc`` / ``int`` / ``index``.

* CUDA tensors: the NVRTC module of ``render_device(spec)`` (``cupy.RawModule``, compiled once per
  text and device, cached) launched on torch's current stream of the tensors' device
  (:func:`cupy_stream`: ``cupy.cuda.Stream.from_external``, not the deprecated ``ExternalStream``).
* CPU tensors: a ``g++`` host build of the same text (``host_shim.h``), loaded with ctypes; a
  bundle of many specialisations can be built at once with :func:`preload_host` (one compiler run).
  Which build (:data:`cupy_neurons.build.HOST_BUILDS`) is :func:`host_build`: ``fast`` (the CPU
  backend: ``-O3 -march=native``, OpenMP over blocks with ``torch.get_num_threads()`` threads, a lane
  kernel's thread given :data:`~cupy_neurons.build.CPU_LANES` neurons as vectors) unless
  ``$SJFRAME_HOST_BUILD`` names another (``check``: the sequential ``-O2`` model of a GPU launch that
  the GPU build is compared with bit for bit; ``fma``: ``fast`` with FMA contraction).

Every launch is counted in :func:`launch_counts` (``{(device_type, kernel_name): count}``), the
proof used by the GPU tests that the kernels really ran.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch

from cupy_neurons import build
from cupy_neurons.build import HostLibrary, KernelSig, Specialisation

__all__ = ["BLOCK", "DTYPE_NAMES", "HOST_BUILD_ENV", "MALLOC_TUNE_ENV", "MIN_BLOCK", "acc_dtype", "block_size",
           "cupy_args", "cupy_stream", "host_build", "host_grid", "launch", "launch_counts", "launch_cupy",
           "preload_host", "sm_count", "tune_cpu_allocator"]

BLOCK = 256  # the largest block, and the host build's (there it only numbers the threads)
MIN_BLOCK = 32  # one warp
BLOCKS_PER_SM = 2  # the grid a smaller block aims for: every SM given (at least) this many blocks

#: storage dtypes of the kernels and their names (:data:`cupy_neurons.build.DTYPES`)
DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_TORCH_DTYPE = {name: dtype for dtype, name in DTYPE_NAMES.items()}


#: environment variable naming the host build CPU tensors run (default ``fast``)
HOST_BUILD_ENV = "SJFRAME_HOST_BUILD"


def host_build() -> str:
    """The host build CPU tensors run: ``$SJFRAME_HOST_BUILD`` or ``fast`` (:data:`cupy_neurons.build.HOST_BUILDS`)."""
    kind = os.environ.get(HOST_BUILD_ENV, "") or "fast"
    if kind not in build.HOST_BUILDS:
        raise ValueError(f"${HOST_BUILD_ENV}={kind!r} unknown; valid: {sorted(build.HOST_BUILDS)}")
    return kind


#: environment variable that, set to ``0``, leaves the C allocator as it is (see :func:`tune_cpu_allocator`)
MALLOC_TUNE_ENV = "SJFRAME_CPU_MALLOC_TUNE"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD = 32 << 20  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD = 256 << 20


@functools.cache
def tune_cpu_allocator() -> bool:
    """Let glibc's ``malloc`` keep freed blocks up to 32 MiB in the heap instead of unmapping them (once per process).

    A CPU forward / backward allocates its ``[T, N]`` outputs anew at every call (13 MB each at T = 100,
    B = 128, N = 256). glibc serves blocks of that size with ``mmap`` and unmaps them on free, so every call
    faults every page in again (~3300 page faults per 13 MB block, several ms on a virtual machine: more than
    the kernel itself). With ``M_MMAP_THRESHOLD`` = 32 MiB and ``M_TRIM_THRESHOLD`` = 256 MiB freed blocks are
    reused without faults; this is process-wide, so it speeds up every torch CPU operation alike (torch paths
    included). Called on the first launch of the fast CPU build; ``$SJFRAME_CPU_MALLOC_TUNE=0`` skips it.
    Returns whether it was applied (False on a C library without ``mallopt``).
    """
    if os.environ.get(MALLOC_TUNE_ENV, "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                             TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False


def host_grid(sig: KernelSig, n_threads: int, parallel: bool) -> tuple[int, int]:
    """``(grid, block)`` of a host launch of ``n_threads`` threads: blocks of :data:`BLOCK` threads, except a lane
    kernel in a fast build (one thread per block, :func:`~cupy_neurons.build.cpu_lanes` neurons per thread)."""
    if parallel and sig.lanes:
        return -(-n_threads // build.cpu_lanes(sig)), 1
    return -(-n_threads // BLOCK), BLOCK


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation (and parameter) dtype of a storage dtype: float64 for float64, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class _Registry:
    """Process-wide caches: host libraries per specialisation and the launch counter (locked)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.host: dict[tuple[Specialisation, str], HostLibrary] = {}
        #: (specialisation, kernel, build) -> (ctypes function, whether it takes the thread count); read without the
        #: lock (a dict lookup is atomic), written under it
        self.functions: dict[tuple[Specialisation, KernelSig, str], tuple[Any, bool]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()


_REGISTRY = _Registry()


def launch_counts() -> dict[tuple[str, str], int]:
    """Copy of the launch counter: ``{(device type, kernel name): number of launches}``."""
    with _REGISTRY.lock:
        return dict(_REGISTRY.counts)


def preload_host(items: Sequence[tuple[Specialisation, Sequence[KernelSig]]], kind: str | None = None) -> HostLibrary:
    """Build the host library of many specialisations in one compiler run and use it for them.

    ``kind``: the host build (:data:`cupy_neurons.build.HOST_BUILDS`; None: :func:`host_build`).
    """
    kind = kind or host_build()
    lib = build.host_library(tuple((spec, tuple(sigs)) for spec, sigs in items), kind)
    with _REGISTRY.lock:
        for spec, _ in lib.items:
            _REGISTRY.host.setdefault((spec, kind), lib)
    return lib


def _host_lib(spec: Specialisation, sig: KernelSig, all_sigs: Sequence[KernelSig], kind: str) -> HostLibrary:
    with _REGISTRY.lock:
        lib = _REGISTRY.host.get((spec, kind))
    if lib is not None and lib.has_kernel(spec, sig):
        return lib
    return preload_host([(spec, tuple(all_sigs) if sig in all_sigs else (sig,))], kind)


_PTR_DTYPES = {"float": torch.float32, "int": torch.int32, "index": torch.int64}


@functools.lru_cache(maxsize=1024)
def _arg_checks(sig: KernelSig, dtype: str) -> tuple[tuple[str, torch.dtype | None], ...]:
    """Per parameter of ``sig``: its name and the dtype a tensor for it must have (None: a number), for storage
    ``dtype`` (computed once per kernel and dtype, not at every launch)."""
    acc = torch.float64 if dtype == "float64" else torch.float32
    wanted = {**_PTR_DTYPES, "acc": acc, "scalar": _TORCH_DTYPE[dtype]}
    return tuple((name, wanted[kind.removeprefix("const_").removesuffix("_ptr")] if kind.endswith("ptr") else None)
                 for kind, name in sig.params)


def _check_args(spec: Specialisation, sig: KernelSig, args: Sequence[Any]) -> tuple[torch.device, list[Any]]:
    """Check the arguments of a launch; returns the tensors' device and the host call's arguments (each tensor as
    its address, null as None, numbers as they are), gathered in the same pass."""
    if len(args) != len(sig.params):
        raise ValueError(f"kernel {sig.name} takes {len(sig.params)} arguments, got {len(args)}")
    device = None
    cargs: list[Any] = []
    for (name, want), value in zip(_arg_checks(sig, spec.dtype), args):
        if want is None:
            if isinstance(value, torch.Tensor):
                raise ValueError(f"kernel {sig.name}: argument {name} must be a number, not a tensor")
            cargs.append(value)
            continue
        if value is None:
            cargs.append(None)
            continue
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"kernel {sig.name}: argument {name} must be a tensor or None, got {type(value).__name__}")
        if value.dtype != want:
            raise ValueError(f"kernel {sig.name}: argument {name} must have dtype {want}, got {value.dtype}")
        if not value.is_contiguous():
            raise ValueError(f"kernel {sig.name}: argument {name} must be contiguous")
        if device is None:
            device = value.device
        elif value.device != device:
            raise ValueError(f"kernel {sig.name}: argument {name} is on {value.device}, others on {device}")
        cargs.append(value.data_ptr())
    if device is None:
        raise ValueError(f"kernel {sig.name}: no tensor argument")
    return device, cargs


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
    device, cargs = _check_args(spec, sig, args)
    if n_threads < 0:
        raise ValueError(f"n_threads must be >= 0, got {n_threads}")
    if n_threads == 0:
        return
    if device.type == "cuda":
        block = block_size(n_threads, sm_count(_cuda_index(device)))
        launch_cupy(spec, sig.name, sig.params, (n_threads + block - 1) // block, block, args, device)
    elif device.type == "cpu":
        kind = host_build()
        found = _REGISTRY.functions.get((spec, sig, kind))
        if found is None:
            lib = _host_lib(spec, sig, all_sigs, kind)
            found = (lib.function(spec, sig), lib.parallel)
            with _REGISTRY.lock:
                _REGISTRY.functions[(spec, sig, kind)] = found
        fn, parallel = found
        grid, block = host_grid(sig, n_threads, parallel)
        if parallel:
            tune_cpu_allocator()
            fn(grid, block, torch.get_num_threads(), build.cpu_lanes(sig), *cargs)
        else:
            fn(grid, block, *cargs)
    else:
        raise ValueError(f"kernel {sig.name}: tensors on {device} are not supported (cuda or cpu)")
    with _REGISTRY.lock:
        _REGISTRY.counts[(device.type, sig.name)] += 1


def block_size(n_threads: int, sms: int, max_block: int = BLOCK, min_block: int = MIN_BLOCK) -> int:
    """Threads per block of a 1-D launch of ``n_threads`` threads on a GPU of ``sms`` multiprocessors.

    The kernels run one thread per neuron with the time loop inside, so a layer of N neurons is N
    threads: with blocks of 256, a layer of 4096-16384 neurons is 16-64 blocks, and 68-116 of an H200's
    132 SMs stay idle. The largest power of two in ``[min_block, max_block]`` whose grid still gives
    every SM :data:`BLOCKS_PER_SM` blocks (``ceil(n / block) >= BLOCKS_PER_SM * sms``), else ``min_block``:
    a large layer keeps ``max_block``; a small one is spread over more SMs in smaller blocks. Only the
    launch shape changes: each thread's arithmetic does not depend on the block (no shared memory, no
    barriers in these kernels), so the neuron kernels' results are the same bit for bit (the sparse
    kernels' atomic sums have no fixed order with any block).
    """
    if n_threads < 0 or sms < 1 or not (1 <= min_block <= max_block):
        raise ValueError(f"block_size: need n_threads >= 0, sms >= 1, 1 <= min_block <= max_block; got "
                         f"{n_threads}, {sms}, {min_block}, {max_block}")
    block = max_block
    while block > min_block and -(-n_threads // block) < BLOCKS_PER_SM * sms:
        block //= 2
    return max(block, min_block)


@functools.lru_cache(maxsize=64)
def sm_count(device_index: int) -> int:
    """Multiprocessor count of CUDA device ``device_index`` (read once per device)."""
    return int(torch.cuda.get_device_properties(device_index).multi_processor_count)


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


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

    index = _cuda_index(device)
    converted = cupy_args(spec.dtype, params, args)
    fn = _cupy_function(spec, name, index)
    with cupy.cuda.Device(index):
        fn((grid,), (block,), converted, stream=cupy_stream(index))


def cupy_stream(device_index: int) -> Any:
    """torch's current stream on CUDA device ``device_index`` as a CuPy stream, for a launch on that device.

    ``cupy.cuda.Stream.from_external`` (CuPy >= 14: any object with the CUDA stream protocol's
    ``__cuda_stream__``) replaces ``cupy.cuda.ExternalStream``, which CuPy 14 deprecates (a DeprecationWarning at every
    construction, an error under ``-W error``). ``from_external`` cannot be told the device (the protocol
    carries none: CuPy 14.2 leaves ``device_id`` at -1, "unknown"; later versions read the current device),
    so the stream's documented ``device_id`` attribute is set to ``device_index``: CuPy then refuses to
    make it current on another device instead of trusting the caller. Call it inside
    ``cupy.cuda.Device(device_index)``.
    """
    import cupy

    stream = cupy.cuda.Stream.from_external(_StreamProtocol(torch.cuda.current_stream(device_index)))
    stream.device_id = device_index
    return stream


class _StreamProtocol:
    """A torch CUDA stream seen through the CUDA stream protocol (``__cuda_stream__`` -> ``(0, handle)``).

    torch's own ``Stream.__cuda_stream__`` is recent; this adapter works with any torch version. CuPy
    keeps a reference to it (and so to the torch stream) for the CuPy stream's lifetime.
    """

    __slots__ = ("stream",)

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, int(self.stream.cuda_stream))
