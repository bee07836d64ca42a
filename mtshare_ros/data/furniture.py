"""Furniture, built from boxes and cylinders: cabinets, shelves with books, sofas and floor lamps against the
walls; tables with chairs (one may slide back and forth), and rugs, standing free on the floor.

Each piece reserves its footprint on the floor map; tops low enough to hold clutter are added to the
room's surfaces.
"""

from __future__ import annotations

import math

import numpy as np

from mtshare_ros.data.floor_map import FloorMap
from mtshare_ros.data.layout import RoomLayout
from mtshare_ros.data.mjcf import Frame2D, yaw_quat
from mtshare_ros.data.room import Mover


# -- against the walls ----------------------------------------------------------------------------------
def add_cabinet(room: RoomLayout, height: tuple[float, float] = (0.6, 2.0)) -> None:
    """A cabinet with doors against a wall; ``height`` is the range drawn from (nightstands, wardrobes)."""
    rng, b, p = room.rng, room.b, room.paint
    w, d, h = float(rng.uniform(0.5, 1.6)), float(rng.uniform(0.35, 0.6)), float(rng.uniform(*height))
    f = room.place_against_wall(w, d, h)
    if f is None:
        return
    inst = b.new_instance("cabinet")
    body = p.surface()
    front = p.surface() if rng.uniform() < 0.5 else p.plain(p.colour(sat=(0, 0.5)))
    handle = p.plain((0.7, 0.7, 0.7, 1), specular=0.8)
    b.box(inst, f, (w / 2, d / 2, h / 2 - 0.04), (0, 0, h / 2 + 0.04), body)
    b.box(inst, f, (w / 2 - 0.02, d / 2 - 0.02, 0.02), (0, 0, 0.02), p.plain((0.1, 0.1, 0.1, 1)))
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
        room.surfaces.append((f, w / 2 - 0.05, d / 2 - 0.05, h))


def add_shelves(room: RoomLayout) -> None:
    rng, b, p = room.rng, room.b, room.paint
    w, d, h = float(rng.uniform(0.6, 1.4)), float(rng.uniform(0.25, 0.4)), float(rng.uniform(1.2, 2.2))
    f = room.place_against_wall(w, d, h)
    if f is None:
        return
    inst = b.new_instance("shelves")
    mat = p.wood() if rng.uniform() < 0.4 else p.surface()
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
            _books(room, f, w - 2 * th - 0.02, d, z + th / 2, gap - th - 0.03)


def _books(room: RoomLayout, f: Frame2D, span: float, depth: float, z0: float, max_h: float) -> None:
    """A row of books (one instance each) with gaps, standing on a shelf board at height z0."""
    rng, b, p = room.rng, room.b, room.paint
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
              p.plain(p.colour(sat=(0.2, 0.9), val=(0.2, 0.9)), specular=0.15))
        x += t + 0.002


def add_sofa(room: RoomLayout) -> None:
    rng, b, p = room.rng, room.b, room.paint
    w, d = float(rng.uniform(1.4, 2.4)), float(rng.uniform(0.8, 1.0))
    f = room.place_against_wall(w, d, 0.9)
    if f is None:
        return
    inst = b.new_instance("sofa")
    cover, cushion = p.fabric(), p.fabric() if rng.uniform() < 0.4 else None
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
                       p.plain((0.15, 0.1, 0.05, 1)))


def add_floor_lamp(room: RoomLayout) -> None:
    """A standing lamp with a glowing shade and a weak light of its own."""
    rng, b, p = room.rng, room.b, room.paint
    f = room.place_against_wall(0.4, 0.4, 1.8)
    if f is None:
        return
    inst = b.new_instance("lamp")
    metal = p.plain(p.colour(sat=(0, 0.2), val=(0.1, 0.8)), specular=0.7)
    top = float(rng.uniform(1.3, 1.75))
    shade = p.plain(p.colour(sat=(0, 0.3), val=(0.8, 1.0)), emission=0.5)
    b.cylinder(inst, f, 0.15, 0.015, (0, 0, 0.015), metal)
    b.cylinder(inst, f, 0.015, top / 2, (0, 0, top / 2), metal)
    b.cylinder(inst, f, float(rng.uniform(0.15, 0.22)), 0.13, (0, 0, top + 0.1), shade)
    c = f.apply((0, 0, top + 0.1))
    b.raw(f'<light pos="{c[0]:.3f} {c[1]:.3f} {c[2]:.3f}" dir="0 0 -1" directional="false" castshadow="false" '
          f'diffuse="0.35 0.3 0.25" specular="0.05 0.05 0.05" attenuation="1 0.3 0.1" cutoff="90"/>')


