#!/usr/bin/env bash
# Train (and, with no argument, evaluate) an experiment, as in seed 003.
#   bash run.sh                          set up .venv, train configs/default.yaml (Yin-Yang), test it,
#                                        print the FS and FR test accuracy
#   bash run.sh <config.yaml> [--k v ...] train that config (any train.py option / seed 003 flag works)
# Evaluate a finished run with: bash run_test.sh <run_dir> [--T n --T_empty n ...]
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup_env.sh
PY=.venv/bin/python

if [ $# -eq 0 ]; then
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  "$PY" train.py configs/default.yaml | tee "$log"
  run_dir=$(sed -n 's/^run_dir: //p' "$log" | tail -n 1)
  if [ -z "$run_dir" ]; then
    echo "run.sh: training did not report a run directory" >&2
    exit 1
  fi
  "$PY" test.py "$run_dir"
else
  "$PY" train.py "$@"
fi
