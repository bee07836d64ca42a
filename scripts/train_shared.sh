#!/usr/bin/env bash
# Trains the independent models' sub-tasks (depth, normals, weights/independent_<task>.pt) against their segmentation base
# (sharing steps 1 and 3 of the method, see config/train/shared_lowrank_*.yaml) and exports them as
# mtshare_ros/weights/independent_depth.pt and independent_normals.pt. Needs data/synthetic, data/synthetic_train
# (see config/train/synthetic_small.yaml) and data/synthetic_more (see shared_lowrank_distill.yaml), and
# the shipped independent models (the distilled rounds' teachers). Extra arguments are passed to every step
# as overrides (e.g. train.threads=4). PARALLEL=1 trains the two sub-tasks at the same time (they are
# independent; on 2 cores, two 1-thread runs finish sooner than two 2-thread runs one after the other).
#
# Against another base (the v3 models, scripts/train_v3.sh): BASE=<dense checkpoint> (the base task's model
# and the distilled rounds' teacher), DATA='[root, ...]' (training folders), RUNS=<folder for each round's
# output> (default runs/shared), EXPORT=<path with {task}> for the last round (default the shipped file),
# RESUME=1 to skip rounds whose output exists (an interrupted chain continues at the round it stopped in).
# NORMALS_STEPS1 (default 9000) sets the normals' step-1 length; NORMALS_GROW=0 ends the normals chain at the
# distilled rounds, as depth's (the rank-64 rounds can follow later: the same command with NORMALS_GROW=1 and
# RESUME=1 continues from the last round that exists and exports again). ROUNDS='config[:override...] ...'
# replaces both chains with another (scripts/train_v3_small.sh: three rounds, each with its own overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}  # the repository's virtual environment (make venv); PYTHON=... for another
[ -x "$PY" ] || PY=python3

rounds() {  # task -> its chain, one round per word, in order: config[:override...]; each starts from the one before
  if [ -n "${ROUNDS:-}" ]; then echo "$ROUNDS"; return; fi
  local steps1=3000
  # Normals get three times the step-1 steps: they gained 1.2 deg there (28.5 -> 27.3 deg, all tokens, val),
  # 0.5 deg at the end; depth had no such run.
  if [ "$1" = normals ]; then steps1=${NORMALS_STEPS1:-9000}; fi
  echo shared_lowrank_step1:train.steps=$steps1 shared_lowrank_step3 shared_lowrank_step3_full \
    shared_lowrank_step3_full2 shared_lowrank_distill shared_lowrank_distill_full
  # normals: 3 more rounds (rank 32 -> 64, then 4500 more full-frame steps): 23.65 -> 23.32 deg on
  # data/synthetic_val, where the independent model has 23.33 (see MODELS.md)
  if [ "$1" = normals ] && [ "${NORMALS_GROW:-1}" = 1 ]; then echo shared_lowrank_grow shared_lowrank_grow_full shared_lowrank_grow_full2; fi
}

RUNS=${RUNS:-runs/shared}
EXPORT=${EXPORT:-"mtshare_ros/weights/independent_{task}.pt"}

chain() {  # task, overrides for every round...; the last round exports EXPORT
  local task=$1
  shift
  local rounds prev=""
  read -r -a rounds <<< "$(rounds "$task" | tr '\n' ' ')"
  for round in "${rounds[@]}"; do
    local name=${round%%:*} own=()
    [ "$name" = "$round" ] || IFS=: read -r -a own <<< "${round#*:}"
    local out="$RUNS/{task}_${name#shared_}.pt"
    local extra=(out="$out")
    if [ -n "$prev" ]; then extra+=(init="$RUNS/{task}_${prev#shared_}.pt"); fi
    prev=$name
    if [ "${RESUME:-0}" = 1 ] && [ -f "${out//\{task\}/$task}" ]; then continue; fi
    if [ -n "${BASE:-}" ]; then
      extra+=(base_checkpoint="$BASE")
      if grep -q '^distill: independent' "config/train/$name.yaml"; then extra+=(distill="$BASE"); fi
    fi
    if [ -n "${DATA:-}" ]; then extra+=("data.root=$DATA"); fi
    if [ "$round" = "${rounds[-1]}" ]; then extra+=(export="$EXPORT"); fi
    "$PY" -m mtshare_ros.cli share-train --config "config/train/$name.yaml" task="$task" "${extra[@]}" "$@" "${own[@]}"
  done
}

if [ "${PARALLEL:-0}" = 1 ]; then
  mkdir -p "$RUNS"
  chain depth train.threads=1 "$@" > "$RUNS/depth.log" 2>&1 &
  depth=$!
  chain normals train.threads=1 "$@" > "$RUNS/normals.log" 2>&1 &
  normals=$!
  wait "$depth"
  wait "$normals"
else
  chain depth "$@"
  chain normals "$@"
fi
