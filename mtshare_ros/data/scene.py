"""Procedural indoor rooms: walls, floor, ceiling, door, windows, pictures, furniture, books, lamps, rugs,
clutter and a few moving objects, as an MJCF document with per-geom class and instance labels.

Everything is drawn from one ``numpy.random.Generator``, so a seed fixes the room. The room spans
x in [0, W], y in [0, D], z in [0, H] (z up, floor at 0). Furniture is built from boxes and cylinders;
clutter also uses small textured meshes from pybullet_data. Besides the MJCF, the room carries a floor map
of where a camera may go (clear of furniture and moving objects) for the trajectory generator.
"""

from __future__ import annotations

import colorsys
import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from mtshare_ros.data.assets import labmaze_textures, pybullet_meshes
from mtshare_ros.data.mjcf import Frame2D, MjcfBuilder, quat_mul, yaw_quat

GRID_RES = 0.05  # metres per floor-map cell
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
    clearance: np.ndarray  # (ny, nx) metres from each floor cell to the nearest obstacle
    fovy: float
    style: str


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
        return np.array([frame.apply((x, y, 0))[:2] for x in (x0, x1) for y in (y0, y1)])

    def inside(self, corners: np.ndarray, width: float, depth: float, margin: float = 0.0) -> bool:
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


@dataclass
class _WallSlot:
    side: int
    a: float
    b: float
    z0: float
    z1: float


