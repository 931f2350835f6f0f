"""The fast CPU build's time-step lane loops vectorise, for AVX2 and AVX-512 targets (compile only).

The CPU backend is fast because each kernel's lane loop (``SJ_FOR_LANES`` inside the time loop: the neurons of one
step, contiguous in memory) becomes SIMD code. Whether GCC vectorises it depends on the target: with its default
``-ftrapping-math`` GCC if-converts a conditional floating-point operation only with masked arithmetic, so on an
AVX2 machine (``x86-64-v3``) the CuLIF and AdLIF forward loops stayed scalar until the fast build added
``-fno-trapping-math`` (``cupy_neurons/build.py``). This test compiles each neuron's fast bundle for
``x86-64-v3`` and ``x86-64-v4`` (no need for such a CPU: nothing runs) and reads GCC's ``-fopt-info-vec`` report:
every version of every such loop (GCC unswitches them on uniform conditions) must be vectorised. LocalZO
backward loops are not checked: they call ``logf`` (per element, as the torch reference), which GCC does not
vectorise without changing its results; nor float16 storage (its forward loops are partly scalar: a software
conversion; float16 is a GPU storage type, float32 / float64 / bfloat16 are checked).
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cupy_neurons import build, kernels
from sjframe.spike import GradientSpec
from sjframe.spike.surrogate import get_surrogate


def _gcc_major() -> int:
    """g++'s major version (0 when there is no g++ or it does not say)."""
    if shutil.which("g++") is None:
        return 0
    out = subprocess.run(["g++", "-dumpversion"], capture_output=True, text=True).stdout.strip()
    return int(out.split(".")[0]) if out.split(".")[0].isdigit() else 0


# GCC's vectoriser report (-fopt-info-vec) is what is read; checked with GCC 12 (Debian 12), the project's
# compiler; older vectorisers are not held to it
pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or _gcc_major() < 12,
    reason="x86-64 targets and g++ >= 12 needed (compile only)",
)

_REPORT = re.compile(r"kernels\.cpp:(\d+):\d+: (optimized: loop vectorized|missed: couldn't vectorize loop)")


def time_step_lane_loops(text: str) -> list[int]:
    """Lines of the lane loops run at every time step: an ``SJ_FOR_LANES(j)`` right after the step's
    ``row = ...`` line. GCC reports the loop one line below the macro (its ``_Pragma`` opens a line)."""
    lines = text.splitlines()
    return [i + 2 for i, line in enumerate(lines) if "SJ_FOR_LANES(j)" in line and i and "row =" in lines[i - 1]]


def loop_report(stderr: str) -> dict[int, list[int]]:
    """``-fopt-info-vec`` messages per line: ``[versions vectorised, versions not vectorised]``."""
    counts: dict[int, list[int]] = {}
    for match in _REPORT.finditer(stderr):
        entry = counts.setdefault(int(match.group(1)), [0, 0])
        entry[0 if match.group(2).startswith("optimized") else 1] += 1
    return counts


def unvectorised(text: str, stderr: str) -> dict[int, list[int]]:
    """The time-step lane loops of ``text`` that are not vectorised in every version, with their report."""
    report = loop_report(stderr)
    counts = {line: report.get(line, [0, 0]) for line in time_step_lane_loops(text)}
    return {line: c for line, c in counts.items() if c[1] or not c[0]}  # a version missed, or none vectorised


def test_report_parser_flags_a_missed_loop() -> None:
    text = "x\nconst sj_index row = t * N;\nSJ_FOR_LANES(j) {\n  _\n}\n"
    assert time_step_lane_loops(text) == [4]
    ok = "kernels.cpp:4:5: optimized: loop vectorized using 64 byte vectors\n"
    missed = ok + "kernels.cpp:4:5: missed: couldn't vectorize loop\n"
    assert unvectorised(text, ok) == {}
    assert unvectorised(text, missed) == {4: [1, 1]}
    assert unvectorised(text, "") == {4: [0, 0]}


