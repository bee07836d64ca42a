"""False-colour images: hand-checked colours, invalid pixels black, shapes and types."""

import cv2
import numpy as np

from mtshare_ros.classes import palette
from mtshare_ros.runtime.colorize import colorize_depth, colorize_normals, colorize_segmentation


def _turbo_rgb(i: int) -> np.ndarray:
    return cv2.applyColorMap(np.array([[i]], np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]


def test_depth_near_is_red_far_is_blue_invalid_is_black():
    depth = np.array([[0.0, 2.0, 4.0, 8.0, np.nan, -1.0]], np.float32)
    rgb = colorize_depth(depth, max_depth=4.0)
    assert rgb.shape == (1, 6, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[0, 0], _turbo_rgb(255))  # 0 m: the near (red) end
    assert np.array_equal(rgb[0, 2], _turbo_rgb(0)) and np.array_equal(rgb[0, 3], _turbo_rgb(0))  # far, clipped
    assert abs(int(rgb[0, 1, 0]) - int(_turbo_rgb(128)[0])) <= 8  # half way
    assert not rgb[0, 4].any()  # NaN: black
    assert np.array_equal(rgb[0, 5], _turbo_rgb(255))  # negative clips to 0 m, as before


def test_depth_scale_defaults_to_a_high_percentile_of_the_frame():
    depth = np.linspace(1.0, 5.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    depth[:8] = np.nan
    rgb = colorize_depth(depth)
    assert not rgb[:8].any() and rgb[8:].any()
    assert np.array_equal(rgb[-1, -1], _turbo_rgb(0))  # the farthest pixels are at the far end


def test_normals_and_segmentation_colours():
    n = np.array([[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [np.nan, np.nan, np.nan], [0.0, 0.0, 0.0]]], np.float32)
    rgb = colorize_normals(n)
    assert rgb[0, 0].tolist() == [128, 128, 0] and rgb[0, 1].tolist() == [255, 128, 128]
    assert not rgb[0, 2].any() and not rgb[0, 3].any()
    labels = np.array([[0, 3, 14]], np.uint8)
    assert np.array_equal(colorize_segmentation(labels, 15)[0], palette(15)[[0, 3, 14]])
