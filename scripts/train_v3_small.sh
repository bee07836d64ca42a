#!/usr/bin/env bash
# The small setting of issue 16 (MODELS.md "Multi-task or independent?"): on the v3 data the shipped-size
# multi-task model matched the independent models, so the comparison is repeated with a model of a fifth of
# the size, where the three tasks compete for capacity. Resumable at every stage; needs data/v3
# (scripts/render_data_v3.sh). About 4 h on 2 cores:
#   1. the multi-task model and the three independent models, both from config/train/v3_small.yaml (the first
#      with train.shared_encoder=true: the same recipe, data and batch order; scripts/train_stage.sh)
#   2. the shared sub-tasks against the small segmentation model, a short chain of the shipped one's rounds
#      (step 1 on crops, step 3 on crops, then distilled on full frames), blocks 2-3 owned (as blocks 4-5 of
#      6 in the shipped models), rank 16, heads at half width; exported beside the models
#   3. the task-sharing benchmark of this setting with both baselines (bench/results/task_sharing_small.*;
#      times the models: nothing else may run meanwhile). BENCH=0 stops before it, to train beside other
#      work; the same command with BENCH=1 later passes the finished stages (a training run that has
#      ended only validates and exports again) and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
scripts/train_stage.sh config/train/v3_small.yaml train.shared_encoder=true train.out_dir=runs/v3_small_multitask \
  export.path=null
scripts/train_stage.sh config/train/v3_small.yaml
BASE=runs/v3_small/default.pt RUNS=runs/v3_small_shared RESUME=1 PARALLEL=1 \
  DATA='[data/v3/train_a,data/v3/train_b,data/v3/train_c,data/v3/train_d]' EXPORT='runs/v3_small/default_{task}.pt' \
  ROUNDS='shared_lowrank_step1:start_layer=2:rank=16:head_channels=24:train.steps=1500 shared_lowrank_step3
    shared_lowrank_distill_full:train.steps=800' nice -n 10 scripts/train_shared.sh
[ "${BENCH:-1}" = 1 ] || exit 0
"$PY" bench/task_sharing.py --checkpoint runs/v3_small/default.pt \
  --multitask runs/v3_small_multitask/model.pt --data-root data/v3/test --split val --threads 2 \
  --out bench/results/task_sharing_small
