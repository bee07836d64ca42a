"""The room's shell and what is set into or hung on its walls: walls, floor, ceiling, skirting boards, the door
(static or swinging), windows and pictures.
"""

from __future__ import annotations

import math

from mtshare_ros.data.floor_map import FloorMap
from mtshare_ros.data.layout import RoomLayout, WallSlot
from mtshare_ros.data.mjcf import Frame2D, yaw_quat
from mtshare_ros.data.room import Mover


def add_shell(room: RoomLayout) -> str:
    """Walls, floor and ceiling (texture files of the domain where available) and, sometimes, skirting boards;
    returns the wall material (an L-shaped room's corner block wears it too)."""
    rng, b, p, W, D, H = room.rng, room.b, room.paint, room.W, room.D, room.H
    tx = room.textures
    if tx.walls and rng.uniform() < 0.75:
        wall_tex = b.file_texture(tx.walls[rng.integers(len(tx.walls))])
        tint = p.colour(sat=(0.0, 0.25), val=(0.75, 1.0))
        wall_mat = b.material(rgba=tint, texture=wall_tex, texrepeat=(0.5, 0.5), texuniform=True, specular=0.1)
    else:
        wall_mat = b.material(rgba=p.colour(sat=(0.0, 0.35), val=(0.55, 0.98)), specular=0.1)
    if tx.floors and rng.uniform() < 0.6:
        floor_tex = b.file_texture(tx.floors[rng.integers(len(tx.floors))])
        floor_mat = b.material(texture=floor_tex, texrepeat=(0.6, 0.6), texuniform=True, specular=0.3)
    else:
        wood = p.colour(hue=rng.uniform(0.05, 0.12), sat=(0.2, 0.7), val=(0.3, 0.8))[:3]
        tex = b.builtin_texture("checker", wood, tuple(0.85 * c for c in wood), size=256,
                                mark="random", random=0.02, markrgb=tuple(0.7 * c for c in wood))
        floor_mat = b.material(texture=tex, texrepeat=(2, 2), texuniform=True, specular=0.35, shininess=0.5)
    if tx.ceilings and rng.uniform() < 0.5:
        ceil_mat = b.material(texture=b.file_texture(tx.ceilings[0]), texrepeat=(0.5, 0.5), texuniform=True)
    else:
        ceil_mat = b.material(rgba=p.colour(sat=(0.0, 0.08), val=(0.85, 1.0)), specular=0.05)
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
        skirt = p.plain(p.colour(sat=(0, 0.2), val=(0.3, 1.0)))
        for side in range(4):
            frame, length = room.wall_frame(side)
            b.box(b.new_instance("wall"), frame, (length / 2, 0.008, 0.04), (length / 2, 0.008, 0.04), skirt)
    return wall_mat


def add_door(room: RoomLayout, moving: bool) -> None:
    """A door with frame and handle; a moving one swings about its hinge as a mocap body."""
    rng, b, p = room.rng, room.b, room.paint
    w, h = float(rng.uniform(0.8, 1.0)), float(rng.uniform(1.95, min(2.15, room.H - 0.2)))
    found = room.find_wall_slot(w + 0.16, 0.0, h + 0.1)
    if found is None:
        return
    side, a = found
    frame, _ = room.wall_frame(side)
    room.wall_slots.append(WallSlot(side, a, a + w + 0.16, 0.0, h + 0.1))
    inst = b.new_instance("door")
    trim = p.plain(p.colour(sat=(0, 0.3), val=(0.5, 1.0)))
    x0 = a + 0.08
    for lx, half in (((x0 - 0.04), (0.04, 0.015, h / 2 + 0.02)), ((x0 + w + 0.04), (0.04, 0.015, h / 2 + 0.02))):
        b.box(inst, frame, half, (lx, 0.015, h / 2 + 0.02), trim)
    b.box(inst, frame, (w / 2 + 0.08, 0.015, 0.04), (x0 + w / 2, 0.015, h + 0.04), trim)
    # Dark opening behind the leaf: seen when the door swings open.
    b.box(inst, frame, (w / 2, 0.004, h / 2), (x0 + w / 2, 0.004, h / 2), p.plain((0.08, 0.08, 0.09, 1)))
    leaf_mat = p.wood() if rng.uniform() < 0.6 else p.plain(p.colour(sat=(0, 0.3), val=(0.5, 1)))
    handle = p.plain((0.75, 0.75, 0.72, 1), specular=0.8)
    # Keep furniture out of the swing area; the camera may pass only if the door is static.
    swing = FloorMap.rect(frame, x0, x0 + w, 0.0, w + 0.1)
    room.map.mark(swing, keepout=True, camera=moving)
    if moving:
        hinge = frame.apply((x0, 0.0, 0.0))
        body = b.mocap_body(f"door_leaf{len(room.movers)}", hinge, yaw_quat(frame.yaw))
        leaf = Frame2D(0, 0, 0)
        room.movers.append(Mover(body, "swing", hinge, frame.yaw, amplitude=float(rng.uniform(0.6, 1.3)),
                                 period=float(rng.uniform(4, 9)), phase=float(rng.uniform(0, 2 * math.pi))))
    else:
        body, leaf = None, Frame2D(*frame.apply((x0, 0.0, 0.0))[:2], frame.yaw)
    b.box(inst, leaf, (w / 2, 0.02, h / 2), (w / 2, 0.03, h / 2), leaf_mat, body=body)
    b.box(inst, leaf, (0.06, 0.02, 0.012), (w - 0.12, 0.07, 1.0), handle, body=body)


