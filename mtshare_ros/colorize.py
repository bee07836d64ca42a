"""False-colour images for people (RViz, the demo picture); never used for computation."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from mtshare_ros.classes import palette


@functools.lru_cache(maxsize=8)
def _palette_lut(num_classes: int) -> np.ndarray:
    """The palette as a 256-entry lookup table (a user colormap: OpenCV maps ids with one table lookup)."""
    return np.ascontiguousarray(palette(num_classes).reshape(256, 1, 3))


def colorize_segmentation(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 RGB with the package palette."""
    return cv2.applyColorMap(np.ascontiguousarray(labels, dtype=np.uint8), _palette_lut(num_classes))


def colorize_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """(H, W) metres with NaN -> (H, W, 3) uint8 RGB (turbo, near = red); invalid pixels are black."""
    valid = np.isfinite(depth)
    if max_depth is None:
        sample = depth[::4, ::4]  # a percentile over 1/16 of the pixels is as good and 10x cheaper
        sample = sample[np.isfinite(sample)]
        max_depth = float(np.percentile(sample, 98)) if sample.size else 1.0
    scaled = np.clip(np.nan_to_num(depth, nan=0.0) / max(max_depth, 1e-6), 0.0, 1.0)
    bgr = cv2.applyColorMap((255 - scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> (H, W, 3) uint8 RGB via (n + 1) / 2; NaN or zero normals are black."""
    rgb = cv2.convertScaleAbs(normals, alpha=127.5, beta=127.5)
    invalid = ~np.isfinite(normals[..., 2]) | ((normals[..., 2] == 0) & (normals[..., 0] == 0) & (normals[..., 1] == 0))
    rgb[invalid] = 0
    return rgb
