"""Smooth camera trajectories through a room, like a mobile robot or a person carrying a camera.

The path visits waypoints in free floor space (clear of furniture by a margin), is smoothed with a
Catmull-Rom spline, and is traversed with a speed profile that accelerates, slows in curves and stops
at some waypoints (where the camera pans). Orientation follows the path with look-around motions; the
hand-held mode adds walking bob, sway and roll.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mtshare_ros.data.floor_map import GRID_RES
from mtshare_ros.data.geometry import look_rotation
from mtshare_ros.data.room import Room


@dataclass(frozen=True)
class MotionStyle:
    name: str
    speed: tuple[float, float]  # cruise speed range, m/s
    height: tuple[float, float]  # camera height range, m
    pitch: tuple[float, float]  # base pitch range, rad (negative looks down)
    look_amplitude: float  # rad, slow look-around while moving
    bob: float  # m, vertical walking bob
    roll: float  # rad, slow roll amplitude
    clearance: float  # m, minimum distance to furniture and walls


# Heights, pitch and roll span low wheeled robots to head-height cameras, so models meet the views they will
# be mounted at (a camera's mount is also tilted by up to MOUNT_ROLL about its optical axis).
ROBOT = MotionStyle("robot", (0.3, 0.8), (0.25, 1.3), (-0.4, 0.1), math.radians(12), 0.002, math.radians(0.3), 0.4)
HANDHELD = MotionStyle("handheld", (0.5, 1.3), (1.0, 1.85), (-0.5, 0.15), math.radians(30), 0.015,
                       math.radians(4), 0.35)
MOUNT_ROLL = math.radians(6)

ACCEL = 0.6  # m/s^2 along the path
LATERAL_ACCEL = 0.5  # m/s^2 in curves
PAN_RATE = math.radians(60)  # rad/s, peak turn rate of a pan while standing
PLAN_HORIZON = 30.0  # s, shortest planned motion (see camera_trajectory)
MAX_TURN_RATE = math.radians(90)  # rad/s, turning on the spot (path reversals) is capped to this


def _cell_centre(iy: int, ix: int) -> np.ndarray:
    return np.array([(ix + 0.5) * GRID_RES, (iy + 0.5) * GRID_RES])


def _segment_free(allowed: np.ndarray, a: np.ndarray, b: np.ndarray) -> bool:
    n = max(2, int(np.linalg.norm(b - a) / (GRID_RES / 2)))
    pts = a + (b - a) * np.linspace(0, 1, n)[:, None]
    ix = np.clip((pts[:, 0] / GRID_RES).astype(int), 0, allowed.shape[1] - 1)
    iy = np.clip((pts[:, 1] / GRID_RES).astype(int), 0, allowed.shape[0] - 1)
    return bool(allowed[iy, ix].all())


def _allowed_cells(room: Room, style: MotionStyle) -> tuple[np.ndarray, float]:
    for margin in (style.clearance, 0.35, 0.25, 0.15, 0.0):
        allowed = room.clearance >= margin
        if allowed.sum() >= 30:
            return allowed, margin
    return room.clearance >= room.clearance.max(), 0.0


def _waypoints(allowed: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    cells = np.argwhere(allowed)
    start = _cell_centre(*cells[rng.integers(len(cells))])
    points, heading, total = [start], None, 0.0
    while total < length and len(points) < 200:
        cur = points[-1]
        best = None
        for _ in range(60):
            cand = _cell_centre(*cells[rng.integers(len(cells))])
            step = cand - cur
            dist = float(np.linalg.norm(step))
            if not 0.7 <= dist <= 3.5 or not _segment_free(allowed, cur, cand):
                continue
            turn = 0.0 if heading is None else abs(math.remainder(math.atan2(step[1], step[0]) - heading, 2 * math.pi))
            score = turn + rng.uniform(0, 0.8)
            if best is None or score < best[0]:
                best = (score, cand, dist)
        if best is None:
            break
        _, cand, dist = best
        heading = math.atan2(*(cand - cur)[::-1])
        points.append(cand)
        total += dist
    if len(points) == 1:  # nowhere to go: a tiny shuffle on the spot
        points.append(start + np.array([0.05, 0.0]))
    return np.array(points)


def _catmull_rom(points: np.ndarray, spacing: float = 0.01) -> np.ndarray:
    """Centripetal Catmull-Rom through ``points``, resampled roughly every ``spacing`` metres."""
    p = np.concatenate([points[:1] * 2 - points[1:2], points, points[-1:] * 2 - points[-2:-1]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        t0 = 0.0
        t1 = t0 + max(np.linalg.norm(p1 - p0), 1e-6) ** 0.5
        t2 = t1 + max(np.linalg.norm(p2 - p1), 1e-6) ** 0.5
        t3 = t2 + max(np.linalg.norm(p3 - p2), 1e-6) ** 0.5
        n = max(2, int(np.linalg.norm(p2 - p1) / spacing))
        t = np.linspace(t1, t2, n, endpoint=False)[:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    out.append(points[-1:])
    return np.concatenate(out)


def _path(room: Room, style: MotionStyle, length: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dense smooth path (N, 2) and the indices along it of the waypoints."""
    allowed, margin = _allowed_cells(room, style)
    way = _waypoints(allowed, length, rng)
    smooth = _catmull_rom(way)
    relaxed = room.clearance >= 0.6 * margin
    ok = all(_segment_free(relaxed, a, b) for a, b in zip(smooth[:-1:10], smooth[10::10], strict=False))
    if ok:
        dense = smooth
    else:  # the spline cut a corner too close to furniture: follow the straight segments instead
        pieces = [np.linspace(a, b, max(2, int(np.linalg.norm(b - a) / 0.01)), endpoint=False)
                  for a, b in zip(way[:-1], way[1:], strict=True)]
        dense = np.concatenate(pieces + [way[-1:]])
    # Waypoint positions along the dense path (nearest dense point to each waypoint).
    idx = np.array([int(np.argmin(np.linalg.norm(dense - w, axis=1))) for w in way])
    return dense, np.maximum.accumulate(idx)


