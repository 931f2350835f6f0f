#!/usr/bin/env bash
# The project's test command (README command 2; .ci/run calls this file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
.venv/bin/python -m ruff check .
exec .venv/bin/python -m pytest -q "$@"
