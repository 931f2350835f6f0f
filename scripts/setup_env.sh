#!/usr/bin/env bash
# Create .venv (if missing or out of date with the requirements files) and install sjframe's pins.
# Idempotent: a stamp file records the hash of the requirements it was built from.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.sjframe-requirements.sha
want=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "[setup] creating/updating .venv (first run installs torch from the local wheel store; a few minutes)" >&2
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import torch, spikingjelly.activation_based.neuron, h5py, yaml" \
  || { echo "[setup] the environment is broken: an import failed (see above)" >&2; exit 1; }
echo "$want" > "$stamp"
