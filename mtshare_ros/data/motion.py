"""Camera motions of the kinds a perception node sees, for measuring temporal sharing: each changes the
picture at its own speed, which is what decides how much of a frame can be reused.

* ``static``: a fixed camera; only the room's moving objects (door, chair, ball) move;
* ``slow_pan``: a fixed camera turning at 15 deg/s, like a robot scanning a room;
* ``walking``: a robot driving through the room (``trajectory.ROBOT``: 0.3-0.8 m/s, smooth turns);
* ``fast_turn``: a fixed camera turning at 120 deg/s, a robot spinning on the spot.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from mtshare_ros.data.renderer import Frame, SceneRenderer
from mtshare_ros.data.scene import generate_room
from mtshare_ros.data.trajectory import ROBOT, camera_trajectory

TURN_RATES = {"static": 0.0, "slow_pan": math.radians(15), "fast_turn": math.radians(120)}
KINDS = ("static", "slow_pan", "walking", "fast_turn")


def motion_poses(seed: int, kind: str, num_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses (num_frames, 4, 4) camera-to-world and stamps (s) of motion ``kind`` in the room of ``seed``.

    Turning kinds keep the position and pitch of the walking path's first pose (clear of furniture) and rotate
    the camera about the world's vertical axis."""
    if kind not in KINDS:
        raise ValueError(f"unknown motion {kind!r}; known: {', '.join(KINDS)}")
    room = generate_room(seed)
    poses, stamps = camera_trajectory(room, num_frames, fps, np.random.default_rng([seed, 7]), style=ROBOT)
    if kind == "walking":
        return poses, stamps
    start = poses[0]
    out = np.repeat(start[None], num_frames, axis=0)
    for k, t in enumerate(stamps):
        a = TURN_RATES[kind] * t
        rz = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
        out[k, :3, :3] = rz @ start[:3, :3]
    return out, stamps


def render_motion(seed: int, kind: str, num_frames: int, fps: float, height: int = 240,
                  width: int = 320) -> Iterator[Frame]:
    """Frames (with ground truth) of motion ``kind`` through the room of ``seed`` (deterministic)."""
    poses, stamps = motion_poses(seed, kind, num_frames, fps)
    renderer = SceneRenderer(generate_room(seed), height, width)
    try:
        for k, (pose, stamp) in enumerate(zip(poses, stamps, strict=True)):
            yield renderer.render(pose, float(stamp), name=f"{kind}_s{seed:08d}_{k:05d}")
    finally:
        renderer.close()
