#!/usr/bin/env bash
# One training stage, `mtshare train --config CONFIG [overrides...]`, as NPROC data-parallel processes of
# THREADS threads each (defaults 2 and 1: on the 2 cores, two one-thread processes trained 20% faster than one
# two-thread process, with the same result; MODELS.md "Training"). NPROC=1 THREADS=2 runs one process.
# A finished stage only validates and exports again, so pipelines call it for every stage on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
NPROC=${NPROC:-2}
THREADS=${THREADS:-1}
OMP_NUM_THREADS=$THREADS exec nice -n 10 "$VENV/bin/torchrun" --standalone --nproc-per-node "$NPROC" \
  -m mtshare_ros.cli train --config "$1" train.threads="$THREADS" "${@:2}"
