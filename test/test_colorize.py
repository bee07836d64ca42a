"""False-colour images from both kernels (OpenCV on the CPU, torch elsewhere; ``device_kernels.py``):
hand-checked colours, invalid pixels black, shapes and types, the numpy-percentile scale, and the documented 1 LSB
between torch's float32 multiply-then-add and OpenCV's fused multiply-add for the normals."""

import cv2
import device_kernels
import numpy as np
import pytest
import torch

from mtshare_ros.classes import palette
from mtshare_ros.runtime.colorize import (
    colorize_array,
    colorize_depth,
    colorize_normals,
    colorize_segmentation,
)

kernels = device_kernels.kernels  # the fixture: every test runs with the CPU's kernels and the torch ones


def _turbo_rgb(i: int) -> np.ndarray:
    return cv2.applyColorMap(np.array([[i]], np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]


def test_depth_near_is_red_far_is_blue_invalid_is_black(kernels):
    depth = torch.tensor([[0.0, 2.0, 4.0, 8.0, np.nan, -1.0, np.inf]])
    rgb = colorize_depth(depth, max_depth=4.0).numpy()
    assert rgb.shape == (1, 7, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[0, 0], _turbo_rgb(255))  # 0 m: the near (red) end
    assert np.array_equal(rgb[0, 2], _turbo_rgb(0)) and np.array_equal(rgb[0, 3], _turbo_rgb(0))  # far, clipped
    assert np.array_equal(rgb[0, 1], _turbo_rgb(255 - 128))  # 2 m of 4: index round(127.5) = 128, half to even
    assert not rgb[0, 4].any() and not rgb[0, 6].any()  # NaN, inf: black
    assert np.array_equal(rgb[0, 5], _turbo_rgb(255))  # negative clips to 0 m, as before


def test_depth_scale_defaults_to_numpys_percentile_of_the_finite_pixels(kernels):
    depth = torch.linspace(1.0, 5.0, 64 * 64).reshape(64, 64)
    depth[:8] = np.nan
    depth[8, 0] = np.inf
    rgb = colorize_depth(depth)
    assert not rgb[:8].any() and rgb[9:].any() and not rgb[8, 0].any()
    assert np.array_equal(rgb[-1, -1].numpy(), _turbo_rgb(0))  # the farthest pixels are at the far end
    sample = depth.numpy()[::4, ::4]
    far = float(np.percentile(sample[np.isfinite(sample)], 98))
    assert torch.equal(rgb, colorize_depth(depth, far))  # the same scale, to the bit
    assert not colorize_depth(torch.full((4, 4), np.nan)).any()  # nothing finite: black, no error


def test_normals_and_segmentation_colours(kernels):
    n = torch.tensor([[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [np.nan, np.nan, np.nan], [0.0, 0.0, 0.0]]])
    rgb = colorize_normals(n)
    assert rgb[0, 0].tolist() == [128, 128, 0] and rgb[0, 1].tolist() == [255, 128, 128]
    assert not rgb[0, 2].any() and not rgb[0, 3].any()
    labels = torch.tensor([[0, 3, 14, 255]], dtype=torch.uint8)
    assert np.array_equal(colorize_segmentation(labels, 15)[0].numpy(), palette(15)[[0, 3, 14, 255]])


def test_into_a_callers_buffer(kernels):
    labels = torch.randint(0, 15, (6, 8), dtype=torch.uint8)
    out = torch.zeros((6, 8, 3), dtype=torch.uint8)
    assert colorize_segmentation(labels, 15, out) is out and torch.equal(out, colorize_segmentation(labels, 15))
    depth = torch.rand(6, 8) * 5
    assert colorize_depth(depth, None, out) is out and torch.equal(out, colorize_depth(depth))
    normals = torch.nn.functional.normalize(torch.randn(6, 8, 3), dim=-1)
    assert colorize_normals(normals, out) is out and torch.equal(out, colorize_normals(normals))


def test_normals_round_like_float32_numpy_and_within_one_lsb_of_opencv(kernels):
    """torch: float32 multiply then add, rounded half to even, as numpy does it; OpenCV fuses the multiply-add where
    the CPU has FMA, which rounds a product on a .5 boundary the other way: at most 1, rarely."""
    g = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(480, 640, 3, generator=g), dim=-1)
    got = colorize_normals(n).numpy().astype(int)
    a = n.numpy()
    opencv = cv2.convertScaleAbs(a, alpha=127.5, beta=127.5)
    float32 = np.clip(np.rint(np.abs(a * np.float32(127.5) + np.float32(127.5))), 0, 255)
    assert np.array_equal(got, opencv if kernels == "opencv" else float32)
    diff = np.abs(float32 - opencv)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


@pytest.mark.parametrize("task", ["segmentation", "depth", "normals"])
def test_numpy_callers_get_the_same_colours(task, kernels):
    g = torch.Generator().manual_seed(1)
    maps = {"segmentation": torch.randint(0, 15, (5, 7), dtype=torch.uint8, generator=g),
            "depth": torch.rand(5, 7, generator=g) * 4,
            "normals": torch.nn.functional.normalize(torch.randn(5, 7, 3, generator=g), dim=-1)}
    makers = {"segmentation": lambda t: colorize_segmentation(t, 15), "depth": lambda t: colorize_depth(t, 3.0),
              "normals": colorize_normals}
    got = colorize_array(task, maps[task].numpy(), 15, 3.0)
    assert isinstance(got, np.ndarray) and np.array_equal(got, makers[task](maps[task]).numpy())
