#!/usr/bin/env bash
# The committed quality and task-sharing results of the shipped (v3) models (issue 16; MODELS.md): every goal
# on the test and generalisation splits (bench/models.py: independent models, the multi-task model, the shared
# engine at the node's defaults, fps -> bench/results/models.{json,md}), then the task-sharing benchmark with
# both baselines a user would pick instead (bench/task_sharing.py: the multi-task model, "nothing recomputed")
# and its verdict, on the v3 test split (-> bench/results/task_sharing.{json,md}).
# Needs the v3 splits (scripts/render_data_v3.sh). Nothing else may run on the machine meanwhile (both time
# the models); about 60 min on 2 cores. DENSE: the independent models; MULTI: the multi-task model; ENGINE:
# what the node's shared engine loads (default: the node's default, weights/multitask.pt with its depth
# sub-task; a dense checkpoint with <stem>_<task>.pt beside it judges a run before it is shipped).
# OUT=<stem suffix> writes <name>_<suffix> instead of the committed files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DENSE=${DENSE:-mtshare_ros/weights/independent.pt}
MULTI=${MULTI:-mtshare_ros/weights/multitask.pt}
ENGINE=${ENGINE:-default}
SUFFIX=${OUT:+_$OUT}
for f in "$DENSE" "$MULTI" data/v3/test/READY; do
  [ -f "$f" ] || { echo "evaluate_v3: $f is missing (scripts/train_v3.sh, scripts/render_data_v3.sh)" >&2; exit 2; }
done
"$PY" bench/models.py --checkpoint "$DENSE" --multitask "$MULTI" --engine "$ENGINE" --threads 2 \
  --splits test=data/v3/test generalisation=data/v3/generalisation --out-name "models$SUFFIX"
"$PY" bench/task_sharing.py --checkpoint "$DENSE" --multitask "$MULTI" --shared "$ENGINE" \
  --data-root data/v3/test --split val --threads 2 --out "bench/results/task_sharing$SUFFIX"
