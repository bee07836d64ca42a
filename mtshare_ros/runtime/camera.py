"""Camera intrinsics without ROS types, and their scaling to the resolution the outputs are published at.

The outputs are at the model's resolution, not the camera's, so anything that projects them (the point cloud,
RViz, depth_image_proc) needs the intrinsics of that resolution; ``scale_camera`` makes them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """A sensor_msgs/CameraInfo's geometry: ``k`` (3, 3), ``p`` (3, 4), ``r`` (3, 3), distortion ``d`` with its
    model name, and the image size it describes."""

    k: np.ndarray
    p: np.ndarray
    r: np.ndarray
    d: tuple[float, ...]
    distortion_model: str
    height: int
    width: int


def scale_intrinsics(k: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Camera matrix for an image resized by (sx, sy), with pixel centres kept aligned."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3).copy()
    k[0, 0] *= sx
    k[1, 1] *= sy
    k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
    k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
    return k


def scale_camera(camera: CameraModel, scale: tuple[float, float], size: tuple[int, int]) -> CameraModel:
    """``camera`` for an image resized by ``scale`` (sx, sy) to ``size`` (h, w): K and P rescaled, distortion
    kept (the outputs are not rectified)."""
    sx, sy = scale
    p = np.asarray(camera.p, dtype=np.float64).reshape(3, 4).copy()
    p[:, :3] = scale_intrinsics(p[:, :3], sx, sy)
    p[0, 3] *= sx
    p[1, 3] *= sy
    return replace(camera, k=scale_intrinsics(camera.k, sx, sy), p=p, height=size[0], width=size[1])
