"""Small objects (class otherprop): clutter on tables, desks, counters and low cabinets, from primitives or
the meshes of the domain's asset sources, and a ball that rolls back and forth across the floor.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mtshare_ros.data.assets import mesh_vertices
from mtshare_ros.data.floor_map import FloorMap
from mtshare_ros.data.layout import RoomLayout
from mtshare_ros.data.mjcf import Frame2D, quat_mul, yaw_quat
from mtshare_ros.data.room import Mover


def add_clutter(room: RoomLayout, n: int) -> None:
    """``n`` objects on random surfaces: a box, cylinder, sphere, a stack of paper, or a mesh (half of them
    when the domain has meshes)."""
    rng, b, p = room.rng, room.b, room.paint
    meshes = room.meshes
    if not room.surfaces:
        return
    for _ in range(n):
        f, hx, hy, z = room.surfaces[rng.integers(len(room.surfaces))]
        lx, ly = float(rng.uniform(-hx, hx)), float(rng.uniform(-hy, hy))
        c = f.apply((lx, ly, 0.0))
        at = Frame2D(float(c[0]), float(c[1]), float(rng.uniform(0, 2 * math.pi)), z)
        inst = b.new_instance("otherprop")
        kind = 4 if meshes and rng.uniform() < 0.5 else int(rng.integers(4))
        mat = p.plain(p.colour(sat=(0.2, 0.9)), specular=float(rng.uniform(0.1, 0.8))) if rng.uniform() < 0.6 \
            else p.surface()
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
                b.box(inst, at, half, (0, 0, 0.012 + 0.024 * k), p.plain(p.colour()),
                      yaw=float(rng.normal(0, 0.2)))
        else:
            m = meshes[rng.integers(len(meshes))]
            verts = mesh_vertices(str(m.path))
            sizes = (0.25, 0.35, 0.45) if m.source == "gymnasium_robotics" else (0.12, 0.18, 0.25)
            size = float(rng.choice(sizes))  # few sizes: each size is one more mesh asset
            scale = size / float(np.ptp(verts, axis=0).max())
            mesh = b.mesh(m.path, scale)
            if m.texture is not None:
                mat = b.material(texture=b.file_texture(m.texture))
            elif rng.uniform() < 0.4:
                mat = b.material(rgba=m.rgba, specular=0.3)
            else:
                mat = p.surface() if rng.uniform() < 0.5 else p.plain(p.colour(), specular=0.3)
            q = _mesh_upright(m.y_up, at.yaw)
            lift = -_mesh_lowest(m.path, scale, _mesh_upright(m.y_up, 0.0))
            b.geom(inst, "mesh", None, at.apply((0, 0, lift)), mat, quat=q, mesh=mesh)


def add_rolling_ball(room: RoomLayout) -> None:
    """A checkered ball rolling to and fro on a clear straight path; nothing else may stand on its path."""
    rng, b, p = room.rng, room.b, room.paint
    r = float(rng.uniform(0.08, 0.14))
    for _ in range(30):
        start = np.array([rng.uniform(0.4, room.W - 0.4), rng.uniform(0.4, room.D - 0.4)])
        ang = float(rng.uniform(0, 2 * math.pi))
        direction = np.array([math.cos(ang), math.sin(ang)])
        length = float(rng.uniform(0.8, 2.0))
        end = start + direction * length
        if not (0.3 < end[0] < room.W - 0.3 and 0.3 < end[1] < room.D - 0.3):
            continue
        f = Frame2D(float(start[0]), float(start[1]), ang)
        sweep = FloorMap.rect(f, -r - 0.05, length + r + 0.05, -r - 0.05, r + 0.05)
        if not room.map.is_free(sweep):
            continue
        room.map.mark(sweep, keepout=True, camera=True)
        origin = np.array([start[0], start[1], r])
        body = b.mocap_body("ball_mover", origin)
        room.movers.append(Mover(body, "roll", origin, 0.0, direction=direction, amplitude=length,
                                 period=float(rng.uniform(3, 8)), phase=float(rng.uniform(0, 6.3)), radius=r))
        inst = b.new_instance("otherprop")
        tex = b.builtin_texture("checker", p.colour()[:3], p.colour()[:3], size=64)
        b.geom(inst, "sphere", (r,), (0, 0, 0), b.material(texture=tex, texrepeat=(2, 2)), body=body)
        return


def _mesh_upright(y_up: bool, yaw: float) -> np.ndarray:
    """Meshes are y-up (duck, bunny) or z-up; rotate y-up ones so they stand on the surface."""
    q = yaw_quat(yaw)
    if y_up:
        q = quat_mul(q, np.array([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0]))
    return q


def _mesh_lowest(path: Path, scale: float, quat: np.ndarray) -> float:
    """Lowest z of the mesh after rotation, so that it can be set down on a surface."""
    from mtshare_ros.data.mujoco_gl import import_mujoco

    mujoco = import_mujoco()
    R = np.zeros(9)
    mujoco.mju_quat2Mat(R, quat)
    return float((mesh_vertices(str(path)) * scale @ R.reshape(3, 3).T)[:, 2].min())
