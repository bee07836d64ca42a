"""Camera geometry shared by the renderer, the tests and the loaders.

Conventions (REP 103 optical frame): x right, y down, z forward. Poses are camera-to-world 4x4 matrices
whose rotation columns are the optical axes expressed in the world frame. MuJoCo cameras look along
their local -z with y up, so ``R_optical = R_mujoco @ diag(1, -1, -1)``.
"""

from __future__ import annotations

import math

import numpy as np

MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


def intrinsics_from_fovy(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """Pinhole matrix of a MuJoCo camera: square pixels, principal point at the image centre."""
    fy = height / (2.0 * math.tan(math.radians(fovy_deg) / 2.0))
    return np.array([[fy, 0.0, width / 2.0 - 0.5], [0.0, fy, height / 2.0 - 0.5], [0.0, 0.0, 1.0]])


def look_rotation(yaw: float, pitch: float, roll: float = 0.0) -> np.ndarray:
    """Optical-frame rotation (columns x right, y down, z forward) for a camera in a z-up world.

    ``yaw`` turns the viewing direction about world z (0 looks along +x), ``pitch`` tilts it up (positive)
    or down, ``roll`` rotates the image about the viewing direction.
    """
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    forward = np.array([cp * cy, cp * sy, sp])
    right = np.array([sy, -cy, 0.0])
    down = np.cross(forward, right)
    cr, sr = math.cos(roll), math.sin(roll)
    right, down = cr * right + sr * down, -sr * right + cr * down
    return np.stack([right, down, forward], axis=1)


def pixel_rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Per-pixel ray directions in the optical frame with unit z (so depth * ray = 3D point), (H, W, 3)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def backproject(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """3D points in the optical frame (H, W, 3) from z-depth."""
    return pixel_rays(K, *depth.shape) * depth[..., None]


def normals_from_depth(depth: np.ndarray, K: np.ndarray, max_rel_jump: float = 0.03, step: int = 1) -> np.ndarray:
    """Surface normals in the optical frame from z-depth by central differences ``step`` pixels either side.

    Why: a cheap, geometry-free reference (tests, real data without normals: there a step of ~3 px on a
    median-filtered depth averages out the sensor's quantisation). Pixels whose neighbours are invalid or jump by
    more than ``max_rel_jump`` of the depth beyond the planar prediction (a depth discontinuity) get an all-zero
    normal, and so do the ``step`` pixels at the border. Normals face the camera.
    """
    h, w = depth.shape
    s = int(step)
    if s < 1 or 2 * s >= min(h, w):
        raise ValueError(f"normals_from_depth: step {step} must be >= 1 and leave pixels inside {h}x{w}")
    pts = backproject(depth, K)
    normals = np.zeros((h, w, 3), dtype=np.float32)
    valid = depth > 0
    c = (slice(s, -s), slice(s, -s))
    left, right = pts[s:-s, : -2 * s], pts[s:-s, 2 * s :]
    up, down = pts[: -2 * s, s:-s], pts[2 * s :, s:-s]
    dl, dr, du, dd = depth[s:-s, : -2 * s], depth[s:-s, 2 * s :], depth[: -2 * s, s:-s], depth[2 * s :, s:-s]
    d0 = depth[c]
    ok = valid[c] & (dl > 0) & (dr > 0) & (du > 0) & (dd > 0)
    # Second differences vanish on planes (in inverse depth, exactly; in depth, nearly): large ones are edges.
    inv = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-9), 0.0)
    i0, il, ir = inv[c], inv[s:-s, : -2 * s], inv[s:-s, 2 * s :]
    iu, idn = inv[: -2 * s, s:-s], inv[2 * s :, s:-s]
    with np.errstate(divide="ignore", invalid="ignore"):
        curv_x = np.abs(il + ir - 2 * i0) / np.maximum(i0, 1e-9)
        curv_y = np.abs(iu + idn - 2 * i0) / np.maximum(i0, 1e-9)
    ok &= (curv_x < max_rel_jump) & (curv_y < max_rel_jump)
    ok &= (np.abs(dr - dl) < 0.5 * d0 + 0.05) & (np.abs(dd - du) < 0.5 * d0 + 0.05)
    n = np.cross(right - left, down - up)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    n = np.where(norm > 0, n / np.maximum(norm, 1e-12), 0.0)
    facing = np.sum(n * pts[c], axis=-1, keepdims=True) > 0
    n = np.where(facing, -n, n)
    normals[c] = np.where(ok[..., None], n, 0.0).astype(np.float32)
    return normals


def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix (MuJoCo's convention)."""
    from mtshare_ros.data.mujoco_gl import import_mujoco

    mujoco = import_mujoco()
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(R, dtype=np.float64).reshape(9))
    return q