def _speed_profile(dense: np.ndarray, stops: np.ndarray, vmax: float) -> np.ndarray:
    """Speed at each dense point: curvature- and acceleration-limited, zero at stops and the ends."""
    seg = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    heading = np.unwrap(np.arctan2(*np.diff(dense, axis=0).T[::-1]))
    curv = np.abs(np.gradient(heading)) / np.maximum(seg, 1e-6)
    width = min(15, len(curv))
    curv = np.convolve(curv, np.ones(width) / width, mode="same")
    vlim = np.minimum(vmax, np.sqrt(LATERAL_ACCEL / np.maximum(curv, 1e-6)))
    vlim = np.concatenate([vlim, [0.0]])
    vlim[0] = 0.0
    vlim[stops] = 0.0
    v = vlim.copy()
    for i in range(1, len(v)):
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * ACCEL * seg[i - 1]))
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * ACCEL * seg[i]))
    return v


def _smooth_noise(t: np.ndarray, amplitude: float, rng: np.random.Generator, fmin=0.05, fmax=0.35) -> np.ndarray:
    out = np.zeros_like(t)
    for _ in range(3):
        f, ph = rng.uniform(fmin, fmax), rng.uniform(0, 2 * math.pi)
        out += np.sin(2 * math.pi * f * t + ph) * rng.uniform(0.3, 1.0)
    return amplitude * out / 2.0


def _gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(x) < 3:
        return x
    r = int(3 * sigma) + 1
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return np.convolve(np.pad(x, r, mode="edge"), k, mode="valid")


def _rate_limited(angle: np.ndarray, max_step: float) -> np.ndarray:
    """Follow ``angle`` with at most ``max_step`` change per sample, then smooth the corners of the result."""
    out = angle.copy()
    for k in range(1, len(out)):
        out[k] = out[k - 1] + np.clip(angle[k] - out[k - 1], -max_step, max_step)
    return _gaussian_smooth(out, 2.0)


