"""What a generated room is: the MJCF text with its label tables, the moving objects and the camera's floor map.

This is the interface between the room generator (scene.py) and its users: the renderer finds the camera by
CAMERA_BODY / CAMERA_NAME and poses the movers; the trajectory generator reads the clearance map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from mtshare_ros.data.mjcf import yaw_quat

CAMERA_BODY = "camrig"
CAMERA_NAME = "cam"


@dataclass
class Mover:
    """A mocap body that moves on a simple periodic path (sliding, swinging about a hinge, rolling)."""

    body: str
    kind: str
    origin: np.ndarray
    yaw: float
    direction: np.ndarray = field(default_factory=lambda: np.zeros(2))
    amplitude: float = 0.0
    period: float = 4.0
    phase: float = 0.0
    radius: float = 0.1

    def pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Position and quaternion (w, x, y, z) of the body at time ``t`` seconds."""
        s = 0.5 - 0.5 * math.cos(2 * math.pi * t / self.period + self.phase)  # 0..1, smooth stops at the ends
        if self.kind == "swing":
            return self.origin.copy(), yaw_quat(self.yaw + self.amplitude * s)
        offset = self.amplitude * s
        pos = self.origin.copy()
        pos[:2] += self.direction * offset
        if self.kind == "roll":
            # Roll without slipping: rotate about the horizontal axis perpendicular to the motion.
            axis = np.array([-self.direction[1], self.direction[0], 0.0])
            angle = offset / self.radius
            q = np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis])
            return pos, q
        return pos, yaw_quat(self.yaw)


@dataclass
class Room:
    """A generated room: MJCF text, label tables, moving objects and the camera's floor map."""

    xml: str
    labels: dict[str, tuple[int, int]]
    instance_classes: dict[int, int]
    movers: list[Mover]
    size: tuple[float, float, float]
    clearance: np.ndarray  # (ny, nx) metres from each floor cell to the nearest obstacle, on a GRID_RES grid
    kind: str = "living"  # room kind (mtshare_ros.data.domain.KIND_WEIGHTS)
    l_shaped: bool = False  # one corner taken by a floor-to-ceiling block
