#!/usr/bin/env bash
# Judges the v3 models once scripts/train_v3.sh has finished (issue 16; MODELS.md "v3"): every goal on the
# test and generalisation splits (bench/models.py: independent models, the multi-task model, the shared engine
# at the node's defaults, fps), then the task-sharing benchmark with both baselines a user would pick instead
# (bench/task_sharing.py: the multi-task model, "nothing recomputed") and its verdict, on the v3 test split.
# Nothing else may run on the machine meanwhile (both time the models); about 25 min on 2 cores.
# Shipping is a separate, deliberate step: copy runs/v3_finetune/default{,_depth,_normals}.pt to
# mtshare_ros/weights/ together (the sub-tasks are tied to their base by a fingerprint).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DENSE=${DENSE:-runs/v3_finetune/default.pt}
MULTI=${MULTI:-runs/v3_multitask/model.pt}
for f in "$DENSE" "${DENSE%.pt}_depth.pt" "${DENSE%.pt}_normals.pt" "$MULTI"; do
  [ -f "$f" ] || { echo "evaluate_v3: $f is missing: run scripts/train_v3.sh to the end first" >&2; exit 2; }
done
"$PY" bench/models.py --checkpoint "$DENSE" --multitask "$MULTI" --threads 2 \
  --splits test=data/v3/test generalisation=data/v3/generalisation --out-name models_v3
"$PY" bench/task_sharing.py --checkpoint "$DENSE" --multitask "$MULTI" \
  --data-root data/v3/test --split val --threads 2 --out bench/results/task_sharing_v3
