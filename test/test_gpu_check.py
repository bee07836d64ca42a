"""scripts/gpu_check.sh's measurements (bench/gpu.py) run on the CPU in their smoke form, so that the one prepared
GPU run does not break unseen between GPU loans: every part reports numbers or says why it was skipped, a node's
frame makes every output, and task + temporal sharing reuses frames on the pan."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_check_smoke_run_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--quick",
                           "--out-dir", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = json.loads((tmp_path / "gpu.json").read_text())["parts"]
    assert parts["cuda_graph"] == {"skipped": "no CUDA device"}
    assert "skipped" in parts["onnxruntime"]  # no CUDA / TensorRT provider on this machine
    for kind in ("independent", "multitask", "engine_threshold", "engine_fixed"):
        row = parts["models"][f"240x320/{kind}/fp32"]
        assert row["ms"] > 0 and row["labels_equal_pct"] == 100.0, (kind, row)
    per_frame, temporal = parts["pipeline"]["240x320/per_frame"], parts["pipeline"]["240x320/task_temporal"]
    assert per_frame["missing_outputs"] == [] and temporal["missing_outputs"] == []
    assert per_frame["keyframe_fraction"] == 1.0 and temporal["keyframe_fraction"] < 0.5
    assert (tmp_path / "gpu.md").read_text().startswith("# GPU check")