def compile_fast_bundle(neuron: str, dtype: str, mode: str, march: str, gcc_args: list[str], tmp_path: Path,
                        monkeypatch) -> tuple[str, subprocess.CompletedProcess]:  # noqa: ANN001
    """Render ``neuron``'s fast bundle (its kernels, ``dtype``, gradient ``mode``, default surrogate, detached reset)
    and run g++ on it with the fast build's flags for ``march`` (no ``-shared``: nothing is linked) and ``gcc_args``
    (the output and what to report), in ``tmp_path/kernels.cpp``. Returns the text and the finished process."""
    sigs = kernels.NEURON_KERNELS[neuron]
    expr = GradientSpec(mode=mode).surrogate_for(get_surrogate()).cuda_expr("u")
    text = build.render_host_bundle([(kernels.specialisation(neuron, dtype, expr, True), sigs)], "fast")
    src = tmp_path / "kernels.cpp"
    src.write_text(text)
    monkeypatch.setenv(build.MARCH_ENV, march)
    flags = [f for f in build.host_flags("fast") if f != "-shared"]
    proc = subprocess.run(["g++", *flags, *gcc_args, str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return text, proc


# float32 on both targets; float64, bfloat16 storage and the sparse mode on AVX2, the target that needs the most of
# GCC (about 2 s a compile)
@pytest.mark.parametrize(("march", "dtype", "mode"), [
    ("x86-64-v3", "float32", "dense"), ("x86-64-v4", "float32", "dense"), ("x86-64-v3", "float64", "dense"),
    ("x86-64-v3", "bfloat16", "dense"),
    ("x86-64-v3", "float32", "sparse"),  # the surrogate truncated to its band: a conditional in the loop
])
@pytest.mark.parametrize("neuron", sorted(kernels.NEURON_KERNELS))
def test_time_step_lane_loops_vectorise(neuron: str, march: str, dtype: str, mode: str, tmp_path: Path,
                                        monkeypatch) -> None:  # noqa: ANN001
    sigs = kernels.NEURON_KERNELS[neuron]
    text, proc = compile_fast_bundle(neuron, dtype, mode, march, ["-fopt-info-vec-optimized", "-fopt-info-vec-missed",
                                                                  "-c", "-o", str(tmp_path / "kernels.o")],
                                     tmp_path, monkeypatch)
    loops = time_step_lane_loops(text)
    # one per forward kernel; two per backward kernel (several steps per pass, then one: common.cuh, SJ_STEPS)
    assert len(loops) == sum(2 if sig.name.endswith("_backward") else 1 for sig in sigs)
    assert unvectorised(text, proc.stderr) == {}, f"{neuron} {dtype} {mode} on {march}: lane loops not vectorised (line: " \
                                                  f"[vectorised, not vectorised] versions)"


def test_march_override_reaches_the_fast_build_only(monkeypatch, tmp_path: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("SJFRAME_KERNEL_CACHE", str(tmp_path))
    monkeypatch.delenv(build.MARCH_ENV, raising=False)
    native = build.host_flags("fast")
    assert "-march=native" in native
    monkeypatch.setenv(build.MARCH_ENV, "x86-64-v3")
    assert build.host_flags("fast") == tuple("-march=x86-64-v3" if f == "-march=native" else f for f in native)
    assert build.host_flags("check") == build.HOST_BUILDS["check"][0]  # the GPU's model: never retargeted
    spec = kernels.specialisation("lif", "float32", get_surrogate().cuda_expr("u"), True)
    lib = build.host_library(((spec, kernels.NEURON_KERNELS["lif"]),), "fast")
    assert lib.path.is_file() and lib.path.parent == tmp_path
    monkeypatch.setenv(build.MARCH_ENV, "x86-64; rm -rf /")
    with pytest.raises(ValueError, match="SJFRAME_CPU_MARCH"):
        build.host_flags("fast")


def function_bodies(asm: str) -> dict[str, str]:
    """The assembly text of each function of a ``g++ -S`` output: from its ``name:`` label to its ``.size name``."""
    bodies: dict[str, str] = {}
    for match in re.finditer(r"^([A-Za-z_]\w*):\n(.*?)^\s*\.size\s+\1,", asm, re.M | re.S):
        bodies[match.group(1)] = match.group(2)
    return bodies


def test_function_bodies_parser() -> None:
    asm = "f_s0:\n\tprefetcht1\t(%rax)\n\tret\n\t.size\tf_s0, .-f_s0\ng:\n\tret\n\t.size\tg, .-g\n"
    assert function_bodies(asm) == {"f_s0": "\tprefetcht1\t(%rax)\n\tret\n", "g": "\tret\n"}


@pytest.mark.parametrize("neuron", sorted(kernels.NEURON_KERNELS))
def test_fast_build_keeps_its_prefetches(neuron: str, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Every forward kernel prefetches its next step's input into level 1 (``prefetcht0``: SJ_PREFETCH_ROW), every
    backward kernel its next pass's rows into level 2 (``prefetcht1``: SJ_PREFETCH_PASS). GCC drops a call of a
    prefetch-only helper it does not inline (such a helper has no side effect), as it once did in the large backward
    kernels: the helpers are always inlined, and this checks the instructions are there."""
    sigs = kernels.NEURON_KERNELS[neuron]
    compile_fast_bundle(neuron, "float32", "dense", "x86-64-v4", ["-S", "-o", str(tmp_path / "kernels.s")], tmp_path,
                        monkeypatch)
    bodies = function_bodies((tmp_path / "kernels.s").read_text())
    for sig in sigs:
        if not sig.name.endswith(("_forward", "_backward")):
            continue
        body = bodies.get(f"{sig.name}_s0")
        assert body is not None, f"{sig.name}_s0 not found in the assembly (functions: {sorted(bodies)})"
        wanted = "prefetcht0" if sig.name.endswith("_forward") else "prefetcht1"
        assert wanted in body, f"{sig.name}: no {wanted} in the fast build's code"
