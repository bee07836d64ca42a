"""The room's light: ceiling lamps (fixture geoms plus MuJoCo point lights, the first often casting shadows)
and the headlight that sets the ambient level. Count, tint (warm to cold), level and ambient are drawn
widely, from dim evening rooms to bright offices, as cameras meet them.
"""

from __future__ import annotations

from mtshare_ros.data.layout import RoomLayout
from mtshare_ros.data.mjcf import Frame2D


def add_lights(room: RoomLayout) -> str:
    """Add the ceiling lamps and return the ``<headlight>`` element for MJCF's ``<visual>`` section."""
    rng, b, p = room.rng, room.b, room.paint
    n = int(rng.integers(1, 6))
    warm = float(rng.uniform(-0.25, 0.3))
    level = float(rng.uniform(0.25, 1.0)) / max(1.0, n / 2.5)
    shadows = rng.uniform() < 0.75
    fixture = p.plain((1, 1, 0.95, 1), emission=1.0)
    for i in range(n):
        x = room.W * (i + 1) / (n + 1) + float(rng.normal(0, 0.2))
        y = room.D * float(rng.uniform(0.3, 0.7))
        if room.notch and room.notch[0] <= x <= room.notch[2] and room.notch[1] <= y <= room.notch[3]:
            x, y = room.W - x, room.D - y  # not inside the L-shape's block: the opposite corner is free
        inst = b.new_instance("lamp")
        b.cylinder(inst, Frame2D(x, y), float(rng.uniform(0.12, 0.25)), 0.02, (0, 0, room.H - 0.02), fixture)
        diffuse = f"{level * (1 + warm):.3f} {level:.3f} {level * (1 - warm):.3f}"
        shadow = "true" if i == 0 and shadows else "false"
        b.raw(f'<light pos="{x:.3f} {y:.3f} {room.H - 0.1:.3f}" dir="0 0 -1" directional="false" '
              f'castshadow="{shadow}" diffuse="{diffuse}" specular="0.15 0.15 0.15" cutoff="85" exponent="2" '
              f'attenuation="1 0.05 0.02"/>')
    amb = float(rng.uniform(0.12, 0.5))
    head = float(rng.uniform(0.05, 0.4))
    return (f'<headlight ambient="{amb:.3f} {amb:.3f} {amb * (1 - warm / 2):.3f}" '
            f'diffuse="{head:.3f} {head:.3f} {head:.3f}" specular="0.05 0.05 0.05"/>')
