"""False-colour images for people (RViz, the demo picture); never used for computation."""

from __future__ import annotations

import cv2
import numpy as np

from mtshare_ros.classes import palette


def colorize_segmentation(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB with the package palette."""
    return palette(num_classes)[labels]


def colorize_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """(H, W) metres with NaN -> (H, W, 3) uint8 RGB (turbo, near = red); invalid pixels are black."""
    valid = np.isfinite(depth)
    if max_depth is None:
        max_depth = float(np.percentile(depth[valid], 98)) if valid.any() else 1.0
    scaled = np.clip(np.nan_to_num(depth, nan=0.0) / max(max_depth, 1e-6), 0.0, 1.0)
    bgr = cv2.applyColorMap((255 - scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> (H, W, 3) uint8 RGB via (n + 1) / 2; NaN or zero normals are black."""
    n = np.nan_to_num(normals, nan=0.0)
    rgb = ((n + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    rgb[~np.any(n != 0, axis=-1)] = 0
    return rgb