def add_desk(room: RoomLayout) -> None:
    """A desk against a wall with a chair in front of it and, often, a monitor on it (office, bedroom)."""
    rng, b, p = room.rng, room.b, room.paint
    w, d, h = float(rng.uniform(1.0, 1.8)), float(rng.uniform(0.6, 0.8)), float(rng.uniform(0.72, 0.76))
    f = room.place_against_wall(w, d + 0.7, h)  # the chair's space in front is reserved with the desk
    if f is None:
        return
    desk = Frame2D(*f.apply((0, -0.35, 0))[:2], f.yaw)
    inst = b.new_instance("table")
    top = p.wood() if rng.uniform() < 0.5 else p.surface()
    legs = p.plain(p.colour(sat=(0, 0.2), val=(0.1, 0.7)), 0.6)
    b.box(inst, desk, (w / 2, d / 2, 0.02), (0, 0, h - 0.02), top)
    for sx in (-1, 1):
        b.box(inst, desk, (0.02, d / 2 - 0.03, (h - 0.04) / 2), (sx * (w / 2 - 0.03), 0, (h - 0.04) / 2), legs)
    if rng.uniform() < 0.7:
        screen = b.new_instance("otherprop")
        sw = float(rng.uniform(0.45, 0.7))
        dark = p.plain((0.05, 0.05, 0.06, 1), specular=0.8)
        b.box(screen, desk, (sw / 2, 0.015, sw * 0.3), (0, -d / 2 + 0.15, h + 0.12 + sw * 0.3), dark)
        b.box(screen, desk, (0.03, 0.03, 0.06), (0, -d / 2 + 0.12, h + 0.06), dark)
    room.surfaces.append((desk, w / 2 - 0.1, d / 2 - 0.1, h))
    chair = Frame2D(*desk.apply((float(rng.normal(0, 0.1)), d / 2 + 0.3, 0))[:2],
                    desk.yaw + math.pi + float(rng.normal(0, 0.25)))
    _chair(room, chair, p.plain(p.colour(sat=(0, 0.3), val=(0.1, 0.5))), p.fabric())


def add_counter_run(room: RoomLayout) -> None:
    """Kitchen base cabinets under a worktop along a wall (cabinet class) and wall cabinets above them."""
    rng, b, p = room.rng, room.b, room.paint
    frame, length = room.wall_frame(int(rng.integers(4)))
    w = float(min(length - 0.3, rng.uniform(1.6, 3.6)))
    d, h = 0.6, 0.9
    f = room.place_against_wall(w, d, 2.3)
    if f is None:
        return
    inst = b.new_instance("cabinet")
    body, front, worktop = p.surface(), p.surface(), p.file_surface() or p.procedural()
    handle = p.plain((0.75, 0.75, 0.75, 1), specular=0.9)
    b.box(inst, f, (w / 2, d / 2 - 0.02, h / 2 - 0.05), (0, -0.02, h / 2 + 0.05), body)
    b.box(inst, f, (w / 2 - 0.01, d / 2 - 0.05, 0.05), (0, -0.05, 0.05), p.plain((0.1, 0.1, 0.1, 1)))
    b.box(inst, f, (w / 2 + 0.01, d / 2 + 0.01, 0.02), (0, 0, h + 0.02), worktop)
    n = max(1, int(round(w / 0.6)))
    for i in range(n):
        x = -w / 2 + w / n * (i + 0.5)
        b.box(inst, f, (w / n / 2 - 0.01, 0.01, h / 2 - 0.08), (x, d / 2 - 0.01, h / 2 + 0.05), front)
        b.box(inst, f, (0.06, 0.012, 0.008), (x, d / 2 + 0.012, h - 0.1), handle)
    if rng.uniform() < 0.7:
        top0 = float(rng.uniform(1.45, 1.6))
        hh = min(0.75, room.H - top0 - 0.05)
        for i in range(n):
            x = -w / 2 + w / n * (i + 0.5)
            b.box(inst, f, (w / n / 2 - 0.005, 0.17, hh / 2), (x, -d / 2 + 0.17, top0 + hh / 2), front)
    room.surfaces.append((f, w / 2 - 0.05, d / 2 - 0.08, h + 0.04))


