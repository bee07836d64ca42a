"""Procedural indoor rooms of several kinds (living room, office, bedroom, corridor, kitchen), rectangular or
L-shaped: walls, floor, ceiling, doors, windows, pictures, furniture, books, lamps, rugs, clutter and a few
moving objects, as an MJCF document with per-geom class and instance labels.

This module fixes the order in which the parts are drawn and assembles the MJCF document. Everything is
drawn from one ``numpy.random.Generator``, so a seed (with the domain) fixes the room; changing the order of
the calls below (or of the draws inside the parts) changes every room generated from then on. Besides the
MJCF, the room carries a floor map of where a camera may go (clear of furniture and moving objects) for the
trajectory generator.
"""

from __future__ import annotations

import math

import numpy as np

from mtshare_ros.data.domain import KIND_WEIGHTS, TRAIN_DOMAIN, SceneDomain
from mtshare_ros.data.furniture import (
    add_cabinet,
    add_counter_run,
    add_desk,
    add_floor_lamp,
    add_free_rug,
    add_shelves,
    add_sofa,
    add_table_group,
)
from mtshare_ros.data.layout import RoomLayout
from mtshare_ros.data.lighting import add_lights
from mtshare_ros.data.props import add_clutter, add_rolling_ball
from mtshare_ros.data.room import CAMERA_BODY, CAMERA_NAME, Room
from mtshare_ros.data.shell import add_door, add_picture, add_shell, add_window

HFOV_RANGE = (40.0, 90.0)  # degrees, horizontal field of view drawn per room (4:3 image)


def _times(rng: np.random.Generator, lo: int, hi: int) -> range:
    """A count drawn in [lo, hi] inclusive, as a range to loop over."""
    return range(int(rng.integers(lo, hi + 1)))


def _furnish(room: RoomLayout) -> None:
    """The furniture of the room's kind; what each kind has is what such rooms usually hold."""
    rng, kind = room.rng, room.kind
    if kind == "living":
        add_table_group(room, moving_chair=rng.uniform() < 0.4)
        for _ in _times(rng, 1, 2):
            add_shelves(room)
        for _ in _times(rng, 1, 3):
            add_cabinet(room)
        if rng.uniform() < 0.7:
            add_sofa(room)
        if rng.uniform() < 0.4 and room.W * room.D > 22:
            add_table_group(room, moving_chair=False)
        for _ in _times(rng, 0, 2):
            add_floor_lamp(room)
    elif kind == "office":
        for _ in _times(rng, 1, 4):
            add_desk(room)
        if rng.uniform() < 0.4:
            add_table_group(room, moving_chair=rng.uniform() < 0.4)
        for _ in _times(rng, 1, 3):
            add_shelves(room)
        for _ in _times(rng, 1, 4):
            add_cabinet(room, height=(0.7, 1.4))
        for _ in _times(rng, 0, 1):
            add_floor_lamp(room)
    elif kind == "bedroom":
        for _ in _times(rng, 1, 2):
            add_cabinet(room, height=(1.8, 2.2))  # wardrobes
        for _ in _times(rng, 1, 2):
            add_cabinet(room, height=(0.45, 0.65))  # nightstands, dressers
        if rng.uniform() < 0.5:
            add_desk(room)
        if rng.uniform() < 0.4:
            add_shelves(room)
        if rng.uniform() < 0.3:
            add_sofa(room)
        for _ in _times(rng, 0, 2):
            add_floor_lamp(room)
    elif kind == "corridor":
        for _ in _times(rng, 0, 2):
            add_cabinet(room, height=(0.6, 1.1))
        if rng.uniform() < 0.3:
            add_shelves(room)
        if rng.uniform() < 0.3:
            add_floor_lamp(room)
    elif kind == "kitchen":
        for _ in _times(rng, 1, 3):
            add_counter_run(room)
        if rng.uniform() < 0.6:
            add_table_group(room, moving_chair=rng.uniform() < 0.4)
        for _ in _times(rng, 0, 2):
            add_cabinet(room, height=(1.8, 2.2))
        if rng.uniform() < 0.3:
            add_shelves(room)
    else:
        raise ValueError(f"unknown room kind {kind!r}")


def generate_room(seed: int, domain: SceneDomain = TRAIN_DOMAIN) -> Room:
    """The room for ``seed`` in ``domain`` (deterministic)."""
    rng = np.random.default_rng(seed)
    weights = np.array([KIND_WEIGHTS[k] for k in domain.room_kinds])
    kind = domain.room_kinds[int(rng.choice(len(weights), p=weights / weights.sum()))]
    room = RoomLayout(rng, domain, kind)
    wall_mat = add_shell(room)
    if kind != "corridor" and rng.uniform() < 0.3:
        room.cut_corner(wall_mat)
    doors = (2, 4) if kind == "corridor" else (1, 2)
    for k in _times(rng, *doors):
        add_door(room, moving=k == 0 and rng.uniform() < 0.4)
    _furnish(room)  # before windows and pictures: tall furniture needs whole stretches of wall
    for _ in _times(rng, 0, 0 if kind == "corridor" else 2):
        add_window(room)
    for _ in _times(rng, 1, 4):
        add_picture(room)
    if rng.uniform() < (0.6 if kind == "corridor" else 0.35):
        add_free_rug(room)
    density = float(rng.uniform(0.2, 1.0)) ** 2  # clutter from tidy to crowded
    add_clutter(room, int(round(2 + 28 * density)))
    if rng.uniform() < 0.5:
        add_rolling_ball(room)
    headlight = add_lights(room)
    b = room.b
    hfov = math.radians(float(rng.uniform(*HFOV_RANGE)))
    fovy = math.degrees(2 * math.atan(math.tan(hfov / 2) * 3 / 4))
    cam_body = b.mocap_body(CAMERA_BODY, (room.W / 2, room.D / 2, 1.2))
    b.raw(f'<camera name="{CAMERA_NAME}" fovy="{fovy:.3f}" pos="0 0 0"/>', body=cam_body)
    extent = 10.0
    xml = b.to_xml(extent, (room.W / 2, room.D / 2, room.H / 2), headlight)
    return Room(xml=xml, labels=dict(b.labels), instance_classes=dict(b.instance_classes), movers=list(room.movers),
                size=(room.W, room.D, room.H), clearance=room.map.clearance(), kind=kind,
                l_shaped=room.notch is not None)
