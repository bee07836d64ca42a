#!/usr/bin/env bash
# The whole v3 training pipeline (issue 16, MODELS.md "v3"), resumable at every stage: run it again after an
# interruption and it continues where it stopped (rendering by room; training from runs/*/last.pt, or on a
# fresh checkout from the committed bf16 snapshots in checkpoints/).
#   1. data: scripts/render_data_v3.sh
#   2. multi-task pre-training: config/train/v3_multitask.yaml
#   3. single-task fine-tuning from it: config/train/v3_finetune.yaml
#   4. the shared sub-tasks (depth, normals) against the fine-tuned segmentation model, taught by the
#      fine-tuned independent models: scripts/train_shared.sh, resumed by round, exported beside the models as
#      runs/v3_finetune/default_{depth,normals}.pt (evaluate with --checkpoint runs/v3_finetune/default.pt;
#      copy the three files to mtshare_ros/weights/ together to ship them)
# Extra arguments are passed to both training stages as overrides (e.g. train.threads=1).
set -euo pipefail
cd "$(dirname "$0")/.."
MTSHARE=${MTSHARE:-.venv/bin/mtshare}
scripts/render_data_v3.sh
nice -n 10 "$MTSHARE" train --config config/train/v3_multitask.yaml "$@"
nice -n 10 "$MTSHARE" train --config config/train/v3_finetune.yaml "$@"
BASE=runs/v3_finetune/default.pt RUNS=runs/v3_shared RESUME=1 PARALLEL=1 \
  DATA='[data/v3/train_a,data/v3/train_b,data/v3/train_c,data/v3/train_d]' \
  EXPORT='runs/v3_finetune/default_{task}.pt' nice -n 10 scripts/train_shared.sh
