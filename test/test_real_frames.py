"""The real-frames loader (mtshare_ros/data/rgbd_frames.py) on a tiny folder this test writes in the 7-Scenes
layout: planes whose normals and depths are known exactly, uint16 millimetre depth with holes and the sensor's
65535 marker, intrinsics from camera-intrinsics.txt, and the frame range honoured."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mtshare_ros.data.rgbd_frames import RGBDFrames, real_normals

H, W = 96, 128
K = np.array([[110.0, 0.0, 64.0], [0.0, 110.0, 48.0], [0.0, 0.0, 1.0]])


def plane_depth(normal: np.ndarray, offset: float) -> np.ndarray:
    """z-depth (m) of the plane n . X = offset seen through K (every pixel's ray hits it in front)."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    return offset / (rays @ normal)


def write_frame(root: Path, i: int, depth_m: np.ndarray, holes: bool = False, rgb: np.ndarray | None = None) -> None:
    """Frame ``i`` in the 7-Scenes layout: JPEG colour (``rgb``, default noise) and uint16 millimetre depth, with
    ``holes`` a block of 0 and one of the sensor's 65535 marker, both invalid."""
    mm = np.round(depth_m * 1000.0).astype(np.uint16)
    if holes:
        mm[10:20, 10:20] = 0
        mm[30:34, 60:64] = 65535
    if rgb is None:
        rgb = np.random.default_rng(i).integers(0, 255, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(root / f"frame-{i:06d}.color.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(root / f"frame-{i:06d}.depth.png"), mm)


TILTED = np.array([0.0, -np.sin(0.6), -np.cos(0.6)])  # facing the camera, tilted about x (a floor seen ahead)


@pytest.fixture()
def folder(tmp_path):
    np.savetxt(tmp_path / "camera-intrinsics.txt", K)
    for i in range(6):
        write_frame(tmp_path, i, plane_depth(TILTED, -2.0), holes=i == 0)
    write_frame(tmp_path, 600, np.full((H, W), 1.5))  # outside the default range
    return tmp_path


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def test_normals_of_a_tilted_plane_are_its_normal(folder):
    mm = cv2.imread(str(folder / "frame-000001.depth.png"), cv2.IMREAD_UNCHANGED)
    n = real_normals(mm, K)
    valid = np.linalg.norm(n, axis=-1) > 0.5
    assert valid[3:-3, 3:-3].mean() > 0.95  # only the border (step 3) lacks neighbours
    assert not valid[:3].any() and not valid[:, -3:].any()
    # millimetre quantisation over 3 px is the only error: well under a degree at 2 m
    assert np.percentile(angle_deg(n[valid], TILTED), 99) < 2.0


def test_holes_and_jumps_are_masked(folder):
    mm = cv2.imread(str(folder / "frame-000000.depth.png"), cv2.IMREAD_UNCHANGED)
    n = real_normals(mm, K)
    assert not (np.linalg.norm(n[10:20, 10:20], axis=-1) > 0).any()  # 0 = invalid
    assert not (np.linalg.norm(n[30:34, 60:64], axis=-1) > 0).any()  # 65535 = invalid
    step = mm.copy()
    step[:, 64:] += 600  # a depth discontinuity (an object edge)
    ns = real_normals(step, K)
    assert not (np.linalg.norm(ns[:, 62:66], axis=-1) > 0).any()
    assert (np.linalg.norm(ns[:, 40:56], axis=-1) > 0).mean() > 0.9


def test_frames_depth_and_focal_at_the_output_size(folder):
    ds = RGBDFrames(folder, (48, 64), first=0, last=599, every=2)
    assert ds.ids == [0, 2, 4]  # frame 600 is outside 0-599
    s = ds[0]
    assert s["image"].shape == (3, 48, 64) and s["depth"].shape == (48, 64) and s["normals"].shape == (3, 48, 64)
    assert float(s["focal"]) == pytest.approx(110.0 * 64 / W)  # fx scaled with the image
    d = s["depth"].numpy()
    assert (d[5:10, 5:10] == 0).all()  # the hole stays invalid through the resize
    ref = plane_depth(TILTED, -2.0)[::2, ::2]
    ok = d > 0
    assert np.abs(d[ok] - ref[ok]).max() < 0.01  # nearest-neighbour resize: stored millimetres, no blending
    with pytest.raises(FileNotFoundError):
        RGBDFrames(folder, (48, 64), first=700, last=800)
