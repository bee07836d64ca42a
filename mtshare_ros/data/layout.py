"""The state of one room under construction and the questions its parts ask: where a wall is, which stretch
of wall is still free, where a piece of furniture fits against a wall.

The size is the first thing drawn from the generator; the room spans x in [0, W], y in [0, D], z in [0, H]
(z up, floor at 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtshare_ros.data.assets import labmaze_textures
from mtshare_ros.data.floor_map import FloorMap
from mtshare_ros.data.materials import Palette
from mtshare_ros.data.mjcf import Frame2D, MjcfBuilder
from mtshare_ros.data.room import Mover


@dataclass
class WallSlot:
    """A taken stretch [a, b] along wall ``side`` between heights z0 and z1."""

    side: int
    a: float
    b: float
    z0: float
    z1: float


class RoomLayout:
    """Everything the parts of a room share: generator, MJCF builder, size, floor map, taken wall slots,
    surfaces that clutter can stand on, moving objects and the texture pool."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.b = MjcfBuilder()
        self.W = float(rng.uniform(3.6, 7.0))
        self.D = float(rng.uniform(3.6, 7.0))
        self.H = float(rng.uniform(2.4, 3.0))
        self.map = FloorMap(self.W, self.D)
        self.paint = Palette(rng, self.b)
        self.wall_slots: list[WallSlot] = []
        self.surfaces: list[tuple[Frame2D, float, float, float]] = []  # frame at surface centre, half x/y, z
        self.movers: list[Mover] = []
        self.textures = labmaze_textures()

    def wall_frame(self, side: int) -> tuple[Frame2D, float]:
        """Frame at the start of wall ``side`` (local x along the wall, +y into the room) and the wall's length."""
        W, D = self.W, self.D
        return [(Frame2D(0, 0, 0), W), (Frame2D(W, 0, math.pi / 2), D), (Frame2D(W, D, math.pi), W),
                (Frame2D(0, D, 1.5 * math.pi), D)][side]

    def slot_free(self, slot: WallSlot) -> bool:
        return not any(s.side == slot.side and s.a < slot.b and slot.a < s.b and s.z0 < slot.z1 and slot.z0 < s.z1
                       for s in self.wall_slots)

    def find_wall_slot(self, width: float, z0: float, z1: float, margin: float = 0.15) -> tuple[int, float] | None:
        """A free (side, start) on some wall for something ``width`` wide between z0 and z1; not reserved here."""
        for _ in range(40):
            side = int(self.rng.integers(4))
            length = self.wall_frame(side)[1]
            if length < width + 2 * margin:
                continue
            a = float(self.rng.uniform(margin, length - width - margin))
            if self.slot_free(WallSlot(side, a - 0.05, a + width + 0.05, z0, z1)):
                return side, a
        return None

    def place_against_wall(self, width: float, depth: float, height: float) -> Frame2D | None:
        """Frame at the footprint centre, local +y facing into the room, or None if nothing fits.

        The wall slot and the footprint are reserved.
        """
        for _ in range(50):
            side = int(self.rng.integers(4))
            frame, length = self.wall_frame(side)
            if length < width + 0.1:
                continue
            a = float(self.rng.uniform(0.05, length - width - 0.05))
            slot = WallSlot(side, a, a + width, 0.0, height)
            corners = FloorMap.rect(frame, a, a + width, 0.05, 0.05 + depth)
            if not self.slot_free(slot) or not self.map.is_free(corners):
                continue
            self.wall_slots.append(slot)
            self.map.mark(corners)
            c = frame.apply((a + width / 2, 0.05 + depth / 2, 0.0))
            return Frame2D(float(c[0]), float(c[1]), frame.yaw)
        return None
