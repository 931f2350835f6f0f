#!/usr/bin/env bash
# Evaluate a trained run on the test split, as in seed 003:
#   bash run_test.sh <run_dir | checkpoint.pt> [--T n --T_empty n --checkpoint best|last ...]
# Prints FS / FR accuracy, spike counts, td50/td90 and firing rates; writes <run_dir>/reports/.
set -euo pipefail
cd "$(dirname "$0")"
if [ $# -lt 1 ]; then
  echo "usage: bash run_test.sh <run_dir | checkpoint.pt> [test.py options]" >&2
  exit 2
fi
bash scripts/setup_env.sh
exec .venv/bin/python test.py "$@"
