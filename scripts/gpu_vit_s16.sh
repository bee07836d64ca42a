#!/usr/bin/env bash
# ViT-S/16 at 480x640 on one GPU machine in about ten minutes (issue 16): render the data with every CPU core,
# pre-train the multi-task model (config/train/vit_s16_480x640_multitask.yaml), fine-tune the three
# single-task models from it (config/train/vit_s16_480x640.yaml), and evaluate on the test and
# generalisation splits. Results land in $OUT (or runs/gpu) as logs and metrics JSON.
#
# The GPU machine has torch but no MuJoCo and no network: first, here, `scripts/gpu_vit_s16.sh --prepare`
# downloads the wheels the renderer needs into .whl/ (ignored by git), then on the GPU machine, with .whl
# carried:  bash scripts/gpu_vit_s16.sh
# MuJoCo renders there through EGL; where the image lacks libEGL, carry Debian's libegl1/libglvnd0/libopengl0
# packages and unpack them first (the device tool's README, "Headless rendering").
# Budget (seconds, override by environment): RENDER_S ~120, PRETRAIN_S 240, FINETUNE_S 150, eval ~30.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if [[ "${1:-}" == "--prepare" ]]; then
  grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
  for pkg in mujoco mujoco-core labmaze absl-py etils glfw pyopengl rosbags; do
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$pkg" || echo "skipped $pkg"
  done
  exit 0
fi
if [[ -d .whl ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
CLI=("$PY" -m mtshare_ros.cli)
WORKERS=${WORKERS:-$(nproc)}
PRETRAIN_S=${PRETRAIN_S:-240}
FINETUNE_S=${FINETUNE_S:-150}
# Data: as many rooms as the CPUs render in about two minutes (pybullet_data and the others are optional).
"${CLI[@]}" render --quiet --workers "$WORKERS" --height 480 --width 640 --fps 0.5 --out data/gpu/train \
  --rooms "${ROOMS:-400}" --frames-per-room 8 --seed 10 --val-fraction 0 2>&1 | tee "$OUT/render.log"
"${CLI[@]}" render --quiet --workers "$WORKERS" --height 480 --width 640 --fps 0.5 --out data/gpu/val \
  --rooms 40 --frames-per-room 3 --seed 4 --val-fraction 1 | tee -a "$OUT/render.log"
for split in test:3:train generalisation:5:generalisation; do
  IFS=: read -r name seed dom <<< "$split"
  "${CLI[@]}" render --quiet --workers "$WORKERS" --height 480 --width 640 --fps 0.5 --out "data/gpu/$name" \
    --rooms 100 --frames-per-room 3 --seed "$seed" --val-fraction 1 --domain "$dom" | tee -a "$OUT/render.log"
done
# Steps that fit a time budget, from a measured step time (20 steps after 10 of warm-up).
steps_for() {  # config seconds [overrides...]
  local cfg=$1 secs=$2; shift 2
  "${CLI[@]}" train --config "$cfg" train.steps=30 train.log_every=10 train.full_res_steps=0 \
    train.out_dir=/tmp/probe train.resume=false export.path=null data.max_val_samples=1 "$@" > /dev/null 2>&1
  "$PY" - "$secs" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("/tmp/probe/metrics.jsonl") if '"imgs_per_s"' in l]
per_step = (rows[-1]["elapsed_s"] - rows[0]["elapsed_s"]) / (rows[-1]["step"] - rows[0]["step"])
print(max(100, int(float(sys.argv[1]) / per_step)))
PY
  rm -rf /tmp/probe
}
N1=$(steps_for config/train/vit_s16_480x640_multitask.yaml "$PRETRAIN_S")
echo "pre-training: $N1 steps" | tee "$OUT/train.log"
"${CLI[@]}" train --config config/train/vit_s16_480x640_multitask.yaml train.steps="$N1" \
  train.full_res_steps=$((N1 / 10)) 2>&1 | tee -a "$OUT/train.log"
FT=(train.init=runs/gpu_multitask/model.pt data.root=data/gpu/train data.val_root=data/gpu/val
    train.crop=[240,320] train.out_dir=runs/gpu_finetune export.path=runs/gpu_finetune/default.pt)
N2=$(steps_for config/train/vit_s16_480x640.yaml "$FINETUNE_S" "${FT[@]}")
echo "fine-tuning: $N2 steps" | tee -a "$OUT/train.log"
"${CLI[@]}" train --config config/train/vit_s16_480x640.yaml "${FT[@]}" train.steps="$N2" train.lr=2e-4 \
  train.warmup_steps=50 train.full_res_steps=$((N2 / 5)) train.eval_every=0 2>&1 | tee -a "$OUT/train.log"
for name in test generalisation; do
  for ckpt in runs/gpu_multitask/model.pt runs/gpu_finetune/default.pt; do
    tag=$(basename "$(dirname "$ckpt")")
    "${CLI[@]}" eval --checkpoint "$ckpt" --root "data/gpu/$name" --split val --device cuda \
      --out "$OUT/eval_${tag}_${name}.json" 2>&1 | tail -3
  done
done
