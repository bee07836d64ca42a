"""Back-projection and intrinsics scaling against hand-computed geometry."""

import numpy as np

from mtshare_ros.runtime.camera import scale_intrinsics
from mtshare_ros.runtime.pointcloud import depth_to_points


def test_plane_backprojects_to_its_depth_and_rays():
    k = np.array([[100.0, 0, 3.5], [0, 100.0, 2.5], [0, 0, 1]])
    depth = np.full((6, 8), 2.0, np.float32)
    depth[0, 0] = np.nan  # invalid pixels become NaN points (organised cloud)
    depth[1, 1] = 0.0
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[5, 7] = (255, 128, 1)
    labels = np.arange(48, dtype=np.uint8).reshape(6, 8)
    pts = depth_to_points(depth, k, rgb, labels)
    assert pts.shape == (6, 8)
    assert np.isnan(pts[0, 0]["z"]) and np.isnan(pts[1, 1]["x"]) and np.isfinite(pts["z"]).sum() == 46
    last = pts[5, 7]
    assert np.isclose(last["x"], (7 - 3.5) * 2 / 100) and np.isclose(last["y"], (5 - 2.5) * 2 / 100)
    assert last["z"] == 2.0 and last["label"] == 47
    assert last["rgb"].view(np.uint32) == (255 << 16) | (128 << 8) | 1


def test_scale_intrinsics_keeps_pixel_centres_aligned():
    k = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
    s = scale_intrinsics(k, 0.5, 0.5)
    assert np.isclose(s[0, 0], 262.5) and np.isclose(s[0, 2], 159.5) and np.isclose(s[1, 2], 119.5)
