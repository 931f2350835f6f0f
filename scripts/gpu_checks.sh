#!/usr/bin/env bash
# The checks that need a GPU, made for the lent device machine (an H200 with torch + CuPy in its own python3,
# no SpikingJelly, no network). Two steps, one device `run` call each; every figure and log is written under
# $OUT (the only folder whose files come back), each file headed by the device, versions, date and commit.
#
# HERE, first (downloads the 2 wheels the device lacks into the ignored .whl/, ~1.1 MB; stamps the commit):
#     bash scripts/gpu_wheels.sh
# THEN the device tool calls (the second within 30 s of the first, while the machine is warm):
#     run(command="bash scripts/gpu_checks.sh tests", carry=[".whl"], timeout_s=540)
#     run(command="bash scripts/gpu_checks.sh bench", carry=[".whl"], timeout_s=480)
# and copy the results file(s) from the reply's files_at into benchmarks/results/ and commit them.
#
# Steps (the times are ESTIMATES, not measurements: no device run of this script has happened yet; the
# results files record the real wall time of each step, to replace these):
#   set-up (both steps)  install .whl/*.whl into $SITE (pip --target, no index), PYTHONPATH; check imports;
#                        ~10 s
#   tests                the GPU tests only: `pytest -m gpu -x` over the test files that hold GPU cases
#                        (737 tests: tests/test_kernels_gpu.py 369, tests/test_kernels_localzo_gpu.py 359, tests/test_launch_host.py 2,
#                        and 7 in test_engine / test_exact / test_stdp / test_conversion / test_gradients_sparse);
#                        4 pytest-xdist workers where xdist is installed (it is on the device). Estimate:
#                        ~250 NVRTC compiles at 0.2-0.5 s, 735 small reference-vs-kernel cases at ~0.1 s,
#                        one inductor compile ~1 min, a T x N > 2^31 case: 3-6 min serial, 2-4 min with 4
#                        workers. Fails on any failure AND on any test skipped "needs CUDA..." (a pass must
#                        prove the GPU tests ran); stops at the first failure (-x; conftest also stops at the
#                        first sticky CUDA fault, which would poison every later test).
#   bench                the benchmarks in quick mode: bench_kernels.py --quick (float32 with SpikingJelly's
#                        LIFNode, T 32 and 128, median of 5; block-size sweep), bench_kernels.py --quick
#                        --dtype bfloat16 --no-sj, bench_gradients.py --quick --device cuda --backend cupy
#                        (B 256, T 100 and 500, N 200 and 1000, median of 3). Estimate 3-5 min (4 SpikingJelly
#                        child processes ~20 s each; kernel compiles; the rest is ms-scale timing).
# Without CUDA (CI, a laptop) the tests step still installs, collects and runs the selection, every test skips
# "needs CUDA", and the script exits 2 ("nothing was checked"); tests/test_gpu_checks_dryrun.py runs exactly
# that path in an interpreter without SpikingJelly, as on the device.
#
# Exit status: 0 all passed; 1 a failure (or a GPU test skipped for want of CUDA while CUDA is there); 2 no
# CUDA here, nothing checked. Files under $OUT (at most 8 come back; we write 3 per step at most):
#   gpu-tests-<date>-<device>.txt   header + pytest log + summary (commit it under benchmarks/results/)
#   gpu-tests-junit.xml             per-test results
#   gpu-bench-<date>-<device>.txt   header + the three benchmark tables (commit it under benchmarks/results/)
#
# Variables: PY (python3: the device's interpreter holds torch and CuPy; a .venv made here is not there),
# OUT (default build/gpu-checks), GPU_CHECKS_WHEELS (default .whl), GPU_CHECKS_SITE (default /tmp/site),
# GPU_CHECKS_WORKERS (xdist workers, default 4; 0 = none), GPU_CHECKS_PYTEST_ARGS (extra pytest arguments).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHEELS=${GPU_CHECKS_WHEELS:-.whl}
SITE=${GPU_CHECKS_SITE:-/tmp/site}
export OUT=${OUT:-build/gpu-checks}
export PYTHONUNBUFFERED=1
step=${1:-tests}
case "$step" in tests|bench) ;; *) echo "usage: bash scripts/gpu_checks.sh [tests|bench]" >&2; exit 64;; esac
mkdir -p "$OUT"

# set-up: the carried wheels into a folder of their own (the device's site-packages stay untouched)
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl || { echo "gpu_checks: installing the wheels of $WHEELS failed" >&2; exit 1; }
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "gpu_checks: no wheels in $WHEELS (run 'bash scripts/gpu_wheels.sh' here and carry .whl); using what $PY has" >&2
fi
export GPU_CHECKS_COMMIT_FILE="$WHEELS/COMMIT"
exec "$PY" scripts/gpu_checks.py "$step"
