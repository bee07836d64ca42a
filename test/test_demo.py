"""`mtshare demo` end to end (rendered frames -> node process -> picture and summary), kept short."""

import json
import subprocess
import sys
from pathlib import Path

import cv2


def test_demo_writes_picture_and_summary(tmp_path):
    exe = Path(sys.executable).with_name("mtshare")
    res = subprocess.run(
        [str(exe), "demo", "--frames", "6", "--fps", "5", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "picture:" in res.stdout
    img = cv2.imread(str(tmp_path / "demo.png"))
    assert img is not None and img.shape == (480, 1280, 3)  # 2 rows x 4 panels of 240x320
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames_with_all_outputs"] >= 1
    assert set(summary["accuracy_vs_ground_truth"]) == {"segmentation", "depth", "normals"}
    assert 0.0 <= summary["accuracy_vs_ground_truth"]["segmentation"]["mIoU"] <= 1.0
