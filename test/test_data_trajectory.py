"""Camera trajectories: walking-speed motion, smooth turns, stops, and never inside furniture or walls."""

from __future__ import annotations

import numpy as np
import pytest

from mtshare_ros.data.floor_map import GRID_RES
from mtshare_ros.data.scene import generate_room
from mtshare_ros.data.trajectory import HANDHELD, ROBOT, camera_trajectory

FPS = 15.0


@pytest.mark.parametrize("style", [ROBOT, HANDHELD], ids=lambda s: s.name)
def test_trajectory_is_smooth_and_clear(style):
    stopped, speeds = 0, []
    for seed in range(5):
        room = generate_room(seed)
        poses, stamps = camera_trajectory(room, 150, FPS, np.random.default_rng(seed), style=style)
        assert poses.shape == (150, 4, 4) and np.allclose(np.diff(stamps), 1 / FPS)
        R = poses[:, :3, :3]
        assert np.allclose(np.einsum("nij,nkj->nik", R, R), np.eye(3), atol=1e-9)
        assert np.allclose(np.linalg.det(R), 1.0)
        xy, z = poses[:, :2, 3], poses[:, 2, 3]
        speed = np.linalg.norm(np.diff(xy, axis=0), axis=1) * FPS
        speeds.append(speed)
        assert speed.max() < style.speed[1] + 0.2  # walking pace, no jumps
        accel = np.abs(np.diff(speed)) * FPS
        assert np.percentile(accel, 95) < 3.0
        stopped += int((speed < 0.02).sum() > 3)
        # Viewing direction turns smoothly (no snaps): at most ~90 deg/s.
        fwd = R[:, :, 2]
        turn = np.degrees(np.arccos(np.clip(np.sum(fwd[1:] * fwd[:-1], axis=1), -1, 1))) * FPS
        assert turn.max() < 120.0
        assert (z > style.height[0] - 0.05).all() and (z < style.height[1] + 0.05).all()
        assert (z < room.size[2] - 0.3).all()
        # Clear of furniture and walls on the floor map.
        ix = np.clip((xy[:, 0] / GRID_RES).astype(int), 0, room.clearance.shape[1] - 1)
        iy = np.clip((xy[:, 1] / GRID_RES).astype(int), 0, room.clearance.shape[0] - 1)
        assert room.clearance[iy, ix].min() > 0.1
    all_speed = np.concatenate(speeds)
    assert np.median(all_speed) > 0.2  # it does move
    assert stopped >= 1  # and sometimes stops


def test_trajectory_deterministic():
    room = generate_room(2)
    a, _ = camera_trajectory(room, 40, FPS, np.random.default_rng(9))
    b, _ = camera_trajectory(room, 40, FPS, np.random.default_rng(9))
    assert np.array_equal(a, b)
    single, _ = camera_trajectory(room, 1, FPS, np.random.default_rng(9))
    assert single.shape == (1, 4, 4)
    # A shorter sequence is a prefix of a longer one.
    assert np.array_equal(single[0], a[0])
    longer, _ = camera_trajectory(room, 600, FPS, np.random.default_rng(9))
    assert longer.shape == (600, 4, 4)
