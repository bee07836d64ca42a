"""Camera intrinsics without ROS types, and their scaling to the resolution the outputs are published at.

The outputs are at the model's resolution, not the camera's, so anything that projects them (the point cloud,
RViz, depth_image_proc) needs the intrinsics of that resolution; ``scale_camera`` makes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

NOMINAL_HFOV_DEG = 65.0
"""Horizontal field of view assumed for a camera without camera_info when the model has no canonical focal length
either: the middle of the synthetic training data's range (``data/scene.py`` HFOV_RANGE, 40-90 degrees)."""


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


def camera_problem(camera: CameraModel) -> str:
    """'' when ``camera`` can project the outputs, else what is wrong with it, naming the field: a focal length
    or principal point that is not finite, a focal length that is not positive, a P that is not finite."""
    k = camera.k
    for name, value in (("K[0] (fx)", k[0, 0]), ("K[4] (fy)", k[1, 1]), ("K[2] (cx)", k[0, 2]), ("K[5] (cy)", k[1, 2])):
        if not np.isfinite(value):
            return f"{name} is {value}"
    for name, value in (("K[0] (fx)", k[0, 0]), ("K[4] (fy)", k[1, 1])):
        if value <= 0:
            return f"{name} is {value:g}, not a positive focal length"
    if not np.isfinite(camera.p).all():
        return "P has values that are not finite"
    return ""


def scale_camera(camera: CameraModel, size: tuple[int, int], fallback: tuple[float, float]) -> CameraModel:
    """``camera`` for the outputs of ``size`` (h, w): K and P rescaled by the camera model's own size (so a
    camera_info of another resolution than the images still gives the outputs' intrinsics), or by
    ``fallback`` (sx, sy: the image's resize) when it states no size; distortion kept (not rectified)."""
    h, w = size
    sx, sy = (w / camera.width, h / camera.height) if camera.width > 0 and camera.height > 0 else fallback
    p = np.asarray(camera.p, dtype=np.float64).reshape(3, 4).copy()
    p[:, :3] = scale_intrinsics(p[:, :3], sx, sy)
    p[0, 3] *= sx
    p[1, 3] *= sy
    return replace(camera, k=scale_intrinsics(camera.k, sx, sy), p=p, height=h, width=w)


def focal_of(camera: CameraModel | None, width: int) -> float | None:
    """The camera's horizontal focal length in pixels of a frame ``width`` wide (the camera_info may describe
    another resolution than the frames), None without a usable camera model: what the predictor makes depth
    metric with (models/focal.py)."""
    if camera is None or not camera.width or camera.k[0, 0] <= 0:
        return None
    return float(camera.k[0, 0]) * width / camera.width


def nominal_camera_matrix(height: int, width: int, fx: float | None = None) -> np.ndarray:
    """A pinhole camera matrix for an image of (height, width) without camera_info: square pixels of focal length
    ``fx`` (default: ``NOMINAL_HFOV_DEG`` across the width), the principal point at the image centre."""
    f = float(fx) if fx else width / (2.0 * math.tan(math.radians(NOMINAL_HFOV_DEG) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])