class RoomGenerator:
    """Builds one room from a generator; methods add one kind of object each."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.b = MjcfBuilder()
        self.W = float(rng.uniform(3.6, 7.0))
        self.D = float(rng.uniform(3.6, 7.0))
        self.H = float(rng.uniform(2.4, 3.0))
        self.map = FloorMap(self.W, self.D)
        self.wall_slots: list[_WallSlot] = []
        self.surfaces: list[tuple[Frame2D, float, float, float]] = []  # frame at surface centre, half x/y, z
        self.movers: list[Mover] = []
        self.textures = labmaze_textures()
        self.style = "none"

    # -- helpers --------------------------------------------------------------------------------------
    def colour(self, hue=None, sat=(0.1, 0.7), val=(0.3, 0.95)) -> tuple[float, float, float, float]:
        h = self.rng.uniform(0, 1) if hue is None else hue
        r, g, b = colorsys.hsv_to_rgb(h, self.rng.uniform(*sat), self.rng.uniform(*val))
        return (r, g, b, 1.0)

    def wood(self) -> str:
        r, g, b, _ = self.colour(hue=self.rng.uniform(0.05, 0.11), sat=(0.35, 0.75), val=(0.25, 0.8))
        tex = self.b.builtin_texture("gradient", (r, g, b), (r * 0.8, g * 0.8, b * 0.8), size=32,
                                     mark="random", random=0.03, markrgb=(r * 0.7, g * 0.7, b * 0.7))
        return self.b.material(texture=tex, rgba=(1, 1, 1, 1), specular=0.3, shininess=0.4)

    def fabric(self) -> str:
        r, g, b, _ = self.colour(sat=(0.15, 0.8), val=(0.25, 0.85))
        tex = self.b.builtin_texture("flat", (r, g, b), (r, g, b), size=64, mark="random", random=0.15,
                                     markrgb=(r * 0.8, g * 0.8, b * 0.8))
        return self.b.material(texture=tex, texrepeat=(4, 4), specular=0.05, shininess=0.05)

    def plain(self, rgba=None, specular=0.3, emission=0.0) -> str:
        return self.b.material(rgba=rgba or self.colour(), specular=specular, shininess=0.3, emission=emission)

    def wall_frame(self, side: int) -> tuple[Frame2D, float]:
        W, D = self.W, self.D
        return [(Frame2D(0, 0, 0), W), (Frame2D(W, 0, math.pi / 2), D), (Frame2D(W, D, math.pi), W),
                (Frame2D(0, D, 1.5 * math.pi), D)][side]

    def slot_free(self, slot: _WallSlot) -> bool:
        return not any(s.side == slot.side and s.a < slot.b and slot.a < s.b and s.z0 < slot.z1 and slot.z0 < s.z1
                       for s in self.wall_slots)

    def find_wall_slot(self, width: float, z0: float, z1: float, margin: float = 0.15) -> tuple[int, float] | None:
        for _ in range(40):
            side = int(self.rng.integers(4))
            length = self.wall_frame(side)[1]
            if length < width + 2 * margin:
                continue
            a = float(self.rng.uniform(margin, length - width - margin))
            if self.slot_free(_WallSlot(side, a - 0.05, a + width + 0.05, z0, z1)):
                return side, a
        return None

    # -- shell ----------------------------------------------------------------------------------------
    def shell(self) -> None:
        rng, b, W, D, H = self.rng, self.b, self.W, self.D, self.H
        tx = self.textures
        if tx.walls and rng.uniform() < 0.75:
            wall_tex = b.file_texture(tx.walls[rng.integers(len(tx.walls))])
            self.style = "labmaze"
            tint = self.colour(sat=(0.0, 0.25), val=(0.75, 1.0))
            wall_mat = b.material(rgba=tint, texture=wall_tex, texrepeat=(0.5, 0.5), texuniform=True, specular=0.1)
        else:
            wall_mat = b.material(rgba=self.colour(sat=(0.0, 0.35), val=(0.55, 0.98)), specular=0.1)
        if tx.floors and rng.uniform() < 0.6:
            floor_tex = b.file_texture(tx.floors[rng.integers(len(tx.floors))])
            floor_mat = b.material(texture=floor_tex, texrepeat=(0.6, 0.6), texuniform=True, specular=0.3)
        else:
            wood = self.colour(hue=rng.uniform(0.05, 0.12), sat=(0.2, 0.7), val=(0.3, 0.8))[:3]
            tex = b.builtin_texture("checker", wood, tuple(0.85 * c for c in wood), size=256,
                                    mark="random", random=0.02, markrgb=tuple(0.7 * c for c in wood))
            floor_mat = b.material(texture=tex, texrepeat=(2, 2), texuniform=True, specular=0.35, shininess=0.5)
        if tx.ceilings and rng.uniform() < 0.5:
            ceil_mat = b.material(texture=b.file_texture(tx.ceilings[0]), texrepeat=(0.5, 0.5), texuniform=True)
        else:
            ceil_mat = b.material(rgba=self.colour(sat=(0.0, 0.08), val=(0.85, 1.0)), specular=0.05)
        t = 0.1
        walls = [((W / 2, -t / 2, H / 2), (W / 2 + t, t / 2, H / 2 + t)),
                 ((W + t / 2, D / 2, H / 2), (t / 2, D / 2 + t, H / 2 + t)),
                 ((W / 2, D + t / 2, H / 2), (W / 2 + t, t / 2, H / 2 + t)),
                 ((-t / 2, D / 2, H / 2), (t / 2, D / 2 + t, H / 2 + t))]
        for pos, half in walls:
            b.geom(b.new_instance("wall"), "box", half, pos, wall_mat)
        b.geom(b.new_instance("floor"), "box", (W / 2 + t, D / 2 + t, t / 2), (W / 2, D / 2, -t / 2), floor_mat)
        b.geom(b.new_instance("ceiling"), "box", (W / 2 + t, D / 2 + t, t / 2), (W / 2, D / 2, H + t / 2), ceil_mat)
        # Skirting boards (wall class) make the wall/floor seam visible as in real rooms.
        if rng.uniform() < 0.6:
            skirt = self.plain(self.colour(sat=(0, 0.2), val=(0.3, 1.0)))
            for side in range(4):
                frame, length = self.wall_frame(side)
                b.box(self.b.new_instance("wall"), frame, (length / 2, 0.008, 0.04), (length / 2, 0.008, 0.04), skirt)

    # -- wall features --------------------------------------------------------------------------------
    def door(self, moving: bool) -> None:
        rng, b = self.rng, self.b
        w, h = float(rng.uniform(0.8, 1.0)), float(rng.uniform(1.95, min(2.15, self.H - 0.2)))
        found = self.find_wall_slot(w + 0.16, 0.0, h + 0.1)
        if found is None:
            return
        side, a = found
        frame, _ = self.wall_frame(side)
        self.wall_slots.append(_WallSlot(side, a, a + w + 0.16, 0.0, h + 0.1))
        inst = b.new_instance("door")
        trim = self.plain(self.colour(sat=(0, 0.3), val=(0.5, 1.0)))
        x0 = a + 0.08
        for lx, half in (((x0 - 0.04), (0.04, 0.015, h / 2 + 0.02)), ((x0 + w + 0.04), (0.04, 0.015, h / 2 + 0.02))):
            b.box(inst, frame, half, (lx, 0.015, h / 2 + 0.02), trim)
        b.box(inst, frame, (w / 2 + 0.08, 0.015, 0.04), (x0 + w / 2, 0.015, h + 0.04), trim)
        # Dark opening behind the leaf: seen when the door swings open.
        b.box(inst, frame, (w / 2, 0.004, h / 2), (x0 + w / 2, 0.004, h / 2), self.plain((0.08, 0.08, 0.09, 1)))
        leaf_mat = self.wood() if rng.uniform() < 0.6 else self.plain(self.colour(sat=(0, 0.3), val=(0.5, 1)))
        handle = self.plain((0.75, 0.75, 0.72, 1), specular=0.8)
        # Keep furniture out of the swing area; the camera may pass only if the door is static.
        swing = FloorMap.rect(frame, x0, x0 + w, 0.0, w + 0.1)
        self.map.mark(swing, keepout=True, camera=moving)
        if moving:
            hinge = frame.apply((x0, 0.0, 0.0))
            body = b.mocap_body("door_leaf", hinge, yaw_quat(frame.yaw))
            leaf = Frame2D(0, 0, 0)
            self.movers.append(Mover(body, "swing", hinge, frame.yaw, amplitude=float(rng.uniform(0.6, 1.3)),
                                     period=float(rng.uniform(4, 9)), phase=float(rng.uniform(0, 2 * math.pi))))
        else:
            body, leaf = None, Frame2D(*frame.apply((x0, 0.0, 0.0))[:2], frame.yaw)
        b.box(inst, leaf, (w / 2, 0.02, h / 2), (w / 2, 0.03, h / 2), leaf_mat, body=body)
        b.box(inst, leaf, (0.06, 0.02, 0.012), (w - 0.12, 0.07, 1.0), handle, body=body)

    def window(self) -> None:
        rng, b = self.rng, self.b
        w, h = float(rng.uniform(0.7, 1.6)), float(rng.uniform(0.8, 1.3))
        sill = float(rng.uniform(0.75, 1.0))
        if sill + h > self.H - 0.2:
            h = self.H - 0.2 - sill
        found = self.find_wall_slot(w + 0.1, sill - 0.05, sill + h + 0.05)
        if found is None:
            return
        side, a = found
        frame, _ = self.wall_frame(side)
        self.wall_slots.append(_WallSlot(side, a, a + w + 0.1, sill - 0.05, sill + h + 0.05))
        inst = b.new_instance("window")
        if self.textures.skies:
            sky = b.file_texture(self.textures.skies[rng.integers(len(self.textures.skies))])
            pane = b.material(texture=sky, emission=0.6, specular=0.9, shininess=0.9)
        else:
            pane = self.plain((0.6, 0.75, 0.95, 1), specular=0.9, emission=0.6)
        fr = self.plain(self.colour(sat=(0, 0.15), val=(0.6, 1.0)))
        cx = a + 0.05 + w / 2
        b.box(inst, frame, (w / 2, 0.005, h / 2), (cx, 0.005, sill + h / 2), pane)
        for dz in (0.0, h):
            b.box(inst, frame, (w / 2 + 0.04, 0.03, 0.03), (cx, 0.03, sill + dz), fr)
        for dx in (-w / 2, 0.0, w / 2):
            b.box(inst, frame, (0.03, 0.03, h / 2), (cx + dx, 0.03, sill + h / 2), fr)

    def picture(self) -> None:
        rng, b = self.rng, self.b
        w, h = float(rng.uniform(0.3, 1.1)), float(rng.uniform(0.3, 0.8))
        zc = float(rng.uniform(1.2, min(1.8, self.H - h / 2 - 0.25)))
        found = self.find_wall_slot(w, zc - h / 2, zc + h / 2)
        if found is None:
            return
        side, a = found
        frame, _ = self.wall_frame(side)
        self.wall_slots.append(_WallSlot(side, a, a + w, zc - h / 2, zc + h / 2))
        inst = b.new_instance("picture")
        pool = self.textures.walls + self.textures.floors
        if pool and rng.uniform() < 0.5:
            canvas = b.material(texture=b.file_texture(pool[rng.integers(len(pool))]), texrepeat=(1, 1))
        else:
            kind = ["gradient", "checker", "flat"][rng.integers(3)]
            tex = b.builtin_texture(kind, self.colour()[:3], self.colour()[:3], size=64, mark="random",
                                    random=float(rng.uniform(0, 0.3)), markrgb=self.colour()[:3])
            canvas = b.material(texture=tex)
        b.box(inst, frame, (w / 2, 0.012, h / 2), (a + w / 2, 0.012, zc), self.plain(self.colour(val=(0.1, 0.9))))
        b.box(inst, frame, (w / 2 - 0.03, 0.004, h / 2 - 0.03), (a + w / 2, 0.026, zc), canvas)

    # -- furniture against walls ----------------------------------------------------------------------
    def place_against_wall(self, width: float, depth: float, height: float) -> Frame2D | None:
        """Frame at the footprint centre, local +y facing into the room, or None if nothing fits."""
        for _ in range(50):
            side = int(self.rng.integers(4))
            frame, length = self.wall_frame(side)
            if length < width + 0.1:
                continue
            a = float(self.rng.uniform(0.05, length - width - 0.05))
            slot = _WallSlot(side, a, a + width, 0.0, height)
            corners = FloorMap.rect(frame, a, a + width, 0.05, 0.05 + depth)
            if not self.slot_free(slot) or not self.map.is_free(corners):
                continue
            self.wall_slots.append(slot)
            self.map.mark(corners)
            c = frame.apply((a + width / 2, 0.05 + depth / 2, 0.0))
            return Frame2D(float(c[0]), float(c[1]), frame.yaw)
        return None

    def cabinet(self) -> None:
        rng, b = self.rng, self.b
        w, d, h = float(rng.uniform(0.5, 1.6)), float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.6, 2.0))
        f = self.place_against_wall(w, d, h)
        if f is None:
            return
        inst = b.new_instance("cabinet")
        body = self.wood() if rng.uniform() < 0.5 else self.plain(self.colour(sat=(0, 0.5)))
        front = self.plain(self.colour(sat=(0, 0.5)))
        handle = self.plain((0.7, 0.7, 0.7, 1), specular=0.8)
        b.box(inst, f, (w / 2, d / 2, h / 2 - 0.04), (0, 0, h / 2 + 0.04), body)
        b.box(inst, f, (w / 2 - 0.02, d / 2 - 0.02, 0.02), (0, 0, 0.02), self.plain((0.1, 0.1, 0.1, 1)))
        ndoor = max(1, int(round(w / 0.5)))
        nrow = 1 if h < 1.0 else int(rng.integers(1, 3))
        dw, dh = w / ndoor, (h - 0.1) / nrow
        for i in range(ndoor):
            for j in range(nrow):
                x, z = -w / 2 + dw * (i + 0.5), 0.08 + dh * (j + 0.5)
                b.box(inst, f, (dw / 2 - 0.01, 0.008, dh / 2 - 0.01), (x, d / 2 + 0.008, z), front)
                hx = x + (dw / 2 - 0.06) * (1 if i % 2 else -1)
                b.box(inst, f, (0.008, 0.015, 0.05), (hx, d / 2 + 0.03, z), handle)
        if h < 1.3:
            self.surfaces.append((f, w / 2 - 0.05, d / 2 - 0.05, h))

    def shelves(self) -> None:
        rng, b = self.rng, self.b
        w, d, h = float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.25, 0.4)), float(rng.uniform(1.2, 2.2))
        f = self.place_against_wall(w, d, h)
        if f is None:
            return
        inst = b.new_instance("shelves")
        mat = self.wood() if rng.uniform() < 0.6 else self.plain(self.colour(sat=(0, 0.4)))
        th = 0.02
        for sx in (-1, 1):
            b.box(inst, f, (th / 2, d / 2, h / 2), (sx * (w / 2 - th / 2), 0, h / 2), mat)
        b.box(inst, f, (w / 2, 0.005, h / 2), (0, -d / 2 + 0.005, h / 2), mat)
        nboard = int(rng.integers(3, 6))
        gap = (h - th) / nboard
        for k in range(nboard + 1):
            z = 0.04 + k * gap if k < nboard else h - th / 2
            b.box(inst, f, (w / 2 - th, d / 2, th / 2), (0, 0, z), mat)
            if k < nboard:
                self.books(f, w - 2 * th - 0.02, d, z + th / 2, gap - th - 0.03)

    def books(self, f: Frame2D, span: float, depth: float, z0: float, max_h: float) -> None:
        rng, b = self.rng, self.b
        x = -span / 2 + float(rng.uniform(0, 0.2)) * span
        end = span / 2 - float(rng.uniform(0, 0.3)) * span
        while x < end - 0.02:
            if rng.uniform() < 0.12:  # a gap
                x += float(rng.uniform(0.05, 0.2))
                continue
            t = float(rng.uniform(0.015, 0.06))
            if x + t > end:
                break
            bh = float(rng.uniform(0.55, 1.0)) * max_h
            bd = float(rng.uniform(0.6, 0.95)) * depth
            inst = b.new_instance("books")
            b.box(inst, f, (t / 2, bd / 2, bh / 2), (x + t / 2, -depth / 2 + bd / 2 + 0.01, z0 + bh / 2),
                  self.plain(self.colour(sat=(0.2, 0.9), val=(0.2, 0.9)), specular=0.15))
            x += t + 0.002

    def sofa(self) -> None:
        rng, b = self.rng, self.b
        w, d = float(rng.uniform(1.4, 2.4)), float(rng.uniform(0.8, 1.0))
        f = self.place_against_wall(w, d, 0.9)
        if f is None:
            return
        inst = b.new_instance("sofa")
        cover, cushion = self.fabric(), self.fabric() if rng.uniform() < 0.4 else None
        cushion = cushion or cover
        seat = float(rng.uniform(0.38, 0.46))
        b.box(inst, f, (w / 2, d / 2, seat / 2 - 0.05), (0, 0, seat / 2 + 0.05), cover)
        b.box(inst, f, (w / 2, 0.1, 0.22), (0, -d / 2 + 0.1, seat + 0.22), cover)
        for sx in (-1, 1):
            b.box(inst, f, (0.1, d / 2, 0.15), (sx * (w / 2 - 0.1), 0, seat + 0.1), cover)
        n = int(rng.integers(1, 4))
        cw = (w - 0.4) / n
        for i in range(n):
            b.box(inst, f, (cw / 2 - 0.01, d / 2 - 0.12, 0.05), (-w / 2 + 0.2 + cw * (i + 0.5), 0.08, seat + 0.05),
                  cushion)
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.cylinder(inst, f, 0.025, 0.025, (sx * (w / 2 - 0.08), sy * (d / 2 - 0.08), 0.025),
                           self.plain((0.15, 0.1, 0.05, 1)))

    def floor_lamp(self) -> None:
        rng, b = self.rng, self.b
        f = self.place_against_wall(0.4, 0.4, 1.8)
        if f is None:
            return
        inst = b.new_instance("lamp")
        metal = self.plain(self.colour(sat=(0, 0.2), val=(0.1, 0.8)), specular=0.7)
        top = float(rng.uniform(1.3, 1.75))
        shade = self.plain(self.colour(sat=(0, 0.3), val=(0.8, 1.0)), emission=0.5)
        b.cylinder(inst, f, 0.15, 0.015, (0, 0, 0.015), metal)
        b.cylinder(inst, f, 0.015, top / 2, (0, 0, top / 2), metal)
        b.cylinder(inst, f, float(rng.uniform(0.15, 0.22)), 0.13, (0, 0, top + 0.1), shade)
        p = f.apply((0, 0, top + 0.1))
        b.raw(f'<light pos="{p[0]:.3f} {p[1]:.3f} {p[2]:.3f}" dir="0 0 -1" directional="false" castshadow="false" '
              f'diffuse="0.35 0.3 0.25" specular="0.05 0.05 0.05" attenuation="1 0.3 0.1" cutoff="90"/>')

    # -- free-standing furniture ----------------------------------------------------------------------
    def table_group(self, moving_chair: bool) -> None:
        rng, b = self.rng, self.b
        w, d, h = float(rng.uniform(0.8, 1.8)), float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.7, 0.78))
        round_top = rng.uniform() < 0.25
        if round_top:
            w = d = float(rng.uniform(0.8, 1.1))
        for _ in range(40):
            f = Frame2D(float(rng.uniform(1.0, self.W - 1.0)), float(rng.uniform(1.0, self.D - 1.0)),
                        float(rng.choice([0.0, math.pi / 2])) + float(rng.normal(0, 0.05)))
            outer = FloorMap.rect(f, -w / 2 - 0.55, w / 2 + 0.55, -d / 2 - 0.55, d / 2 + 0.55)
            if self.map.inside(outer, self.W, self.D, 0.2) and self.map.is_free(outer):
                break
        else:
            return
        inst = b.new_instance("table")
        top_mat = self.wood() if rng.uniform() < 0.7 else self.plain(self.colour(sat=(0, 0.3)))
        leg_mat = top_mat if rng.uniform() < 0.6 else self.plain(self.colour(sat=(0, 0.2), val=(0.1, 0.6)), 0.6)
        if round_top:
            b.cylinder(inst, f, w / 2, 0.02, (0, 0, h - 0.02), top_mat)
            b.cylinder(inst, f, 0.05, (h - 0.04) / 2, (0, 0, (h - 0.04) / 2), leg_mat)
            b.cylinder(inst, f, 0.25, 0.015, (0, 0, 0.015), leg_mat)
        else:
            b.box(inst, f, (w / 2, d / 2, 0.02), (0, 0, h - 0.02), top_mat)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    b.box(inst, f, (0.025, 0.025, (h - 0.04) / 2), (sx * (w / 2 - 0.06), sy * (d / 2 - 0.06),
                                                                    (h - 0.04) / 2), leg_mat)
        self.map.mark(FloorMap.rect(f, -w / 2, w / 2, -d / 2, d / 2))
        self.surfaces.append((f, w / 2 - 0.08, d / 2 - 0.08, h))
        if rng.uniform() < 0.45:
            self.rug(Frame2D(f.x, f.y, f.yaw), w + 1.2, d + 1.2)
        chair_mat = self.wood() if rng.uniform() < 0.5 else self.plain(self.colour())
        seat_mat = chair_mat if rng.uniform() < 0.5 else self.fabric()
        spots = [(0, -d / 2 - 0.3, 0.0), (0, d / 2 + 0.3, math.pi), (-w / 2 - 0.3, 0, -math.pi / 2),
                 (w / 2 + 0.3, 0, math.pi / 2)]
        if w > 1.3:
            spots += [(-w / 4, -d / 2 - 0.3, 0.0), (w / 4, d / 2 + 0.3, math.pi)]
            spots[0], spots[1] = (w / 4, -d / 2 - 0.3, 0.0), (-w / 4, d / 2 + 0.3, math.pi)
        chosen = [s for s in spots if rng.uniform() < 0.7]
        for k, (lx, ly, lyaw) in enumerate(chosen):
            c = f.apply((lx + float(rng.normal(0, 0.04)), ly + float(rng.normal(0, 0.05)), 0))
            cf = Frame2D(float(c[0]), float(c[1]), f.yaw + lyaw + float(rng.normal(0, 0.12)))
            foot = FloorMap.rect(cf, -0.25, 0.25, -0.25, 0.25)
            if not self.map.inside(foot, self.W, self.D, 0.02) or not self.map.is_free(foot):
                continue
            if moving_chair and k == 0:
                away = np.array([math.cos(cf.yaw - math.pi / 2), math.sin(cf.yaw - math.pi / 2)])
                sweep = FloorMap.rect(cf, -0.25, 0.25, -0.25 - 0.45, 0.25)
                if not self.map.inside(sweep, self.W, self.D, 0.02) or not self.map.is_free(sweep):
                    continue
                origin = np.array([cf.x, cf.y, 0.0])
                body = b.mocap_body("chair_mover", origin, yaw_quat(cf.yaw))
                self.movers.append(Mover(body, "slide", origin, cf.yaw, direction=away, amplitude=0.4,
                                         period=float(rng.uniform(3, 7)), phase=float(rng.uniform(0, 6.3))))
                self.map.mark(sweep, camera=True)
                self.chair(Frame2D(0, 0, 0), chair_mat, seat_mat, body=body)
                moving_chair = False
            else:
                self.map.mark(foot)
                self.chair(cf, chair_mat, seat_mat)

    def chair(self, f: Frame2D, frame_mat: str, seat_mat: str, body: str | None = None) -> None:
        """A chair whose backrest is on the local -y side, so that it faces local +y (towards the table)."""
        b = self.b
        inst = b.new_instance("chair")
        s = float(self.rng.uniform(0.42, 0.48))
        b.box(inst, f, (0.22, 0.22, 0.025), (0, 0, s), seat_mat, body=body)
        b.box(inst, f, (0.22, 0.02, 0.22), (0, -0.2, s + 0.25), frame_mat, body=body)
        for sx in (-1, 1):
            for sy in (-1, 1):
                b.box(inst, f, (0.018, 0.018, (s - 0.025) / 2), (sx * 0.19, sy * 0.19, (s - 0.025) / 2), frame_mat,
                      body=body)

    def rug(self, f: Frame2D, w: float, d: float) -> None:
        rng, b = self.rng, self.b
        inst = b.new_instance("floor_mat")
        kind = ["checker", "gradient", "flat"][rng.integers(3)]
        c1, c2 = self.colour()[:3], self.colour()[:3]
        tex = b.builtin_texture(kind, c1, c2, size=128, mark="random", random=float(rng.uniform(0.02, 0.2)),
                                markrgb=self.colour()[:3])
        mat = b.material(texture=tex, texrepeat=(float(rng.integers(1, 4)), float(rng.integers(1, 4))), specular=0.02)
        b.box(inst, f, (w / 2, d / 2, 0.006), (0, 0, 0.006), mat)

    def free_rug(self) -> None:
        w, d = float(self.rng.uniform(1.0, 2.4)), float(self.rng.uniform(0.7, 1.8))
        for _ in range(20):
            f = Frame2D(float(self.rng.uniform(0.2 + w / 2, self.W - 0.2 - w / 2)),
                        float(self.rng.uniform(0.2 + d / 2, self.D - 0.2 - d / 2)))
            if self.map.inside(FloorMap.rect(f, -w / 2, w / 2, -d / 2, d / 2), self.W, self.D, 0.1):
                self.rug(f, w, d)
                return

    # -- small things ---------------------------------------------------------------------------------
    def clutter(self, n: int) -> None:
        rng, b = self.rng, self.b
        meshes = pybullet_meshes()
        if not self.surfaces:
            return
        for _ in range(n):
            f, hx, hy, z = self.surfaces[rng.integers(len(self.surfaces))]
            lx, ly = float(rng.uniform(-hx, hx)), float(rng.uniform(-hy, hy))
            p = f.apply((lx, ly, 0.0))
            at = Frame2D(float(p[0]), float(p[1]), float(rng.uniform(0, 2 * math.pi)), z)
            inst = b.new_instance("otherprop")
            kind = rng.integers(5 if meshes else 4)
            mat = self.plain(self.colour(sat=(0.2, 0.9)), specular=float(rng.uniform(0.1, 0.8)))
            if kind == 0:
                half = (float(rng.uniform(0.03, 0.14)), float(rng.uniform(0.03, 0.12)), float(rng.uniform(0.02, 0.1)))
                b.box(inst, at, half, (0, 0, half[2]), mat)
            elif kind == 1:
                r, hh = float(rng.uniform(0.025, 0.06)), float(rng.uniform(0.04, 0.14))
                b.cylinder(inst, at, r, hh, (0, 0, hh), mat)
            elif kind == 2:
                r = float(rng.uniform(0.03, 0.08))
                b.geom(inst, "sphere", (r,), at.apply((0, 0, r)), mat)
            elif kind == 3:  # a stack of paper/boxes
                for k in range(int(rng.integers(2, 5))):
                    half = (float(rng.uniform(0.08, 0.16)), float(rng.uniform(0.1, 0.2)), 0.012)
                    b.box(inst, at, half, (0, 0, 0.012 + 0.024 * k), self.plain(self.colour()),
                          yaw=float(rng.normal(0, 0.2)))
            else:
                m = meshes[rng.integers(len(meshes))]
                verts = _obj_vertices(str(m.obj))
                size = float(rng.choice([0.12, 0.18, 0.25]))  # few sizes: each size is one more mesh asset
                scale = size / float(np.ptp(verts, axis=0).max())
                mesh = b.mesh(m.obj, scale)
                if m.texture is not None:
                    mat = b.material(texture=b.file_texture(m.texture))
                else:
                    mat = b.material(rgba=m.rgba if rng.uniform() < 0.5 else self.colour(), specular=0.3)
                q = _mesh_upright(m.name, at.yaw)
                lift = -_mesh_lowest(m.obj, scale, _mesh_upright(m.name, 0.0))
                b.geom(inst, "mesh", None, at.apply((0, 0, lift)), mat, quat=q, mesh=mesh)

    def rolling_ball(self) -> None:
        rng, b = self.rng, self.b
        r = float(rng.uniform(0.08, 0.14))
        for _ in range(30):
            start = np.array([rng.uniform(0.4, self.W - 0.4), rng.uniform(0.4, self.D - 0.4)])
            ang = float(rng.uniform(0, 2 * math.pi))
            direction = np.array([math.cos(ang), math.sin(ang)])
            length = float(rng.uniform(0.8, 2.0))
            end = start + direction * length
            if not (0.3 < end[0] < self.W - 0.3 and 0.3 < end[1] < self.D - 0.3):
                continue
            f = Frame2D(float(start[0]), float(start[1]), ang)
            sweep = FloorMap.rect(f, -r - 0.05, length + r + 0.05, -r - 0.05, r + 0.05)
            if not self.map.is_free(sweep):
                continue
            self.map.mark(sweep, keepout=True, camera=True)
            origin = np.array([start[0], start[1], r])
            body = b.mocap_body("ball_mover", origin)
            self.movers.append(Mover(body, "roll", origin, 0.0, direction=direction, amplitude=length,
                                     period=float(rng.uniform(3, 8)), phase=float(rng.uniform(0, 6.3)), radius=r))
            inst = b.new_instance("otherprop")
            tex = b.builtin_texture("checker", self.colour()[:3], self.colour()[:3], size=64)
            b.geom(inst, "sphere", (r,), (0, 0, 0), b.material(texture=tex, texrepeat=(2, 2)), body=body)
            return

    # -- light ----------------------------------------------------------------------------------------
    def lights(self) -> str:
        rng, b = self.rng, self.b
        n = int(rng.integers(1, 4))
        warm = float(rng.uniform(-0.1, 0.15))
        level = float(rng.uniform(0.45, 0.85))
        fixture = self.plain((1, 1, 0.95, 1), emission=1.0)
        for i in range(n):
            x = self.W * (i + 1) / (n + 1) + float(rng.normal(0, 0.2))
            y = self.D * float(rng.uniform(0.3, 0.7))
            inst = b.new_instance("lamp")
            b.cylinder(inst, Frame2D(x, y), float(rng.uniform(0.12, 0.25)), 0.02, (0, 0, self.H - 0.02), fixture)
            diffuse = f"{level * (1 + warm):.3f} {level:.3f} {level * (1 - warm):.3f}"
            shadow = "true" if i == 0 else "false"
            b.raw(f'<light pos="{x:.3f} {y:.3f} {self.H - 0.1:.3f}" dir="0 0 -1" directional="false" '
                  f'castshadow="{shadow}" diffuse="{diffuse}" specular="0.15 0.15 0.15" cutoff="85" exponent="2" '
                  f'attenuation="1 0.05 0.02"/>')
        amb = float(rng.uniform(0.25, 0.45))
        head = float(rng.uniform(0.15, 0.35))
        return (f'<headlight ambient="{amb:.3f} {amb:.3f} {amb * (1 - warm / 2):.3f}" '
                f'diffuse="{head:.3f} {head:.3f} {head:.3f}" specular="0.05 0.05 0.05"/>')

    # -- whole room -----------------------------------------------------------------------------------
    def build(self) -> Room:
        rng = self.rng
        self.shell()
        self.door(moving=rng.uniform() < 0.4)
        for _ in range(int(rng.integers(0, 3))):
            self.window()
        for _ in range(int(rng.integers(1, 4))):
            self.picture()
        self.table_group(moving_chair=rng.uniform() < 0.4)
        for _ in range(int(rng.integers(1, 3))):
            self.shelves()
        for _ in range(int(rng.integers(1, 4))):
            self.cabinet()
        if rng.uniform() < 0.65:
            self.sofa()
        if rng.uniform() < 0.4 and self.W * self.D > 22:
            self.table_group(moving_chair=False)
        for _ in range(int(rng.integers(0, 3))):
            self.floor_lamp()
        if rng.uniform() < 0.35:
            self.free_rug()
        self.clutter(int(rng.integers(3, 12)))
        if rng.uniform() < 0.5:
            self.rolling_ball()
        headlight = self.lights()
        fovy = float(rng.uniform(45.0, 60.0))
        cam_body = self.b.mocap_body(CAMERA_BODY, (self.W / 2, self.D / 2, 1.2))
        self.b.raw(f'<camera name="{CAMERA_NAME}" fovy="{fovy:.3f}" pos="0 0 0"/>', body=cam_body)
        extent = 10.0
        xml = self.b.to_xml(extent, (self.W / 2, self.D / 2, self.H / 2), headlight)
        return Room(xml=xml, labels=dict(self.b.labels), instance_classes=dict(self.b.instance_classes),
                    movers=list(self.movers), size=(self.W, self.D, self.H), clearance=self.map.clearance(),
                    fovy=fovy, style=self.style)


def _mesh_upright(name: str, yaw: float) -> np.ndarray:
    """pybullet meshes are y-up (duck) or z-up; rotate y-up ones so they stand on the surface."""
    q = yaw_quat(yaw)
    if name in ("duck", "bunny"):
        q = quat_mul(q, np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0]))
    return q


@functools.lru_cache(maxsize=16)
def _obj_vertices(path: str) -> np.ndarray:
    with open(path) as fh:
        rows = [line.split()[1:4] for line in fh if line.startswith("v ")]
    return np.asarray(rows, dtype=np.float64)


def _mesh_lowest(path, scale: float, quat: np.ndarray) -> float:
    """Lowest z of the mesh after rotation, so that it can be set down on a surface."""
    from mtshare_ros.data.mujoco_gl import import_mujoco

    mujoco = import_mujoco()
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, quat)
    return float((_obj_vertices(str(path)) * scale @ R.reshape(3, 3).T)[:, 2].min())


def generate_room(seed: int) -> Room:
    """The room for ``seed`` (deterministic)."""
    return RoomGenerator(np.random.default_rng(seed)).build()
