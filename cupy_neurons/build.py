"""Render, compile and cache the CUDA kernel sources of ``cupy_neurons/`` (device and host builds).

A kernel source (``*.cu`` in this folder) is plain CUDA C written against ``common.cuh`` and a few
macros that select one *specialisation*:

=================== ==========================================================================
``SJ_SCALAR``       storage type of the ``[T, N]`` tensors: ``float``, ``double``, ``sj_half``,
                    ``sj_bf16``
``SJ_ACC``          accumulation type (``float``; ``double`` for double storage); parameters
                    and per-neuron partial sums are ``SJ_ACC`` arrays
``SJ_SURROGATE(u)`` the surrogate derivative ``g(u)`` as a C expression
                    (:meth:`sjframe.spike.surrogate.Surrogate.cuda_expr`)
``SJ_NS``           a namespace private to the specialisation (helpers go inside it)
``SJ_NAME(base)``   the ``extern "C"`` kernel name (``base`` plus a suffix in bundles)
other defines       per source options (e.g. ``SJ_DETACH_RESET``, ``SJ_PER_NEURON``)
=================== ==========================================================================

Three builds of the same text:

* **device** (:func:`render_device`, :func:`cupy_module`): ``common.cuh`` + one specialisation,
  compiled by CuPy's NVRTC (``cupy.RawModule``), cached per (source text, options).
* **nvcc check** (:func:`compile_nvcc`): the device text compiled by ``nvcc`` for a given
  ``sm_XX`` (``-cubin`` or ``-ptx``), for CI without a GPU.
* **host** (:func:`render_host_bundle`, :func:`host_library`): ``host_shim.h`` + ``common.cuh`` +
  several specialisations (each with its own namespace and name suffix) + generated
  ``extern "C"`` wrappers ``sjhost_<kernel><suffix>(grid, block, args...)`` that run the kernel
  for every (block, thread) on the CPU. Compiled by ``g++`` into a shared library cached on disk
  under :func:`cache_dir` keyed by a hash of the text, the flags and the compiler version, and
  loaded with :mod:`ctypes`.

A kernel's argument list is written once, in its source: :func:`kernel_sigs` parses the
``extern "C" __global__ void SJ_NAME(name)(...)`` declarations of a source (argument macros such as
``SJ_ZO_PARAMS`` expanded) into :class:`KernelSig` values (parameter kinds below); the host
wrappers, the ``ctypes`` argument types, the CuPy argument conversion and the generated custom ops
of :mod:`cupy_neurons.ops` all derive from them.

Parameter kinds: ``scalar_ptr`` / ``const_scalar_ptr`` (``SJ_SCALAR*``), ``acc_ptr`` /
``const_acc_ptr`` (``SJ_ACC*``), ``float_ptr``, ``int_ptr``, ``index_ptr`` (and ``const_``
variants: ``float*``, ``int*``, ``long long*``), values ``acc`` (``SJ_ACC``), ``float``, ``int``,
``index`` (``long long``), ``u64`` (``unsigned long long``, e.g. a random seed). A pointer argument
may be ``None`` (a null pointer) where the kernel allows it.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DTYPES",
    "PARAM_KINDS",
    "HostLibrary",
    "KernelCompileError",
    "KernelSig",
    "Specialisation",
    "cache_dir",
    "compile_nvcc",
    "cupy_module",
    "double_precision_expr",
    "host_compiler_missing",
    "host_library",
    "kernel_sigs",
    "nvcc_path",
    "prebuild",
    "read_source",
    "render_device",
    "render_device_bundle",
    "render_host_bundle",
    "render_specialisation",
]

SOURCE_DIR = Path(__file__).resolve().parent

# dtype name -> (storage C type, accumulation C type)
DTYPES: dict[str, tuple[str, str]] = {
    "float32": ("float", "float"),
    "float64": ("double", "double"),
    "float16": ("sj_half", "float"),
    "bfloat16": ("sj_bf16", "float"),
}

_C_DECL = {
    "scalar_ptr": "SJ_SCALAR* __restrict__",
    "const_scalar_ptr": "const SJ_SCALAR* __restrict__",
    "acc_ptr": "SJ_ACC* __restrict__",
    "const_acc_ptr": "const SJ_ACC* __restrict__",
    "float_ptr": "float* __restrict__",
    "const_float_ptr": "const float* __restrict__",
    "int_ptr": "int* __restrict__",
    "const_int_ptr": "const int* __restrict__",
    "index_ptr": "long long* __restrict__",
    "const_index_ptr": "const long long* __restrict__",
    "acc": "const SJ_ACC",
    "float": "const float",
    "int": "const int",
    "index": "const long long",
    "u64": "const unsigned long long",
}
PARAM_KINDS = tuple(_C_DECL)
HOST_CXX_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-w")
#: neurons per call of a lane kernel in the fast CPU build at most (``SJ_CPU_LANES``: the size of the kernels' lane
#: arrays; common.cuh); each launch gives its kernel :func:`cpu_lanes` of them
CPU_LANES = 256
#: neurons per call of a forward neuron kernel (``*_forward``) in the fast CPU build (the backward kernels take
#: :data:`CPU_LANES`). The lane count changes no arithmetic (each neuron's steps are the same), only which neurons one
#: call handles. Measured (T = 100, B = 128, N = 256, forward kernels alone, both counts replayed in one process): before
#: the forward kernels prefetched their next input row (2026-12-03, 2 threads) 128 was 20-27 % faster than 256 (AdLIF
#: 2.32-2.45 vs 2.57-2.68 ms); with the prefetch (2026-12-04) 256 is faster, by 4-24 % at 2 threads (AdLIF 1.53-1.62
#: vs 1.72-1.97 ms, LIF 0.99-1.06 vs 1.14-1.30) and 5-15 % at 1 thread.
CPU_FORWARD_LANES = 256
#: time steps per pass over the lanes of a backward neuron kernel in the fast CPU build (``SJ_CPU_STEPS``, common.cuh:
#: each lane's state stays in registers for that many steps instead of going through its lane arrays at every step).
#: The arithmetic of each neuron is the same for any value.
CPU_STEPS = 4


def cpu_lanes(sig: KernelSig) -> int:
    """Neurons per call of kernel ``sig`` in the fast CPU build: :data:`CPU_FORWARD_LANES` for a forward neuron
    kernel, :data:`CPU_LANES` for another lane kernel, 1 for a kernel without lanes (one element per thread)."""
    if not sig.lanes:
        return 1
    lanes = CPU_FORWARD_LANES if sig.name.endswith("_forward") else CPU_LANES
    if not 1 <= lanes <= CPU_LANES:  # the kernels' lane arrays hold CPU_LANES neurons
        raise ValueError(f"kernel {sig.name}: {lanes} lanes per call, must be in [1, CPU_LANES = {CPU_LANES}]")
    return lanes
_FAST_FLAGS = ("-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-fno-fast-math", "-w",
               # floating-point operations raise no trap, so GCC may if-convert a lane loop with a conditional
               # operation (a reset, a spike, an optional output) by computing both sides; with the default
               # -ftrapping-math it does so only with masked arithmetic (AVX-512), and on an AVX2 machine the CuLIF
               # and AdLIF forward lane loops stayed scalar (AdLIF kernels 2.4-2.7x slower, measured with
               # -march=x86-64-v3). It concerns exception flags only: no value changes (tests: the fast build
               # within 2 ulps of the check build, which keeps the default), NaNs and signed zeros kept.
               "-fno-trapping-math",
               # unswitch the lane loops on their uniform conditions (null gradients, t > 0, parameter gradients)
               # so that each version vectorises (GCC cannot vectorise a load masked by a uniform condition)
               "--param", "max-unswitch-insns=2000", "--param", "max-unswitch-level=5")
#: the host builds of the same text: compiler flags and whether the build is the fast CPU backend
#: (``SJ_CPU_LANES`` lanes per call, OpenMP over calls):
#:
#: * ``check``: ``-O2``, one (block, thread) at a time, no FMA contraction: the exact model of a GPU launch that
#:   the GPU build (``--fmad=false``) is compared with bit for bit;
#: * ``fast``: the CPU backend: ``-O3 -march=native``, OpenMP, lanes vectorised, still no FMA contraction (each
#:   element's arithmetic is the check build's, in the same order);
#: * ``fma``: ``fast`` with FMA contraction (``-ffp-contract=fast``), measured against ``fast`` by the benchmark.
HOST_BUILDS: dict[str, tuple[tuple[str, ...], bool]] = {
    "check": (HOST_CXX_FLAGS, False),
    "fast": ((*_FAST_FLAGS, "-ffp-contract=off"), True),
    "fma": ((*_FAST_FLAGS, "-ffp-contract=fast"), True),
}


class KernelCompileError(RuntimeError):
    """A kernel source failed to compile (the message holds the compiler log)."""


@dataclass(frozen=True)
class KernelSig:
    """Name and parameters of one ``extern "C" __global__`` kernel.

    Attributes:
        name: base kernel name (the source declares it as ``SJ_NAME(name)``).
        params: ``((kind, name), ...)`` in order, kinds from :data:`PARAM_KINDS`.
        lanes: the kernel handles its thread's lanes (``SJ_LANES_BEGIN`` of common.cuh: one neuron on the GPU,
            :data:`CPU_LANES` in the fast CPU build) rather than one element per thread.
    """

    name: str
    params: tuple[tuple[str, str], ...]
    lanes: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_]\w*", self.name):
            raise ValueError(f"KernelSig.name must be a C identifier, got {self.name!r}")
        for kind, pname in self.params:
            if kind not in PARAM_KINDS:
                raise ValueError(f"kernel {self.name}: parameter {pname!r} has unknown kind {kind!r}; valid: {PARAM_KINDS}")

    def c_params(self) -> str:
        return ", ".join(f"{_C_DECL[kind]} {name}" for kind, name in self.params)

    def c_args(self) -> str:
        return ", ".join(name for _, name in self.params)


@dataclass(frozen=True)
class Specialisation:
    """One compiled variant of a kernel source (hashable: it keys the caches).

    Attributes:
        source: file name of the kernel source in this folder (e.g. ``"culif.cu"``).
        dtype: storage dtype name, one of :data:`DTYPES`.
        surrogate: C expression of ``g(u)`` in the variable ``u`` (float precision; rewritten to
            double precision for ``float64``).
        defines: extra ``(NAME, value)`` macro definitions (ints or C text).
    """

    source: str
    dtype: str
    surrogate: str = "0.0f"
    defines: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"Specialisation.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not (SOURCE_DIR / self.source).is_file():
            raise ValueError(f"Specialisation.source {self.source!r} is not a file in {SOURCE_DIR}")
        for name, _ in self.defines:
            if not re.fullmatch(r"SJ_[A-Z0-9_]+", name):
                raise ValueError(f"Specialisation define {name!r} must match SJ_[A-Z0-9_]+")

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.defines)
        return f"{self.source}[{self.dtype};{opts}]"


# ---------------------------------------------------------------------------------- rendering
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)


def read_source(name: str, _seen: frozenset[str] = frozenset()) -> str:
    """Text of a source under this folder with its local ``#include "..."`` lines inlined.

    An include is looked up next to the including file first, then in this folder. Headers keep
    their own include guards, so a header inlined twice is compiled once.
    """
    path = SOURCE_DIR / name
    if not path.is_file():
        raise ValueError(f"kernel source {name!r} not found in {SOURCE_DIR}")
    if name in _seen:
        raise ValueError(f"kernel source {name!r} includes itself")
    text = path.read_text()

    def inline(match: re.Match[str]) -> str:
        inc = match.group(1)
        sibling = str(Path(name).parent / inc)  # relative to the including file first, then this folder
        target = sibling if (SOURCE_DIR / sibling).is_file() else inc
        return f"// ---- begin {target}\n{read_source(target, _seen | {name})}\n// ---- end {target}"

    return _INCLUDE.sub(inline, text)


_KERNEL_DECL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+SJ_NAME\((\w+)\)\s*\(([^)]*)\)\s*\{')
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+((?:[^\n]*\\\n)*[^\n]*)$", re.MULTILINE)
# C declaration (``__restrict__`` dropped, spaces normalised) -> parameter kind
_KIND_OF_C = {
    "const scalar_t*": "const_scalar_ptr", "scalar_t*": "scalar_ptr", "const SJ_SCALAR*": "const_scalar_ptr",
    "SJ_SCALAR*": "scalar_ptr", "const acc_t*": "const_acc_ptr", "acc_t*": "acc_ptr", "const SJ_ACC*": "const_acc_ptr",
    "SJ_ACC*": "acc_ptr", "const float*": "const_float_ptr", "float*": "float_ptr", "const int*": "const_int_ptr",
    "int*": "int_ptr", "const long long*": "const_index_ptr", "long long*": "index_ptr",
    "const sj_index*": "const_index_ptr", "sj_index*": "index_ptr", "const acc_t": "acc", "const SJ_ACC": "acc",
    "const float": "float", "const int": "int", "const sj_index": "index", "const long long": "index",
    "const unsigned long long": "u64",
}


@functools.cache
def kernel_sigs(source: str) -> tuple[KernelSig, ...]:
    """The signatures of the ``extern "C" __global__`` kernels of a source, parsed from its text.

    A kernel is declared as ``extern "C" __global__ void SJ_NAME(name)(<params>) {``; a parameter
    that is a macro name (e.g. ``SJ_ZO_PARAMS``) is replaced by the macro's ``#define`` text. Each
    parameter must be one of the C declarations of :data:`PARAM_KINDS` (``const scalar_t*
    __restrict__ x_seq``, ``const acc_t theta``, ``const sj_index N``, ...): the source is the one
    place a kernel's argument list is written.
    """
    text = read_source(source)
    macros = {name: body.replace("\\\n", " ") for name, body in _DEFINE.findall(text)}
    sigs = []
    decls = list(_KERNEL_DECL.finditer(text))
    for pos, match in enumerate(decls):
        name, raw = match.groups()
        body = text[match.end():decls[pos + 1].start() if pos + 1 < len(decls) else len(text)]
        params = []
        for item in (p.strip() for p in raw.split(",")):
            if item in macros:
                items = [q.strip() for q in macros[item].split(",")]
            else:
                items = [item]
            for decl in items:
                words = decl.replace("__restrict__", " ").replace("*", "* ").split()
                if len(words) < 2:
                    raise ValueError(f"{source}: kernel {name}: cannot read parameter {decl!r}")
                ctype = " ".join(words[:-1]).replace(" *", "*")
                if ctype not in _KIND_OF_C:
                    raise ValueError(f"{source}: kernel {name}: parameter {words[-1]!r} has C type {ctype!r}; "
                                     f"valid: {sorted(_KIND_OF_C)}")
                params.append((_KIND_OF_C[ctype], words[-1]))
        sigs.append(KernelSig(name, tuple(params), "SJ_LANES_BEGIN(" in body))
    if not sigs:
        raise ValueError(f"{source}: no extern \"C\" __global__ void SJ_NAME(name)(...) kernel found")
    return tuple(sigs)


_FLOAT_FN = re.compile(r"\b(fabsf|expf|sqrtf|logf|tanhf)\s*\(")
_FLOAT_LIT = re.compile(r"(?<![\w.])(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)f\b")


def double_precision_expr(expr: str) -> str:
    """Rewrite a float C expression for double: ``expf (`` -> ``exp(``, ``1.5f`` -> ``1.5``."""
    expr = _FLOAT_FN.sub(lambda m: m.group(1)[:-1] + "(", expr)
    return _FLOAT_LIT.sub(r"\1", expr)


def render_specialisation(spec: Specialisation, suffix: str = "") -> str:
    """One specialisation's kernel text wrapped in its macro definitions (no common header)."""
    if suffix and not re.fullmatch(r"_\w+", suffix):
        raise ValueError(f"suffix must look like _name, got {suffix!r}")
    scalar, acc = DTYPES[spec.dtype]
    surrogate = double_precision_expr(spec.surrogate) if acc == "double" else spec.surrogate
    ns = "sj_spec" + (suffix or "")
    lines = [
        f"// ==== specialisation {spec.label()} suffix={suffix or '(none)'}",
        f"#define SJ_SCALAR {scalar}",
        f"#define SJ_ACC {acc}",
        f"#define SJ_SURROGATE(u) ({surrogate})",
        f"#define SJ_NS {ns}",
        f"#define SJ_NAME(base) base##{suffix}" if suffix else "#define SJ_NAME(base) base",
    ]
    lines += [f"#define {name} {value}" for name, value in spec.defines]
    lines.append(read_source(spec.source))
    for name in ("SJ_SCALAR", "SJ_ACC", "SJ_SURROGATE", "SJ_NS", "SJ_NAME", *(n for n, _ in spec.defines)):
        lines.append(f"#undef {name}")
    return "\n".join(lines) + "\n"


def render_device(spec: Specialisation) -> str:
    """Self-contained CUDA text of one specialisation (for NVRTC / nvcc): common + kernels."""
    header = "// sjframe kernels, rendered by cupy_neurons/build.py"
    return f"{header}\n{read_source('common.cuh')}\n{render_specialisation(spec)}"


def render_device_bundle(specs: Sequence[Specialisation]) -> str:
    """CUDA text of many specialisations in one unit (suffix ``_s<i>``), for one nvcc check run."""
    parts = ["// sjframe kernels, device bundle (cupy_neurons/build.py)", read_source("common.cuh")]
    parts.extend(render_specialisation(spec, f"_s{i}") for i, spec in enumerate(specs))
    return "\n".join(parts) + "\n"


def _host_wrapper(sig: KernelSig, suffix: str, parallel: bool = False) -> str:
    head = ("unsigned int sj_grid", "unsigned int sj_block", *(("int sj_threads", "int sj_lanes_per_thread")
                                                               if parallel else ()))
    params = ", ".join(p for p in (*head, sig.c_params()) if p)
    run = ("sj_host_launch_parallel(sj_grid, sj_block, sj_threads, sj_lanes_per_thread, " if parallel
           else "sj_host_launch(sj_grid, sj_block, ")
    return (
        f'extern "C" void sjhost_{sig.name}{suffix}({params}) {{\n'
        # the kernel is found inside the specialisation's namespace or at global scope (where a source keeps it)
        f"    {run}[&]() {{\n"
        f"        using namespace sj_spec{suffix};\n        {sig.name}{suffix}({sig.c_args()});\n    }});\n"
        "}\n"
    )


def render_host_bundle(items: Sequence[tuple[Specialisation, Sequence[KernelSig]]], kind: str = "check") -> str:
    """Host C++ text: shim + common + each specialisation (suffix ``_s<i>``) + launch wrappers.

    The wrapper of kernel ``k`` of item ``i`` is ``sjhost_k_s<i>(grid, block, <kernel params>)``; in a fast
    build (``kind`` of :data:`HOST_BUILDS`) ``sjhost_k_s<i>(grid, block, threads, lanes, <kernel params>)``, the
    blocks shared by ``threads`` OpenMP threads and a lane kernel's thread given ``lanes`` neurons (at most
    :data:`CPU_LANES`; the launcher passes :func:`cpu_lanes`).
    """
    if kind not in HOST_BUILDS:
        raise ValueError(f"host build kind must be one of {sorted(HOST_BUILDS)}, got {kind!r}")
    parallel = HOST_BUILDS[kind][1]
    defines = [f"#define SJ_CPU_LANES {CPU_LANES}", f"#define SJ_CPU_STEPS {CPU_STEPS}",
               "#define SJ_HOST_PARALLEL 1"] if parallel else []
    parts = [f"// sjframe kernels, host build {kind!r} (cupy_neurons/build.py)", "#define SJ_HOST_BUILD 1", *defines,
             read_source("host_shim.h"), read_source("common.cuh")]
    for i, (spec, sigs) in enumerate(items):
        suffix = f"_s{i}"
        scalar, acc = DTYPES[spec.dtype]
        parts.append(render_specialisation(spec, suffix))
        # wrappers need the types again: re-define them around the generated code
        parts.append(f"#define SJ_SCALAR {scalar}\n#define SJ_ACC {acc}")
        parts.extend(_host_wrapper(sig, suffix, parallel) for sig in sigs)
        parts.append("#undef SJ_SCALAR\n#undef SJ_ACC")
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------- host build
def cache_dir() -> Path:
    """Folder of compiled host libraries: ``$SJFRAME_KERNEL_CACHE`` or a per-user temp folder."""
    env = os.environ.get("SJFRAME_KERNEL_CACHE")
    path = Path(env) if env else Path(tempfile.gettempdir()) / f"sjframe-kernels-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def _compiler_version(compiler: str) -> str:
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KernelCompileError(f"host C++ compiler {compiler!r} not usable: {exc}") from exc
    return out.stdout.strip()


def host_compiler_missing() -> str | None:
    """None if the host C++ compiler (``$CXX`` or ``g++``) is on the PATH, else a one-line sentence saying so."""
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler: {compiler!r} not found on the PATH (install g++ or set $CXX)"
    return None


def _host_compiler() -> str:
    missing = host_compiler_missing()
    if missing is not None:
        raise KernelCompileError(f"the CPU kernels cannot be built: {missing}")
    return os.environ.get("CXX", "g++")


@functools.cache
def _native_target(compiler: str) -> str:
    """What ``-march=native`` means for ``compiler`` on this machine (part of a fast build's cache key)."""
    out = subprocess.run([compiler, "-march=native", "-Q", "--help=target"], capture_output=True, text=True)
    return out.stdout


#: environment variable: the target of the fast / fma builds (``-march=<value>``, e.g. ``x86-64-v3`` for AVX2)
#: instead of ``native``, to build for other machines or to measure an older instruction set on this one; read when
#: a specialisation is first built in a process
MARCH_ENV = "SJFRAME_CPU_MARCH"


def host_flags(kind: str) -> tuple[str, ...]:
    """The compiler flags of host build ``kind`` (:data:`HOST_BUILDS`), with ``-march=native`` replaced by
    ``-march=$SJFRAME_CPU_MARCH`` when that is set."""
    if kind not in HOST_BUILDS:
        raise ValueError(f"host build kind must be one of {sorted(HOST_BUILDS)}, got {kind!r}")
    flags = HOST_BUILDS[kind][0]
    march = os.environ.get(MARCH_ENV, "")
    if march and "-march=native" in flags:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", march):
            raise ValueError(f"${MARCH_ENV}={march!r} is not a compiler target name (e.g. x86-64-v3, znver4, native)")
        flags = tuple(f"-march={march}" if f == "-march=native" else f for f in flags)
    return flags


def compile_host_source(text: str, flags: Sequence[str] = HOST_CXX_FLAGS) -> Path:
    """Compile host C++ text into a shared library (cached on disk by content hash); return its path.

    The key hashes the text, the flags, the compiler version and (for ``-march=native``) the target the
    compiler resolves on this machine, so a cache folder shared between machines never hands one a library
    built for another's instruction set.
    """
    compiler = _host_compiler()
    native = _native_target(compiler) if "-march=native" in flags else ""
    key = hashlib.sha256("\0".join([text, *flags, _compiler_version(compiler), native]).encode()).hexdigest()[:24]
    out = cache_dir() / f"host-{key}.so"
    if out.is_file():
        return out
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        src = Path(tmp) / "kernels.cpp"
        src.write_text(text)
        lib = Path(tmp) / "kernels.so"
        proc = subprocess.run([compiler, *flags, "-o", str(lib), str(src)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelCompileError(f"{compiler} failed on the host build of the kernels:\n{proc.stderr[-8000:]}")
        os.replace(lib, out)  # atomic: a concurrent reader sees the old or the complete file
    return out


_CTYPE_OF_KIND = {"int": ctypes.c_int, "index": ctypes.c_longlong, "float": ctypes.c_float, "u64": ctypes.c_ulonglong}


class HostLibrary:
    """A loaded host build: run kernel ``sig`` of bundle item ``index`` on CPU buffers.

    ``kind``: the build (:data:`HOST_BUILDS`); ``parallel``: its wrappers take the OpenMP thread count.
    """

    def __init__(self, path: Path, items: Sequence[tuple[Specialisation, Sequence[KernelSig]]],
                 kind: str = "check") -> None:
        self.path = path
        self.kind = kind
        self.parallel = HOST_BUILDS[kind][1]
        self.items = tuple((spec, tuple(sigs)) for spec, sigs in items)
        self._lib = ctypes.CDLL(str(path))
        self._index = {spec: i for i, (spec, _) in enumerate(self.items)}

    def has_kernel(self, spec: Specialisation, sig: KernelSig) -> bool:
        """Whether kernel ``sig`` of ``spec`` is in this library."""
        return spec in self._index and sig in self.items[self._index[spec]][1]

    def function(self, spec: Specialisation, sig: KernelSig) -> Any:
        """The ctypes wrapper ``sjhost_<kernel>_s<i>`` with its argument types set."""
        i = self._index[spec]
        if sig not in self.items[i][1]:
            raise ValueError(f"kernel {sig.name} was not built for {spec.label()}")
        fn = getattr(self._lib, f"sjhost_{sig.name}_s{i}")
        acc = ctypes.c_double if DTYPES[spec.dtype][1] == "double" else ctypes.c_float
        argtypes = [ctypes.c_uint, ctypes.c_uint, *((ctypes.c_int, ctypes.c_int) if self.parallel else ())]
        for kind, _ in sig.params:
            argtypes.append(ctypes.c_void_p if kind.endswith("ptr") else acc if kind == "acc" else _CTYPE_OF_KIND[kind])
        fn.argtypes = argtypes
        fn.restype = None
        return fn


def host_library(items: tuple[tuple[Specialisation, tuple[KernelSig, ...]], ...], kind: str = "check") -> HostLibrary:
    """Compile (or reuse) the host bundle of ``items`` in build ``kind`` (:data:`HOST_BUILDS`, with the flags of
    :func:`host_flags`) and load it (cached per process and flags)."""
    if not items:
        raise ValueError("host_library needs at least one (specialisation, kernels) item")
    return _host_library(items, kind, host_flags(kind))


@functools.lru_cache(maxsize=64)
def _host_library(items: tuple[tuple[Specialisation, tuple[KernelSig, ...]], ...], kind: str,
                  flags: tuple[str, ...]) -> HostLibrary:
    return HostLibrary(compile_host_source(render_host_bundle(items, kind), flags), items, kind)


def prebuild(items: Sequence[tuple[Specialisation, Sequence[KernelSig]]], kind: str = "fast",
             jobs: int | None = None) -> list[Path]:
    """Compile, ahead of use, the host libraries the launcher builds at first use, into :func:`cache_dir`.

    ``items``: ``(specialisation, every kernel of its source)`` pairs, each compiled alone (the bundle
    :func:`cupy_neurons.launch.launch` builds for it, so the launch finds it in the disk cache);
    ``kind``: the host build (:data:`HOST_BUILDS`); ``jobs``: compilers run at once (default: the CPU count).
    Returns the libraries' paths (already cached ones are not rebuilt).
    """
    from concurrent.futures import ThreadPoolExecutor

    flags = host_flags(kind)  # raises for an unknown kind
    texts = [render_host_bundle([(spec, tuple(sigs))], kind) for spec, sigs in items]
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return list(pool.map(lambda text: compile_host_source(text, flags), texts))


# ---------------------------------------------------------------------------------- nvcc check
def nvcc_path() -> str | None:
    """Path of ``nvcc`` ($NVCC, PATH, or /usr/local/cuda/bin) or None."""
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file():
            return cand
    return None


def compile_nvcc(text: str, archs: Sequence[str] = ("sm_80",), kind: str = "cubin", extra: Sequence[str] = ()) -> bytes:
    """Compile device text with nvcc into a cubin / PTX (one arch) or a fatbin (several archs).

    ``archs``: e.g. ``("sm_80", "sm_90")`` (real architectures: ptxas runs on each). Warnings are
    errors. Returns the output bytes; raises :class:`KernelCompileError` with the log on failure.
    """
    archs = (archs,) if isinstance(archs, str) else tuple(archs)
    if kind not in ("cubin", "ptx", "fatbin"):
        raise ValueError(f"kind must be 'cubin', 'ptx' or 'fatbin', got {kind!r}")
    if not archs or any(not re.fullmatch(r"sm_\d+a?", a) for a in archs):
        raise ValueError(f"archs must look like ('sm_80', 'sm_90'), got {archs!r}")
    if kind != "fatbin" and len(archs) != 1:
        raise ValueError(f"kind={kind!r} takes exactly one arch; use kind='fatbin' for {archs}")
    nvcc = nvcc_path()
    if nvcc is None:
        raise KernelCompileError("nvcc not found (set $NVCC or put it on PATH)")
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernels.cu"
        src.write_text(text)
        out = Path(tmp) / f"kernels.{kind}"
        cmd = [nvcc, f"-{kind}", *gencode, "-std=c++17", "--fmad=false", "-Werror=all-warnings", "-o", str(out), str(src),
               *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise KernelCompileError(f"nvcc ({', '.join(archs)}, {kind}) failed:\n{proc.stderr[-8000:]}")
        return out.read_bytes()


# ---------------------------------------------------------------------------------- CuPy
# No FMA contraction: the device then rounds like the host build (-ffp-contract=off), so the CPU
# check of the arithmetic holds bit for bit on the GPU (forward; the surrogate's expf may differ by
# an ulp). The kernels are memory bound, so this costs no measurable time. One difference is left:
# CuPy appends -ftz=true to every NVRTC compilation (after these options, and the last one wins), so
# float32 subnormal operands and results (|x| < 2^-126) are flushed to zero on the device, not on
# the host; float64 is not affected and the 16-bit conversions use bit operations / PTX cvt.
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")


@functools.lru_cache(maxsize=256)
def cupy_module(text: str, options: tuple[str, ...] = NVRTC_OPTIONS) -> Any:
    """``cupy.RawModule`` of a rendered device text (compiled by NVRTC on first use, cached)."""
    import cupy

    return cupy.RawModule(code=text, options=options)
