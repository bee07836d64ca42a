"""Behaviour of the MuJoCo synthetic renderer: determinism, geometric correctness of depth and normals, labels."""

from __future__ import annotations

import numpy as np
import pytest

from mtshare_ros.classes import IGNORE_INDEX, SYNTHETIC_CLASSES
from mtshare_ros.data.geometry import normals_from_depth, pixel_rays
from mtshare_ros.data.renderer import SceneRenderer
from mtshare_ros.data.scene import generate_room
from mtshare_ros.data.synthetic import render_sequence
from mtshare_ros.data.trajectory import camera_trajectory

H, W = 60, 80


@pytest.fixture(scope="module")
def frames():
    return list(render_sequence(3, 4, H, W, fps=15.0))


def test_frame_contents_and_types(frames):
    f = frames[0]
    assert f.rgb.shape == (H, W, 3) and f.rgb.dtype == np.uint8
    assert f.depth.shape == (H, W) and f.depth.dtype == np.float32
    assert f.segmentation.dtype == np.uint8 and f.instance.dtype == np.uint16
    assert f.normals.shape == (H, W, 3) and f.normals.dtype == np.float32
    assert f.K.shape == (3, 3) and f.pose.shape == (4, 4)
    assert np.allclose(f.pose[:3, :3] @ f.pose[:3, :3].T, np.eye(3), atol=1e-6)
    valid = np.linalg.norm(f.normals, axis=-1) > 0
    assert valid.mean() > 0.9
    assert np.allclose(np.linalg.norm(f.normals[valid], axis=-1), 1.0, atol=1e-4)
    assert ((f.segmentation < len(SYNTHETIC_CLASSES)) | (f.segmentation == IGNORE_INDEX)).all()
    # Depth is valid wherever a class is drawn (closed rooms have no background).
    assert (f.depth[f.segmentation != IGNORE_INDEX] > 0).all()
    stamps = [fr.stamp for fr in frames]
    assert np.allclose(np.diff(stamps), 1 / 15.0)


def test_same_seed_same_frames(frames):
    again = list(render_sequence(3, 2, H, W, fps=15.0))
    for a, b in zip(frames[:2], again, strict=False):
        assert np.array_equal(a.rgb, b.rgb)
        assert np.array_equal(a.depth, b.depth)
        assert np.array_equal(a.segmentation, b.segmentation)
        assert np.array_equal(a.normals, b.normals)
        assert np.array_equal(a.pose, b.pose)
    other = next(render_sequence(4, 1, H, W))
    assert not np.array_equal(other.rgb, frames[0].rgb)


def _renderer_with_views(seed: int, n: int, h: int = 120, w: int = 160):
    room = generate_room(seed)
    poses, stamps = camera_trajectory(room, n, 5.0, np.random.default_rng(seed))
    return SceneRenderer(room, h, w), poses, stamps


def test_depth_matches_ray_casting():
    renderer, poses, stamps = _renderer_with_views(7, 3)
    rng = np.random.default_rng(0)
    with renderer:
        for pose, t in zip(poses, stamps, strict=False):
            f = renderer.render(pose, float(t))
            rays = pixel_rays(f.K, *f.depth.shape).reshape(-1, 3)
            idx = rng.choice(rays.shape[0], 400, replace=False)
            unit = rays[idx] / np.linalg.norm(rays[idx], axis=1, keepdims=True)
            dist, geom, _ = renderer.ray_cast(f.pose, unit)
            z = dist * unit[:, 2]  # distance along the ray -> depth along the optical axis
            depth = f.depth.reshape(-1)[idx]
            ok = (depth > 0) & (geom >= 0)
            err = np.abs(z[ok] - depth[ok])
            assert ok.mean() > 0.95
            # Silhouette pixels may hit a neighbouring object; the bulk must agree to a millimetre.
            assert np.median(err) < 1e-3 and np.mean(err < 5e-3) > 0.9


def test_normals_match_depth_normals_on_planes():
    renderer, poses, stamps = _renderer_with_views(8, 2)
    with renderer:
        for pose, t in zip(poses, stamps, strict=False):
            f = renderer.render(pose, float(t))
            ref = normals_from_depth(f.depth, f.K)
            both = (np.linalg.norm(ref, axis=-1) > 0) & (np.linalg.norm(f.normals, axis=-1) > 0)
            # Planar regions: wall, floor and ceiling pixels whose 3x3 neighbourhood shows the same object.
            inst = np.pad(f.instance, 1, mode="edge")
            same = np.ones_like(both)
            for dy in range(3):
                for dx in range(3):
                    same &= inst[dy:dy + f.instance.shape[0], dx:dx + f.instance.shape[1]] == f.instance
            planar = both & same & np.isin(f.segmentation, [0, 1, 2])
            assert planar.sum() > 1000
            cos = np.sum(ref[planar] * f.normals[planar], axis=-1)
            angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
            assert np.median(angle) < 0.5 and np.mean(angle < 3.0) > 0.97
            # Floor normals point up in the world: optical -> world via the pose.
            floor = both & (f.segmentation == 1)
            if floor.any():
                up = f.normals[floor] @ f.pose[:3, :3].T
                assert np.median(up[:, 2]) > 0.999


def test_class_coverage_across_rooms():
    seen: set[int] = set()
    for seed in range(6):
        room = generate_room(seed)
        seen |= {cls for cls, _ in room.labels.values()}
    # Every documented class is generated somewhere in a few rooms.
    assert seen == set(range(len(SYNTHETIC_CLASSES)))


def test_moving_objects_move():
    for seed in range(10):
        room = generate_room(seed)
        if room.movers:
            break
    else:
        pytest.fail("no room with moving objects in seeds 0..9")
    mover = room.movers[0]
    poses = [np.concatenate(mover.pose(t)) for t in np.linspace(0, mover.period, 7)]
    assert max(np.abs(p - poses[0]).max() for p in poses) > 0.05


def test_osmesa_backend_renders_the_same_frame(tmp_path):
    """The OSMesa fallback (separate process: the backend is fixed at import) gives the same labels and depth."""
    import os
    import subprocess
    import sys

    out = tmp_path / "osmesa.npz"
    code = ("import numpy as np; from mtshare_ros.data.synthetic import render_sequence; "
            f"f = next(render_sequence(3, 1, {H}, {W})); "
            f"np.savez(r'{out}', rgb=f.rgb, depth=f.depth, seg=f.segmentation)")
    env = dict(os.environ, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    other = np.load(out)
    here = next(render_sequence(3, 1, H, W))
    assert np.array_equal(other["seg"], here.segmentation)
    assert np.allclose(other["depth"], here.depth, atol=1e-4)
    assert np.abs(other["rgb"].astype(int) - here.rgb).mean() < 2.0
