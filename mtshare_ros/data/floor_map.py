"""The floor of a room under construction as an occupancy grid: where furniture stands, where it must not
stand (door swing, paths of moving objects) and, once the room is done, how far the camera is from anything.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from mtshare_ros.data.mjcf import Frame2D

GRID_RES = 0.05  # metres per floor-map cell


class FloorMap:
    """Occupancy of the floor on a GRID_RES grid: furniture footprints and keep-out zones."""

    def __init__(self, width: float, depth: float):
        self.nx, self.ny = int(math.ceil(width / GRID_RES)), int(math.ceil(depth / GRID_RES))
        self.blocked = np.zeros((self.ny, self.nx), dtype=bool)  # solid furniture
        self.keepout = np.zeros((self.ny, self.nx), dtype=bool)  # no furniture (door swing, mover paths)
        self.camera_blocked = np.zeros((self.ny, self.nx), dtype=bool)  # moving objects' sweep

    def _cells(self, corners: np.ndarray) -> tuple[slice, slice]:
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        x0, y0 = max(int(math.floor(lo[0] / GRID_RES)), 0), max(int(math.floor(lo[1] / GRID_RES)), 0)
        x1, y1 = min(int(math.ceil(hi[0] / GRID_RES)), self.nx), min(int(math.ceil(hi[1] / GRID_RES)), self.ny)
        return slice(y0, max(y1, y0)), slice(x0, max(x1, x0))

    @staticmethod
    def rect(frame: Frame2D, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        """World (x, y) corners of the local rectangle [x0, x1] x [y0, y1] in ``frame``."""
        return np.array([frame.apply((x, y, 0))[:2] for x in (x0, x1) for y in (y0, y1)])

    @staticmethod
    def inside(corners: np.ndarray, width: float, depth: float, margin: float = 0.0) -> bool:
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        return bool(lo[0] >= margin and lo[1] >= margin and hi[0] <= width - margin and hi[1] <= depth - margin)

    def is_free(self, corners: np.ndarray) -> bool:
        sl = self._cells(corners)
        return not (self.blocked[sl].any() or self.keepout[sl].any())

    def mark(self, corners: np.ndarray, keepout: bool = False, camera: bool = False) -> None:
        sl = self._cells(corners)
        if camera:
            self.camera_blocked[sl] = True
        if keepout:
            self.keepout[sl] = True
        else:
            self.blocked[sl] = True

    def clearance(self) -> np.ndarray:
        """Distance (m) from each cell centre to the nearest furniture, moving object or wall."""
        free = ~(self.blocked | self.camera_blocked)
        padded = np.pad(free, 1, constant_values=False).astype(np.uint8)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
        return dist.astype(np.float32) * GRID_RES
