"""Procedural indoor rooms: walls, floor, ceiling, door, windows, pictures, furniture, books, lamps, rugs,
clutter and a few moving objects, as an MJCF document with per-geom class and instance labels.

This module fixes the order in which the parts are drawn and assembles the MJCF document. Everything is
drawn from one ``numpy.random.Generator``, so a seed fixes the room; changing the order of the calls below
(or of the draws inside the parts) changes every room generated from then on. Besides the MJCF, the room
carries a floor map of where a camera may go (clear of furniture and moving objects) for the trajectory
generator.
"""

from __future__ import annotations

import numpy as np

from mtshare_ros.data.furniture import (
    add_cabinet,
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


def generate_room(seed: int) -> Room:
    """The room for ``seed`` (deterministic)."""
    rng = np.random.default_rng(seed)
    room = RoomLayout(rng)
    add_shell(room)
    add_door(room, moving=rng.uniform() < 0.4)
    for _ in range(int(rng.integers(0, 3))):
        add_window(room)
    for _ in range(int(rng.integers(1, 4))):
        add_picture(room)
    add_table_group(room, moving_chair=rng.uniform() < 0.4)
    for _ in range(int(rng.integers(1, 3))):
        add_shelves(room)
    for _ in range(int(rng.integers(1, 4))):
        add_cabinet(room)
    if rng.uniform() < 0.65:
        add_sofa(room)
    if rng.uniform() < 0.4 and room.W * room.D > 22:
        add_table_group(room, moving_chair=False)
    for _ in range(int(rng.integers(0, 3))):
        add_floor_lamp(room)
    if rng.uniform() < 0.35:
        add_free_rug(room)
    add_clutter(room, int(rng.integers(3, 12)))
    if rng.uniform() < 0.5:
        add_rolling_ball(room)
    headlight = add_lights(room)
    b = room.b
    fovy = float(rng.uniform(45.0, 60.0))
    cam_body = b.mocap_body(CAMERA_BODY, (room.W / 2, room.D / 2, 1.2))
    b.raw(f'<camera name="{CAMERA_NAME}" fovy="{fovy:.3f}" pos="0 0 0"/>', body=cam_body)
    extent = 10.0
    xml = b.to_xml(extent, (room.W / 2, room.D / 2, room.H / 2), headlight)
    return Room(xml=xml, labels=dict(b.labels), instance_classes=dict(b.instance_classes), movers=list(room.movers),
                size=(room.W, room.D, room.H), clearance=room.map.clearance())
