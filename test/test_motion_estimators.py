"""bench/motion_estimators.py: its truth from depth and poses, and each estimator on an image moved by a known
number of pixels (no rendering: the benchmark itself renders)."""

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_bench_models import load_bench

from mtshare_ros.data.renderer import Frame

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))  # its siblings (environment.py)
bench = load_bench("motion_estimators")


def _scene(h: int = 240, w: int = 320, pad: int = 40) -> np.ndarray:
    g = np.random.default_rng(0)
    small = g.integers(0, 255, ((h + 2 * pad) // 12, (w + 2 * pad) // 12, 3), dtype=np.uint8)
    return cv2.resize(small, (w + 2 * pad, h + 2 * pad), interpolation=cv2.INTER_CUBIC)


def _frame(rgb: np.ndarray, pose: np.ndarray, f: float = 300.0, depth: float = 3.0) -> Frame:
    h, w = rgb.shape[:2]
    k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    z = np.full((h, w), depth, np.float32)
    return Frame(rgb, z, np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint16), np.zeros((h, w, 3), np.float32),
                 k, pose, 0.0)


def test_truth_is_the_pixels_displacement_between_the_poses():
    """A camera moving right by t in front of a wall at depth z moves every pixel left by f t / z (exact); turning
    right by a moves the centre left by f tan(a), pixels off the centre more (the median is a little larger)."""
    moved = np.eye(4)
    moved[0, 3] = 0.1
    img = np.zeros((240, 320, 3), np.uint8)
    dy, dx = bench.true_shift(_frame(img, np.eye(4)), _frame(img, moved))
    assert (dy, dx) == (pytest.approx(0.0, abs=1e-6), pytest.approx(-300.0 * 0.1 / 3.0, rel=1e-6))
    a = math.radians(3.0)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    p1 = np.eye(4)
    p1[:3, :3] = rot
    dy, dx = bench.true_shift(_frame(img, np.eye(4)), _frame(img, p1))
    assert dy == pytest.approx(0.0, abs=0.2)
    assert 1.0 <= dx / (-300.0 * math.tan(a)) < 1.1


@pytest.mark.parametrize("name", ["phase_corr_4", "phase_corr_2", "lk_homography", "dis_flow"])
def test_each_estimator_finds_a_known_translation(name):
    pano, pad = _scene(), 40
    dy, dx = 5, -11  # content moves down 5 and left 11 pixels
    a = pano[pad:pad + 240, pad:pad + 320]
    b = pano[pad - dy:pad - dy + 240, pad - dx:pad - dx + 320]
    ey, ex = bench.ESTIMATORS[name]()(np.ascontiguousarray(a), np.ascontiguousarray(b))
    assert math.hypot(ey - dy, ex - dx) < 1.5, (name, ey, ex)