def add_window(room: RoomLayout) -> None:
    """A framed window whose pane shows a sky texture (or a bright plain colour)."""
    rng, b, p = room.rng, room.b, room.paint
    w, h = float(rng.uniform(0.7, 1.6)), float(rng.uniform(0.8, 1.3))
    sill = float(rng.uniform(0.75, 1.0))
    if sill + h > room.H - 0.2:
        h = room.H - 0.2 - sill
    found = room.find_wall_slot(w + 0.1, sill - 0.05, sill + h + 0.05)
    if found is None:
        return
    side, a = found
    frame, _ = room.wall_frame(side)
    room.wall_slots.append(WallSlot(side, a, a + w + 0.1, sill - 0.05, sill + h + 0.05))
    inst = b.new_instance("window")
    if room.textures.skies:
        sky = b.file_texture(room.textures.skies[rng.integers(len(room.textures.skies))])
        pane = b.material(texture=sky, emission=0.6, specular=0.9, shininess=0.9)
    else:
        pane = p.plain((0.6, 0.75, 0.95, 1), specular=0.9, emission=0.6)
    fr = p.plain(p.colour(sat=(0, 0.15), val=(0.6, 1.0)))
    cx = a + 0.05 + w / 2
    b.box(inst, frame, (w / 2, 0.005, h / 2), (cx, 0.005, sill + h / 2), pane)
    for dz in (0.0, h):
        b.box(inst, frame, (w / 2 + 0.04, 0.03, 0.03), (cx, 0.03, sill + dz), fr)
    for dx in (-w / 2, 0.0, w / 2):
        b.box(inst, frame, (0.03, 0.03, h / 2), (cx + dx, 0.03, sill + h / 2), fr)


def add_picture(room: RoomLayout) -> None:
    """A framed picture: a wall/floor texture or a random builtin pattern."""
    rng, b, p = room.rng, room.b, room.paint
    w, h = float(rng.uniform(0.3, 1.1)), float(rng.uniform(0.3, 0.8))
    zc = float(rng.uniform(1.2, min(1.8, room.H - h / 2 - 0.25)))
    found = room.find_wall_slot(w, zc - h / 2, zc + h / 2)
    if found is None:
        return
    side, a = found
    frame, _ = room.wall_frame(side)
    room.wall_slots.append(WallSlot(side, a, a + w, zc - h / 2, zc + h / 2))
    inst = b.new_instance("picture")
    pool = room.textures.walls + room.textures.floors
    if pool and rng.uniform() < 0.5:
        canvas = b.material(texture=b.file_texture(pool[rng.integers(len(pool))]), texrepeat=(1, 1))
    else:
        kind = ["gradient", "checker", "flat"][rng.integers(3)]
        tex = b.builtin_texture(kind, p.colour()[:3], p.colour()[:3], size=64, mark="random",
                                random=float(rng.uniform(0, 0.3)), markrgb=p.colour()[:3])
        canvas = b.material(texture=tex)
    b.box(inst, frame, (w / 2, 0.012, h / 2), (a + w / 2, 0.012, zc), p.plain(p.colour(val=(0.1, 0.9))))
    b.box(inst, frame, (w / 2 - 0.03, 0.004, h / 2 - 0.03), (a + w / 2, 0.026, zc), canvas)
