"""Edge-aware resizing of dense maps to the camera's resolution (``output_size: input``), shared by the tasks.

Bilinear where the four low-resolution neighbours agree, nearest where they straddle an edge, so no pixel is
invented between a table and the wall behind it (no flying pixels in the point cloud). Each task's ``upsample``
(``tasks/*.py``) says what an edge is for its values.
"""

from __future__ import annotations

import cv2
import numpy as np


def edges_up(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Which output pixels fall where a low-resolution 2x2 neighbourhood holds an edge (``low``: (h, w) bool of
    edges between a pixel and its right/lower neighbours)."""
    return cv2.resize(low.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR) > 0


def neighbour_spread(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of each pixel with its right, lower and lower-right neighbours (edge-padded)."""
    p = np.pad(a, ((0, 1), (0, 1)) + ((0, 0),) * (a.ndim - 2), mode="edge")
    return p[:-1, 1:], p[1:, :-1], p[1:, 1:]


def nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``arr`` at ``size`` (h, w), nearest neighbour (no invented classes, depths or normals)."""
    if arr.shape[:2] == tuple(size):
        return arr
    src = arr.astype(np.int32) if arr.dtype == np.uint8 and arr.ndim == 2 else arr
    out = cv2.resize(src, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(arr.dtype)
