#!/usr/bin/env bash
# The data recipe of the v3 models (issue 16; MODELS.md "Data"): 2,000 training rooms x 10 views (20,000
# frames, four chunks of 500 rooms so that training can start on the first), a validation split for choices,
# the held-out test split and the generalisation split (kitchens + the gymnasium_robotics assets, which
# training never sees). Every render resumes where it stopped: run this again after an interruption.
# About 0.8 MB per frame (~18 GB in all) and ~4-5 frames/s with 2 workers on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
MTSHARE=${MTSHARE:-.venv/bin/mtshare}
WORKERS=${WORKERS:-2}
render() { nice -n 5 "$MTSHARE" render --workers "$WORKERS" --height 240 --width 320 --fps 0.5 "$@"; }
render --out data/v3/train_a --rooms 500 --frames-per-room 10 --seed 10 --val-fraction 0
render --out data/v3/val --rooms 100 --frames-per-room 3 --seed 4 --val-fraction 1
render --out data/v3/test --rooms 200 --frames-per-room 3 --seed 3 --val-fraction 1
render --out data/v3/generalisation --rooms 200 --frames-per-room 3 --seed 5 --val-fraction 1 --domain generalisation
render --out data/v3/train_b --rooms 500 --frames-per-room 10 --seed 11 --val-fraction 0
render --out data/v3/train_c --rooms 500 --frames-per-room 10 --seed 12 --val-fraction 0
render --out data/v3/train_d --rooms 500 --frames-per-room 10 --seed 13 --val-fraction 0
