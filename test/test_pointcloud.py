"""Back-projection (both kernels: numpy on the CPU, torch elsewhere) and intrinsics scaling against hand-computed
geometry."""

import device_kernels
import numpy as np
import torch

from mtshare_ros.runtime.camera import scale_intrinsics
from mtshare_ros.runtime.pointcloud import POINT_DTYPE, as_points, depth_to_points

kernels = device_kernels.kernels  # the fixture: every test runs with the CPU's kernels and the torch ones


def test_plane_backprojects_to_its_depth_and_rays(kernels):
    k = np.array([[100.0, 0, 3.5], [0, 100.0, 2.5], [0, 0, 1]])
    depth = torch.full((6, 8), 2.0)
    depth[0, 0] = np.nan  # invalid pixels become NaN points (organised cloud)
    depth[1, 1] = 0.0
    rgb = torch.zeros((6, 8, 3), dtype=torch.uint8)
    rgb[5, 7] = torch.tensor([255, 128, 1])
    labels = torch.arange(48, dtype=torch.uint8).reshape(6, 8)
    buf = depth_to_points(depth, k, rgb, labels)
    assert buf.shape == (6, 8, 5) and buf.dtype == torch.float32 and buf.numpy().nbytes == 48 * POINT_DTYPE.itemsize
    pts = as_points(buf.numpy())
    assert pts.shape == (6, 8) and pts.dtype == POINT_DTYPE
    assert np.isnan(pts[0, 0]["z"]) and np.isnan(pts[1, 1]["x"]) and np.isfinite(pts["z"]).sum() == 46
    last = pts[5, 7]
    assert np.isclose(last["x"], (7 - 3.5) * 2 / 100) and np.isclose(last["y"], (5 - 2.5) * 2 / 100)
    assert last["z"] == 2.0 and last["label"] == 47
    assert last["rgb"].view(np.uint32) == (255 << 16) | (128 << 8) | 1


def test_without_labels_and_into_a_callers_buffer(kernels):
    k = np.array([[50.0, 0, 1.5], [0, 50.0, 1.5], [0, 0, 1]])
    depth = torch.full((4, 4), 1.5)
    rgb = torch.full((4, 4, 3), 9, dtype=torch.uint8)
    out = torch.full((4, 4, 5), 7.0)
    assert depth_to_points(depth, k, rgb, None, out) is out
    pts = as_points(out.numpy())
    assert (pts["label"] == 0).all() and (pts["rgb"].view(np.uint32) == 0x090909).all()


def test_scale_intrinsics_keeps_pixel_centres_aligned():
    k = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
    s = scale_intrinsics(k, 0.5, 0.5)
    assert np.isclose(s[0, 0], 262.5) and np.isclose(s[0, 2], 159.5) and np.isclose(s[1, 2], 119.5)
