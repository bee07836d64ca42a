"""The state of one room under construction and the questions its parts ask: where a wall is, which stretch
of wall is still free, where a piece of furniture fits against a wall.

The size is the first thing drawn from the generator; the room spans x in [0, W], y in [0, D], z in [0, H]
(z up, floor at 0). Sizes depend on the room kind (a corridor is long and narrow); an L-shaped room is the
rectangle with one corner taken by a floor-to-ceiling block, whose floor and wall stretches are reserved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtshare_ros.data.assets import TextureSet, meshes, textures
from mtshare_ros.data.domain import SceneDomain
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


# (min W, min D), (max W, max D) in metres per room kind
ROOM_SIZES = {
    "living": ((3.6, 3.6), (7.5, 7.0)),
    "office": ((3.2, 3.2), (8.0, 6.5)),
    "bedroom": ((3.0, 3.0), (5.5, 5.0)),
    "corridor": ((1.4, 5.0), (2.4, 11.0)),
    "kitchen": ((2.6, 2.8), (6.0, 5.5)),
}


class RoomLayout:
    """Everything the parts of a room share: generator, MJCF builder, kind, size, floor map, taken wall slots,
    surfaces that clutter can stand on, moving objects and the domain's texture and mesh pools."""

    def __init__(self, rng: np.random.Generator, domain: SceneDomain, kind: str):
        self.rng = rng
        self.kind = kind
        self.b = MjcfBuilder()
        lo, hi = ROOM_SIZES[kind]
        self.W, self.D = float(rng.uniform(lo[0], hi[0])), float(rng.uniform(lo[1], hi[1]))
        if kind != "corridor" and rng.uniform() < 0.5:
            self.W, self.D = self.D, self.W
        self.H = float(rng.uniform(2.3, 3.4))
        self.map = FloorMap(self.W, self.D)
        self.textures = sum((textures(s) for s in domain.texture_sources), start=TextureSet())
        self.meshes = tuple(m for s in domain.mesh_sources for m in meshes(s))
        self.paint = Palette(rng, self.b, self.textures)
        self.wall_slots: list[WallSlot] = []
        self.surfaces: list[tuple[Frame2D, float, float, float]] = []  # frame at surface centre, half x/y, z
        self.movers: list[Mover] = []
        self.notch: tuple[float, float, float, float] | None = None  # L-shape block: x0, y0, x1, y1

    def cut_corner(self, wall_mat: str) -> None:
        """Make the room L-shaped: a floor-to-ceiling block (wall class) fills one corner."""
        rng, W, D, H = self.rng, self.W, self.D, self.H
        bw, bd = float(rng.uniform(0.3, 0.5)) * W, float(rng.uniform(0.3, 0.5)) * D
        corner = int(rng.integers(4))
        x0 = 0.0 if corner in (0, 3) else W - bw
        y0 = 0.0 if corner in (0, 1) else D - bd
        self.notch = (x0, y0, x0 + bw, y0 + bd)
        self.b.geom(self.b.new_instance("wall"), "box", (bw / 2, bd / 2, H / 2), (x0 + bw / 2, y0 + bd / 2, H / 2),
                    wall_mat)
        self.map.mark(np.array([[x0, y0], [x0 + bw, y0 + bd]]))
        # The outer walls behind the block are hidden: nothing may hang there.
        for side in range(4):
            frame, length = self.wall_frame(side)
            ends = [frame.apply((a, 0.0, 0.0))[:2] for a in (0.0, length)]
            inside = [x0 - 1e-6 <= e[0] <= x0 + bw + 1e-6 and y0 - 1e-6 <= e[1] <= y0 + bd + 1e-6 for e in ends]
            covered = bw if side in (0, 2) else bd
            if inside[0]:
                self.wall_slots.append(WallSlot(side, 0.0, covered, 0.0, H))
            if inside[1]:
                self.wall_slots.append(WallSlot(side, length - covered, length, 0.0, H))

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
