#!/usr/bin/env bash
# Prepare the device check (scripts/gpu_checks.sh) HERE, before the device `run` call: download the wheels the
# device machine lacks into the ignored folder .whl/ (carried with the call: `carry: [".whl"]`) and stamp the
# commit that is being checked into .whl/COMMIT (the device's copy of the tree has no git history).
#
#   bash scripts/gpu_wheels.sh
#
# What the device lacks (/work/.library/device/KINDS.md, package list of 2026-11-17; its python3 is 3.12):
#   spikingjelly 2.0.0  sjframe's neurons are SpikingJelly modules; the GPU tests and bench_kernels use it
#   loguru 0.7.3        imported by spikingjelly.activation_based.surrogate at import time
# Everything else the GPU tests and the benchmarks import is there (torch, cupy-cuda13x, numpy, scipy, pyyaml,
# h5py, tqdm, matplotlib, scikit-learn, tensorboard, requests, pytest, pytest-xdist). SpikingJelly's other
# requirement SciencePlots is imported only inside a plotting function, never by the tests.
# Both wheels are pure Python (py3-none-any), about 1.1 MB together: far under the 64 MiB a call carries.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEST=${GPU_WHEELS_DIR:-.whl}
WHEELS=(spikingjelly==2.0.0 loguru==0.7.3)
LIMIT_MB=16  # our own cap, far under the 64 MiB working-tree limit of a device call

mkdir -p "$DEST"
git check-ignore -q "$DEST/x.whl" || { echo "gpu_wheels: $DEST is not ignored by git (.gitignore has .whl/)" >&2; exit 1; }
for spec in "${WHEELS[@]}"; do
    name=${spec%%==*}; version=${spec##*==}
    if compgen -G "$DEST/${name}-${version}-*.whl" >/dev/null; then
        continue
    fi
    # one version of each only: two stop the whole install on the device
    rm -f "$DEST/${name}"-*.whl
    # the device README's flags (Python 3.12, CPython, manylinux x86-64)
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "$spec"
done
# the checked commit (a dirty tree says so): gpu_checks.sh writes it into every results file
echo "$(git rev-parse HEAD) ($(git describe --always --dirty --abbrev=10); wheels prepared $(date -u '+%Y-%m-%d %H:%M UTC'))" \
    > "$DEST/COMMIT"
size=$(du -sk "$DEST" | cut -f1)
if (( size > LIMIT_MB * 1024 )); then
    echo "gpu_wheels: $DEST holds ${size} KiB, over the ${LIMIT_MB} MiB cap: remove stale wheels" >&2
    exit 1
fi
ls -l "$DEST"
echo "gpu_wheels: ${size} KiB in $DEST; now call the device tool (see the header of scripts/gpu_checks.sh)"
