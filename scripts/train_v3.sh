#!/usr/bin/env bash
# The whole v3 training pipeline (issue 16, MODELS.md "v3"), resumable at every stage: run it again after an
# interruption and it continues where it stopped (rendering by room; training from runs/*/last.pt, or on a
# fresh checkout from the committed bf16 snapshots in checkpoints/).
#   1. data: scripts/render_data_v3.sh
#   2. multi-task pre-training: config/train/v3_multitask.yaml
#      (exports mtshare_ros/weights/multitask.pt: `checkpoint: multitask`, the baseline of the benchmarks)
#   3. single-task fine-tuning from it: config/train/v3_finetune.yaml
#   4. the shared sub-tasks (depth, normals) against the fine-tuned segmentation model, taught by the
#      fine-tuned independent models: scripts/train_shared.sh, resumed by round, exported beside the models as
#      runs/v3_finetune/default_{depth,normals}.pt (evaluate with --checkpoint runs/v3_finetune/default.pt;
#      copy the three files to mtshare_ros/weights/ together to ship them). The normals chain is shorter
#      than the shipped v2 one (6,000 step-1 steps, no rank-64 rounds: both chains take about as long, ~1.5 h
#      side by side): the base encoder already learnt normals in stage 1.
# Stages 1 and 2 run data-parallel (scripts/train_stage.sh: NPROC processes of THREADS threads, default 2 x 1).
# Extra arguments are passed to both training stages as overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/render_data_v3.sh
scripts/train_stage.sh config/train/v3_multitask.yaml "$@"
scripts/train_stage.sh config/train/v3_finetune.yaml "$@"
BASE=runs/v3_finetune/default.pt RUNS=runs/v3_shared RESUME=1 PARALLEL=1 NORMALS_STEPS1=6000 NORMALS_GROW=0 \
  DATA='[data/v3/train_a,data/v3/train_b,data/v3/train_c,data/v3/train_d]' \
  EXPORT='runs/v3_finetune/default_{task}.pt' nice -n 10 scripts/train_shared.sh
