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


@functools.lru_cache(maxsize=1)
def _near_turbo_lut() -> np.ndarray:
    """Turbo as an RGB lookup table indexed by nearness: entry i is turbo(255 - i), so 0 m (i = 0) is red."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_TURBO)
    return np.ascontiguousarray(bgr[::-1, :, ::-1])


def colorize_depth(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """(H, W) metres with NaN -> (H, W, 3) uint8 RGB (turbo, near = red); invalid pixels are black.

    ``max_depth`` (default: the 98th percentile of the frame) maps to the far end of the colour scale.
    Three passes over the image (clip, scale to uint8, table lookup) plus the mask: it runs per frame
    in the node whenever someone watches the colour image.
    """
    if max_depth is None:
        sample = depth[::4, ::4]  # a percentile over 1/16 of the pixels is as good and 10x cheaper
        sample = sample[np.isfinite(sample)]
        max_depth = float(np.percentile(sample, 98)) if sample.size else 1.0
    max_depth = max(max_depth, 1e-6)
    clipped = np.clip(depth, 0.0, max_depth).astype(np.float32, copy=False)  # NaN stays NaN
    index = cv2.convertScaleAbs(clipped, alpha=255.0 / max_depth)  # 0 .. 255, NaN -> masked below
    rgb = cv2.applyColorMap(index, _near_turbo_lut())
    rgb[~np.isfinite(depth)] = 0
    return rgb


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit normals -> (H, W, 3) uint8 RGB via (n + 1) / 2; NaN or zero normals are black."""
    rgb = cv2.convertScaleAbs(normals, alpha=127.5, beta=127.5)
    invalid = ~np.isfinite(normals[..., 2]) | ((normals[..., 2] == 0) & (normals[..., 0] == 0) & (normals[..., 1] == 0))
    rgb[invalid] = 0
    return rgb
