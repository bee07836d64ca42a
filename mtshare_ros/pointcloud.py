"""Back-projection of a depth map into a labelled, coloured point cloud in the camera optical frame."""

from __future__ import annotations

import numpy as np

POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4")])
"""Layout of one point; ``rgb`` is the PCL convention (0x00RRGGBB bits stored in a float32)."""


def scale_intrinsics(k: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Camera matrix for an image resized by (sx, sy), with pixel centres kept aligned."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3).copy()
    k[0, 0] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def depth_to_points(depth: np.ndarray, k: np.ndarray, rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Valid (finite, > 0) depth pixels -> structured array of ``POINT_DTYPE`` (REP 103 optical frame)."""
    h, w = depth.shape
    if rgb.shape[:2] != (h, w) or labels.shape != (h, w):
        raise ValueError(f"depth {depth.shape}, rgb {rgb.shape} and labels {labels.shape} must share H, W")
    valid = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float32)
    pts = np.empty(z.size, dtype=POINT_DTYPE)
    pts["x"] = (u - k[0, 2]) * z / k[0, 0]
    pts["y"] = (v - k[1, 2]) * z / k[1, 1]
    pts["z"] = z
    c = rgb[v, u].astype(np.uint32)
    pts["rgb"] = ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)
    pts["label"] = labels[v, u]
    return pts