# -- free-standing --------------------------------------------------------------------------------------
def add_table_group(room: RoomLayout, moving_chair: bool) -> None:
    """A table (square or round) with chairs around it and maybe a rug under it; with ``moving_chair`` the
    first chair that has room to slide back becomes a mover."""
    rng, b, p = room.rng, room.b, room.paint
    w, d, h = float(rng.uniform(0.8, 1.8)), float(rng.uniform(0.6, 1.0)), float(rng.uniform(0.7, 0.78))
    round_top = rng.uniform() < 0.25
    if round_top:
        w = d = float(rng.uniform(0.8, 1.1))
    for _ in range(40):
        f = Frame2D(float(rng.uniform(1.0, room.W - 1.0)), float(rng.uniform(1.0, room.D - 1.0)),
                    float(rng.choice([0.0, math.pi / 2])) + float(rng.normal(0, 0.05)))
        outer = FloorMap.rect(f, -w / 2 - 0.55, w / 2 + 0.55, -d / 2 - 0.55, d / 2 + 0.55)
        if room.map.inside(outer, room.W, room.D, 0.2) and room.map.is_free(outer):
            break
    else:
        return
    inst = b.new_instance("table")
    top_mat = p.wood() if rng.uniform() < 0.5 else p.surface()
    leg_mat = top_mat if rng.uniform() < 0.6 else p.plain(p.colour(sat=(0, 0.2), val=(0.1, 0.6)), 0.6)
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
    room.map.mark(FloorMap.rect(f, -w / 2, w / 2, -d / 2, d / 2))
    room.surfaces.append((f, w / 2 - 0.08, d / 2 - 0.08, h))
    if rng.uniform() < 0.45:
        _rug(room, f, w + 1.2, d + 1.2)
    chair_mat = p.wood() if rng.uniform() < 0.5 else p.plain(p.colour())
    seat_mat = chair_mat if rng.uniform() < 0.5 else p.fabric()
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
        if not room.map.inside(foot, room.W, room.D, 0.02) or not room.map.is_free(foot):
            continue
        if moving_chair and k == 0:
            away = np.array([math.cos(cf.yaw - math.pi / 2), math.sin(cf.yaw - math.pi / 2)])
            sweep = FloorMap.rect(cf, -0.25, 0.25, -0.25 - 0.45, 0.25)
            if not room.map.inside(sweep, room.W, room.D, 0.02) or not room.map.is_free(sweep):
                continue
            origin = np.array([cf.x, cf.y, 0.0])
            body = b.mocap_body("chair_mover", origin, yaw_quat(cf.yaw))
            room.movers.append(Mover(body, "slide", origin, cf.yaw, direction=away, amplitude=0.4,
                                     period=float(rng.uniform(3, 7)), phase=float(rng.uniform(0, 6.3))))
            room.map.mark(sweep, camera=True)
            _chair(room, Frame2D(0, 0, 0), chair_mat, seat_mat, body=body)
            moving_chair = False
        else:
            room.map.mark(foot)
            _chair(room, cf, chair_mat, seat_mat)


def _chair(room: RoomLayout, f: Frame2D, frame_mat: str, seat_mat: str, body: str | None = None) -> None:
    """A chair whose backrest is on the local -y side, so that it faces local +y (towards the table)."""
    b = room.b
    inst = b.new_instance("chair")
    s = float(room.rng.uniform(0.42, 0.48))
    b.box(inst, f, (0.22, 0.22, 0.025), (0, 0, s), seat_mat, body=body)
    b.box(inst, f, (0.22, 0.02, 0.22), (0, -0.2, s + 0.25), frame_mat, body=body)
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.box(inst, f, (0.018, 0.018, (s - 0.025) / 2), (sx * 0.19, sy * 0.19, (s - 0.025) / 2), frame_mat,
                  body=body)


def _rug(room: RoomLayout, f: Frame2D, w: float, d: float) -> None:
    rng, b, p = room.rng, room.b, room.paint
    inst = b.new_instance("floor_mat")
    kind = ["checker", "gradient", "flat"][rng.integers(3)]
    c1, c2 = p.colour()[:3], p.colour()[:3]
    tex = b.builtin_texture(kind, c1, c2, size=128, mark="random", random=float(rng.uniform(0.02, 0.2)),
                            markrgb=p.colour()[:3])
    mat = b.material(texture=tex, texrepeat=(float(rng.integers(1, 4)), float(rng.integers(1, 4))), specular=0.02)
    b.box(inst, f, (w / 2, d / 2, 0.006), (0, 0, 0.006), mat)


def add_free_rug(room: RoomLayout) -> None:
    """A rug anywhere inside the walls: it may lie under furniture, so occupancy is not checked or marked."""
    w = min(float(room.rng.uniform(1.0, 2.4)), room.W - 0.6)
    d = min(float(room.rng.uniform(0.7, 1.8)), room.D - 0.6)
    for _ in range(20):
        f = Frame2D(float(room.rng.uniform(0.2 + w / 2, room.W - 0.2 - w / 2)),
                    float(room.rng.uniform(0.2 + d / 2, room.D - 0.2 - d / 2)))
        if room.map.inside(FloorMap.rect(f, -w / 2, w / 2, -d / 2, d / 2), room.W, room.D, 0.1):
            _rug(room, f, w, d)
            return
