"""Driver of scripts/gpu_checks.sh (run it through that script, which installs the carried wheels first).

    python3 scripts/gpu_checks.py tests   # the GPU tests: pytest -m gpu -x over the files holding GPU cases
    python3 scripts/gpu_checks.py bench   # the benchmarks in quick mode

Everything is written under $OUT (default build/gpu-checks): a results file per step headed by the device,
the versions, the date and the commit (read from $GPU_CHECKS_COMMIT_FILE, which scripts/gpu_wheels.sh
writes: the device's copy of the tree has no git history), and the JUnit XML of the tests. Standard
library only at import time; torch / CuPy / sjframe are imported inside.

Exit status: 0 passed; 1 failed; 2 no CUDA here, so nothing was checked (the tests step still collects and
runs the selection, which must then skip entirely "needs CUDA": the path CI's dry run checks).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]
NEEDS_CUDA = "needs CUDA"  # the start of every GPU test's skip reason (tests/conftest.py)
# a test file holds GPU cases if it applies requires_gpu / requires_cuda (tests/conftest.py) or the gpu mark
GPU_FILE_PATTERN = re.compile(r"(@|=\s*)requires_(gpu|cuda)\b|mark\.gpu\b")
ESTIMATES = {"tests": "3-6 min serial, 2-4 min with 4 xdist workers", "bench": "3-5 min"}  # see gpu_checks.sh
BENCHMARKS = (  # (arguments after the interpreter, time limit in s)
    (["benchmarks/bench_kernels.py", "--quick"], 270),
    (["benchmarks/bench_kernels.py", "--quick", "--dtype", "bfloat16", "--no-sj"], 120),
    (["benchmarks/bench_gradients.py", "--quick", "--device", "cuda", "--backend", "cupy"], 180),
)


def out_dir() -> Path:
    out = Path(os.environ.get("OUT") or ROOT / "build" / "gpu-checks")
    out.mkdir(parents=True, exist_ok=True)
    return out


def gpu_test_files(tests: Path = ROOT / "tests") -> list[str]:
    """The test files holding GPU cases (relative to the repository root), sorted."""
    return sorted(str(p.relative_to(ROOT)) for p in tests.glob("test_*.py") if GPU_FILE_PATTERN.search(p.read_text()))


def commit() -> str:
    stamp = Path(os.environ.get("GPU_CHECKS_COMMIT_FILE", ROOT / ".whl" / "COMMIT"))
    if stamp.is_file():
        return " ".join(line.strip() for line in stamp.read_text().splitlines() if line.strip())
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=10"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip() + " (from git; no .whl/COMMIT)"
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no .whl/COMMIT: run scripts/gpu_wheels.sh before the device call)"


def preflight() -> str | None:
    """None if everything the GPU tests import is importable, else the message to stop with."""
    for module in ("spikingjelly.activation_based.surrogate", "torch", "yaml", "h5py", "scipy", "tqdm", "pytest",
                   "sjframe.neurons", "cupy_neurons.neurons"):  # SpikingJelly (carried) first: fails fast
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - any import failure stops the check with its message
            return (f"{module} cannot be imported ({type(exc).__name__}: {exc}). SpikingJelly and loguru travel as "
                    "wheels: run 'bash scripts/gpu_wheels.sh' here and name .whl in the run call's carry")
    return None


def cuda_reason() -> str | None:
    from sjframe.neurons.base import cupy_unavailable_reason

    return cupy_unavailable_reason()


def header(step: str) -> tuple[list[str], str]:
    """The results file's header lines and the device's name for the file name."""
    import platform
    from importlib import metadata

    import torch

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    lines = [f"# gpu_checks {step}: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", f"commit: {commit()}"]
    reason = cuda_reason()
    if reason is None:
        import cupy

        props = torch.cuda.get_device_properties(0)
        name = torch.cuda.get_device_name(0)
        lines.append(f"device: {name} x{torch.cuda.device_count()}, {props.multi_processor_count} SMs, "
                     f"{props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}; "
                     f"driver {cupy.cuda.runtime.driverGetVersion()}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
    else:
        name = "no-CUDA"
        lines.append(f"device: none ({reason})")
    lines.append(f"python {platform.python_version()} ({sys.executable}); torch {torch.__version__} (CUDA "
                 f"{torch.version.cuda}); cupy {version('cupy-cuda13x')}; spikingjelly {version('spikingjelly')}; "
                 f"numpy {version('numpy')}; pytest {version('pytest')}")
    lines.append(f"estimated time of this step: {ESTIMATES[step]} (an estimate; the measured time is at the end)")
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "device"
    return lines, slug


def tee(cmd: list[str], log: TextIO, limit: float | None = None) -> int:
    """Run ``cmd`` in the repository root, its output to stdout and ``log``; killed after ``limit`` seconds."""
    log.write(f"$ {shlex.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    timer = threading.Timer(limit, proc.kill) if limit else None
    if timer:
        timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            log.flush()
    finally:
        if timer:
            timer.cancel()
    rc = proc.wait()
    if rc < 0 and limit:
        log.write(f"[killed after its limit of {limit:.0f} s]\n")
    return rc


def junit_summary(path: Path) -> dict:
    """Counts and skip reasons of a pytest JUnit XML file."""
    tests = failures = errors = 0
    skips: list[str] = []
    if path.is_file():
        for case in ET.parse(path).getroot().iter("testcase"):
            tests += 1
            failures += case.find("failure") is not None
            errors += case.find("error") is not None
            skipped = case.find("skipped")
            if skipped is not None:
                skips.append(skipped.get("message", ""))
    return {"tests": tests, "failures": failures, "errors": errors, "skips": skips}


def run_tests(out: Path) -> int:
    lines, slug = header("tests")
    results = out / f"gpu-tests-{time.strftime('%Y-%m-%d')}-{slug}.txt"
    junit = out / "gpu-tests-junit.xml"
    junit.unlink(missing_ok=True)
    cuda = cuda_reason() is None
    files = gpu_test_files()
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rfEs", "-m", "gpu", f"--junitxml={junit}"]
    workers = int(os.environ.get("GPU_CHECKS_WORKERS", "4"))
    if cuda and workers > 0 and _importable("xdist"):
        cmd += ["-n", str(workers)]
    if cuda and _importable("pytest_timeout"):
        cmd += ["--timeout=300"]  # a hung kernel fails its test instead of eating the call's 10 minutes
    cmd += shlex.split(os.environ.get("GPU_CHECKS_PYTEST_ARGS", "")) + files
    start = time.monotonic()
    with results.open("w") as log:
        log.write("\n".join(lines) + f"\ntest files: {' '.join(files)}\n\n")
        rc = tee(cmd, log)
        s = junit_summary(junit)
        needs = [r for r in s["skips"] if r.startswith(NEEDS_CUDA)]
        others = sorted({r for r in s["skips"] if not r.startswith(NEEDS_CUDA)})
        verdict, status = _verdict(cuda, rc, s, needs)
        log.write(f"\n## summary\nselected GPU tests: {s['tests']}; failed: {s['failures']}; errors: {s['errors']}; "
                  f"skipped: {len(s['skips'])} ({len(needs)} '{NEEDS_CUDA}...')\n")
        if others:
            log.write(f"other skip reasons: {'; '.join(others)}\n")
        log.write(f"pytest status {rc}; step wall time {time.monotonic() - start:.0f} s\n{verdict}\n")
    print(f"gpu_checks: {verdict}; see {results}", file=sys.stderr if status else sys.stdout)
    return status


def _verdict(cuda: bool, rc: int, s: dict, needs: list[str]) -> tuple[str, int]:
    if s["tests"] == 0:
        return f"no GPU test was selected or the run broke before any result (pytest status {rc})", 1
    if s["failures"] or s["errors"] or rc not in (0,):
        return f"FAILED: pytest status {rc}, {s['failures']} failed, {s['errors']} errors", 1
    if not cuda:
        if len(needs) != s["tests"]:
            return (f"{s['tests'] - len(needs)} of {s['tests']} GPU-selected tests did not skip '{NEEDS_CUDA}' "
                    "without CUDA: they are not gated by requires_gpu / requires_cuda"), 1
        return f"no CUDA here: {s['tests']} GPU tests selected, all skipped '{NEEDS_CUDA}'; nothing was checked", 2
    if needs:
        return f"FAILED: {len(needs)} GPU tests were skipped for want of CUDA / CuPy although CUDA is here", 1
    return f"passed: {s['tests'] - len(s['skips'])} GPU tests passed, {len(s['skips'])} skipped", 0


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_bench(out: Path) -> int:
    reason = cuda_reason()
    if reason is not None:
        print(f"gpu_checks: no CUDA here ({reason}); the benchmarks need a GPU, nothing was measured", file=sys.stderr)
        return 2
    lines, slug = header("bench")
    results = out / f"gpu-bench-{time.strftime('%Y-%m-%d')}-{slug}.txt"
    start = time.monotonic()
    failed = []
    with results.open("w") as log:
        log.write("\n".join(lines) + "\n")
        for args, limit in BENCHMARKS:
            log.write(f"\n## {' '.join(args)} (limit {limit} s)\n")
            t0 = time.monotonic()
            rc = tee([sys.executable, *args], log, limit)
            log.write(f"[status {rc}, {time.monotonic() - t0:.0f} s]\n")
            if rc != 0:
                failed.append(f"{' '.join(args)} (status {rc})")
        log.write(f"\nstep wall time {time.monotonic() - start:.0f} s\n")
        if failed:
            log.write(f"FAILED: {'; '.join(failed)}\n")
    print(f"gpu_checks: benchmarks {'FAILED: ' + '; '.join(failed) if failed else 'done'}; figures in {results}",
          file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("tests", "bench"):
        print("usage: python3 scripts/gpu_checks.py tests|bench (through scripts/gpu_checks.sh)", file=sys.stderr)
        return 64
    sys.path.insert(0, str(ROOT))
    problem = preflight()
    if problem is not None:
        print(f"gpu_checks: {problem}", file=sys.stderr)
        return 1
    out = out_dir()
    return run_tests(out) if argv[0] == "tests" else run_bench(out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
