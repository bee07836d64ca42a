#!/usr/bin/env bash
# Trains the shipped sub-tasks (depth, normals) of the shared model against the shipped default base
# (sharing steps 1 and 3 of the method, see config/train/shared_lowrank_step*.yaml) and exports them as
# mtshare_ros/weights/default_depth.pt and default_normals.pt. Needs data/synthetic and
# data/synthetic_train (see config/train/synthetic_small.yaml). Extra arguments are passed to every step
# as overrides (e.g. train.threads=4).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}  # the repository's virtual environment (make venv); PYTHON=... for another
[ -x "$PY" ] || PY=python3
MTSHARE=("$PY" -m mtshare_ros.cli share-train)
"${MTSHARE[@]}" --config config/train/shared_lowrank_step1.yaml task=depth "$@"
"${MTSHARE[@]}" --config config/train/shared_lowrank_step3.yaml task=depth "$@"
"${MTSHARE[@]}" --config config/train/shared_lowrank_step1.yaml task=normals init=runs/shared/depth_lowrank_step3.pt "$@"
"${MTSHARE[@]}" --config config/train/shared_lowrank_step3.yaml task=normals "$@"
