#!/usr/bin/env bash
# Every GPU measurement of issue 27 in one run (bench/gpu.py: models in fp32/fp16/bf16, the fixed-budget engine
# as a CUDA graph, ONNX Runtime CUDA/TensorRT when installed, a node's frame with every output at 640x480 and
# 1280x720, task + temporal sharing). Made for the lent device machine: its python3 holds PyTorch with CUDA, and
# nothing else is installed (no ROS, no MuJoCo: the check needs neither). About 4-6 minutes on one H100; every
# part is written as it finishes, so a run cut at its limit keeps what it measured.
#
#   scripts/gpu_check.sh                 # results to bench/results/gpu.{json,md}
#   OUT=/some/dir scripts/gpu_check.sh   # results to $OUT (the device tool's folder that comes back)
#   scripts/gpu_check.sh --device cpu --quick   # smoke run of the same code on a CPU (any extra arguments pass on)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "nvidia-smi: none"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PY" bench/gpu.py --out-dir "${OUT:-bench/results}" "$@"
