#!/usr/bin/env bash
# The small setting of issue 16 (MODELS.md "Multi-task or independent?"): on the v3 data the shipped-size
# multi-task model matched the independent models, so the comparison is repeated with a model of a fifth of
# the size, where the three tasks compete for capacity. Resumable at every stage; needs data/v3
# (scripts/render_data_v3.sh). About 2 h on 2 cores (estimated from the first steps):
#   1. the multi-task model (config/train/v3_small_multitask.yaml) and the three independent models
#      (config/train/v3_small.yaml), same recipe, data and batch order; stages as in scripts/train_v3.sh
#   2. the shared sub-tasks against the small segmentation model, a short chain of the shipped one's rounds
#      (step 1 on crops, step 3 on crops, then distilled on full frames), blocks 2-3 owned (as blocks 4-5 of
#      6 in the shipped models), rank 16, heads at half width; exported beside the models
#   3. the task-sharing benchmark of this setting with both baselines (bench/results/task_sharing_small.*;
#      times the models: nothing else may run meanwhile). BENCH=0 stops before it, to train beside other
#      work; the same command with BENCH=1 later passes the finished stages (a training run that has
#      ended only validates and exports again) and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
NPROC=${NPROC:-2}
THREADS=${THREADS:-1}
RUNS=runs/v3_small_shared
DATA='[data/v3/train_a,data/v3/train_b,data/v3/train_c,data/v3/train_d]'
train() {
  OMP_NUM_THREADS=$THREADS nice -n 10 "$VENV/bin/torchrun" --standalone --nproc-per-node "$NPROC" \
    -m mtshare_ros.cli train --config "$1" train.threads="$THREADS"
}
round() {  # task, config, own name, previous round's name (or -), overrides...
  local task=$1 cfg=$2 name=$3 prev=$4
  shift 4
  local out="$RUNS/${task}_$name.pt"
  [ -f "$out" ] && return 0
  local extra=(task="$task" out="$out" base_checkpoint=runs/v3_small/default.pt "data.root=$DATA" train.threads=1)
  [ "$prev" = - ] || extra+=(init="$RUNS/${task}_$prev.pt")
  OMP_NUM_THREADS=1 nice -n 10 "$VENV/bin/mtshare" share-train --config "config/train/$cfg.yaml" "${extra[@]}" "$@"
}
chain() {
  round "$1" shared_lowrank_step1 step1 - start_layer=2 rank=16 head_channels=24 train.steps=1500
  round "$1" shared_lowrank_step3 step3 step1
  round "$1" shared_lowrank_distill_full distill_full step3 distill=runs/v3_small/default.pt train.steps=800 \
    "export=runs/v3_small/default_{task}.pt"
}
train config/train/v3_small_multitask.yaml
train config/train/v3_small.yaml
mkdir -p "$RUNS"
chain depth > "$RUNS/depth.log" 2>&1 &
depth=$!
chain normals > "$RUNS/normals.log" 2>&1 &
normals=$!
wait "$depth"
wait "$normals"
[ "${BENCH:-1}" = 1 ] || exit 0
"$VENV/bin/python" bench/task_sharing.py --checkpoint runs/v3_small/default.pt \
  --multitask runs/v3_small_multitask/model.pt --data-root data/v3/test --split val --threads 2 \
  --out bench/results/task_sharing_small
