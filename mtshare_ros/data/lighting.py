"""The room's light: ceiling lamps (fixture geoms plus MuJoCo point lights, the first casting shadows) and
the headlight that sets the ambient level; one warm/cold tint is drawn for all of them.
"""

from __future__ import annotations

from mtshare_ros.data.layout import RoomLayout
from mtshare_ros.data.mjcf import Frame2D


def add_lights(room: RoomLayout) -> str:
    """Add the ceiling lamps and return the ``<headlight>`` element for MJCF's ``<visual>`` section."""
    rng, b, p = room.rng, room.b, room.paint
    n = int(rng.integers(1, 4))
    warm = float(rng.uniform(-0.1, 0.15))
    level = float(rng.uniform(0.45, 0.85))
    fixture = p.plain((1, 1, 0.95, 1), emission=1.0)
    for i in range(n):
        x = room.W * (i + 1) / (n + 1) + float(rng.normal(0, 0.2))
        y = room.D * float(rng.uniform(0.3, 0.7))
        inst = b.new_instance("lamp")
        b.cylinder(inst, Frame2D(x, y), float(rng.uniform(0.12, 0.25)), 0.02, (0, 0, room.H - 0.02), fixture)
        diffuse = f"{level * (1 + warm):.3f} {level:.3f} {level * (1 - warm):.3f}"
        shadow = "true" if i == 0 else "false"
        b.raw(f'<light pos="{x:.3f} {y:.3f} {room.H - 0.1:.3f}" dir="0 0 -1" directional="false" '
              f'castshadow="{shadow}" diffuse="{diffuse}" specular="0.15 0.15 0.15" cutoff="85" exponent="2" '
              f'attenuation="1 0.05 0.02"/>')
    amb = float(rng.uniform(0.25, 0.45))
    head = float(rng.uniform(0.15, 0.35))
    return (f'<headlight ambient="{amb:.3f} {amb:.3f} {amb * (1 - warm / 2):.3f}" '
            f'diffuse="{head:.3f} {head:.3f} {head:.3f}" specular="0.05 0.05 0.05"/>')
