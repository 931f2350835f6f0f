#!/usr/bin/env bash
# The checks that need a GPU, in one command (run it on a machine with CUDA, CuPy and the .venv built by
# scripts/setup_env.sh). Every figure goes to benchmarks/results/gpu-<date>-<device>.txt, with the device
# name and date at the top, so it can be copied into the README's tables.
#
#   bash scripts/gpu_checks.sh            # GPU tests, kernel benchmark, gradient-mode benchmark, DDP run
#   bash scripts/gpu_checks.sh --quick    # the same with fewer benchmark repeats
#
# It fails (status 1) if CUDA or CuPy is missing, if any test fails, or if any test was skipped for want
# of CUDA / CuPy (so a "pass" proves the GPU tests ran).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
repeats=20
grad_repeats=3
if [[ "${1:-}" == "--quick" ]]; then repeats=5; grad_repeats=1; fi

reason=$($PY -c "from sjframe.neurons.backends import cupy_unavailable_reason as r; print(r() or '')")
if [[ -n "$reason" ]]; then
    echo "gpu_checks: no GPU backend here: $reason" >&2
    exit 1
fi
device=$($PY -c "import torch; print(torch.cuda.get_device_name(0))")
ngpu=$($PY -c "import torch; print(torch.cuda.device_count())")
mkdir -p benchmarks/results
out="benchmarks/results/gpu-$(date +%Y-%m-%d)-$(echo "$device" | tr -c 'A-Za-z0-9\n' '_').txt"
{
    echo "device: $device (x$ngpu); date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    $PY -c "import torch, cupy; print(f'torch {torch.__version__}, CUDA {torch.version.cuda}, cupy {cupy.__version__}')"
} > "$out"

section() { echo; echo "## $*"; } >> "$out"

section "GPU tests (the whole suite: CPU and GPU cases)"
set +e
$PY -m pytest -q -rs tests 2>&1 | tee -a "$out"
status=${PIPESTATUS[0]}
set -e
if [[ $status -ne 0 ]]; then
    echo "gpu_checks: the test suite failed (status $status); see $out" >&2
    exit 1
fi
if grep -q "needs CUDA" "$out"; then  # requires_gpu and requires_cuda (tests/conftest.py)
    echo "gpu_checks: some GPU tests were skipped for want of CUDA / CuPy; see $out" >&2
    exit 1
fi

section "benchmarks/bench_kernels.py (float32, then bfloat16)"
$PY benchmarks/bench_kernels.py --repeats "$repeats" 2>&1 | tee -a "$out"
$PY benchmarks/bench_kernels.py --repeats "$repeats" --dtype bfloat16 --no-sj 2>&1 | tee -a "$out"

section "benchmarks/bench_gradients.py --device cuda --backend cupy (B = 256)"
$PY benchmarks/bench_gradients.py --device cuda --backend cupy --repeats "$grad_repeats" 2>&1 | tee -a "$out"

if [[ "$ngpu" -ge 2 ]]; then
    section "DistributedDataParallel (NCCL) on $ngpu GPUs: configs/default.yaml, 3 epochs"
    $PY -m torch.distributed.run --standalone --nproc_per_node "$ngpu" train.py configs/default.yaml \
        --train.epochs 3 --runs_root /tmp/sjframe-gpu-checks 2>&1 | tail -n 8 | tee -a "$out"
else
    section "DistributedDataParallel (NCCL): skipped, one GPU"
fi
echo "gpu_checks: all done; figures in $out"