def camera_trajectory(room: Room, num_frames: int, fps: float, rng: np.random.Generator,
                      style: MotionStyle | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Poses (num_frames, 4, 4) camera-to-world (optical frame) and stamps (s) for one sequence.

    The motion is planned for at least PLAN_HORIZON seconds whatever ``num_frames`` is, so a shorter
    sequence is a prefix of a longer one with the same generator state.
    """
    requested = num_frames
    num_frames = max(num_frames, int(math.ceil(PLAN_HORIZON * fps)))
    style = style or (ROBOT if rng.uniform() < 0.5 else HANDHELD)
    duration = num_frames / fps
    vmax = float(rng.uniform(*style.speed))
    dense, way_idx = _path(room, style, vmax * duration * 0.8 + 1.0, rng)
    stop_mask = rng.uniform(size=len(way_idx)) < 0.35
    stop_mask[0] = stop_mask[-1] = False
    stops = way_idx[stop_mask]
    v = _speed_profile(dense, stops, vmax)
    seg = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    dt = seg / np.maximum(0.5 * (v[1:] + v[:-1]), 0.03)
    times = np.concatenate([[0.0], np.cumsum(dt)])
    # Dwell at stops (and briefly at the start): shift everything after them by the dwell time.
    dwell = np.zeros(len(dense))
    dwell[0] = float(rng.uniform(0.0, 0.6))
    dwell_len = rng.uniform(0.6, 2.0, size=len(stops))
    dwell[stops] += dwell_len
    times = times + np.cumsum(dwell) - dwell  # arrival time at each dense point
    depart = times + dwell
    stamps = np.arange(num_frames) / fps
    # Position along the path at each stamp: hold during dwell, interpolate while moving.
    knots_t = np.ravel(np.column_stack([times, depart]))
    knots_i = np.repeat(np.arange(len(dense), dtype=np.float64), 2)
    knots_t = np.maximum.accumulate(knots_t + np.arange(len(knots_t)) * 1e-9)
    s_idx = np.interp(stamps, knots_t, knots_i)
    i0 = np.clip(np.floor(s_idx).astype(int), 0, len(dense) - 1)
    i1 = np.clip(i0 + 1, 0, len(dense) - 1)
    frac = (s_idx - i0)[:, None]
    xy = dense[i0] * (1 - frac) + dense[i1] * frac
    # Heading along the path, smoothed in time, plus look-around and pans at stops.
    tangent = np.diff(dense, axis=0, append=dense[-1:] * 2 - dense[-2:-1])
    path_yaw = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
    heading = np.interp(s_idx, np.arange(len(dense)), path_yaw)
    # Look partly towards the middle of the room, as people and robots look where things are rather than
    # at the wall they are walking along.
    to_centre = np.array(room.size[:2]) / 2 - xy
    # (weight < 1: the blend stays within 60 deg of the heading and never flips sides.)
    centre_w = float(rng.uniform(0.3, 0.85)) * np.clip(np.linalg.norm(to_centre, axis=1) / 1.5, 0, 1)
    look = np.stack([np.cos(heading), np.sin(heading)], 1) + centre_w[:, None] * to_centre / np.maximum(
        np.linalg.norm(to_centre, axis=1, keepdims=True), 1e-6)
    yaw = heading + np.angle(np.exp(1j * (np.arctan2(look[:, 1], look[:, 0]) - heading)))
    yaw = _gaussian_smooth(yaw, 0.35 * fps)
    yaw = yaw + _smooth_noise(stamps, style.look_amplitude, rng)
    for start, length in zip(times[stops], dwell_len, strict=False):
        u = np.clip((stamps - start) / length, 0.0, 1.0)
        # Pan left or right and back; the peak turn rate stays below ~60 deg/s.
        amplitude = min(1.1, PAN_RATE * length / math.pi)
        yaw += float(rng.uniform(-amplitude, amplitude)) * np.sin(math.pi * u) ** 2
    yaw = _rate_limited(yaw, MAX_TURN_RATE / fps)
    speed = np.gradient(s_idx) * fps * 0.01
    height = float(rng.uniform(*style.height))
    step = 2 * math.pi * 1.8 * stamps
    z = height + style.bob * np.sin(step) * np.clip(speed / max(vmax, 1e-6), 0, 1)
    z = z + _smooth_noise(stamps, style.bob, rng, 0.1, 0.5)
    pitch = float(rng.uniform(*style.pitch)) + _smooth_noise(stamps, 0.5 * style.look_amplitude, rng)
    roll = _smooth_noise(stamps, style.roll, rng, 0.1, 0.6) + float(rng.uniform(-MOUNT_ROLL, MOUNT_ROLL))
    sway = style.bob * 0.5 * np.sin(step / 2)
    poses = np.repeat(np.eye(4)[None], num_frames, axis=0)
    for k in range(num_frames):
        R = look_rotation(float(yaw[k]), float(pitch[k]), float(roll[k]))
        poses[k, :3, :3] = R
        poses[k, :3, 3] = [xy[k, 0], xy[k, 1], z[k]]
        poses[k, :3, 3] += R[:, 0] * sway[k]
    return poses[:requested], stamps[:requested]
