"""The camera's image motion from its pose in a fixed frame (TF), without ROS types.

Temporal sharing realigns its reference buffers by the image motion between a stream's previous frame and the
current one (``sharing/motion.py``). A robot that publishes its camera's pose in a fixed frame (``odom``) knows
that motion without looking at the images; ``temporal.motion_frame`` names the frame, and this module turns two
poses into the shift the engine takes instead of its image estimate.

* ``Transform``: a rigid transform ``parent <- child`` (``p_parent = R p_child + t``), rotation a unit quaternion
  in ROS order (x, y, z, w); composition, inverse, interpolation (slerp of the rotation, lerp of the translation,
  as tf2 interpolates).
* ``TransformBuffer``: what /tf and /tf_static said, as tf2's buffer keeps it: per child frame its parent and a
  time-ordered history (``CACHE_SECONDS``; static links hold at every time), chained through the tree to answer
  ``target <- source`` at a stamp. Like tf2 it interpolates between samples and never extrapolates: a stamp
  before a link's oldest or after its newest sample is ``TransformUnavailable`` (a lookup may wait up to a
  timeout for data still in flight). Thread-safe: the subscriptions write, the inference worker reads.
* ``image_shift``: the relative pose of the camera between two frames projected through the camera matrix into
  the engine's shift: (dy, dx) in pixels of the image ``k`` describes (the engine's input, so ``k`` is scaled to
  the inference resolution), the content's motion, ``cur(p) ~ prev(p - d)``: the contract of
  ``sharing.motion.estimate_shift`` (full-resolution pixels, the downscale already undone).

* ``PoseMotion``: one camera stream's reference (its previous frame's frame_id, stamp and scene depth) and the
  shift to the current frame: both poses ``fixed <- camera`` looked up at their own stamps, their relative pose
  projected with ``image_shift``, or why not (the caller falls back to the image estimate).

What is exact and what is approximate: the shift is the motion of the scene point on the reference frame's
optical axis at ``depth``: the median of the model's depth of the reference frame when the depth task ran, else
``NOMINAL_DEPTH``. A pure rotation moves that point by ``K R^T K^-1`` applied to the principal point, whatever
the depth: exact (a camera turning right by ``a`` about its optical y axis moves the content ``fx tan(a)``
pixels to the left, dx = -fx tan(a)); pixels off the centre move a little more, so the image estimate (a best
global translation) reads up to ~10% more on a wide lens. A translation moves points by a parallax that depends
on their depth: exact for scene points at that depth, approximate for the others, and with the nominal depth a
guess. The engine moves its references by whole tokens and the frame by the remaining whole pixels, and its
threshold recomputes what the shift does not explain (``sharing/motion.py``). Lens distortion is ignored (the
pinhole of ``K``), and the shift is only as good as the TF tree (stale odometry, a wrong extrinsic calibration).
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from mtshare_ros.runtime.stream import stamp_seconds

CACHE_SECONDS = 10.0
"""History kept per link, in seconds behind its newest sample (tf2's default)."""

NOMINAL_DEPTH = 3.0
"""Metres to the scene for the parallax of a translating camera when no depth of the reference frame is at hand
(the model's depth task off): a room's typical distance."""

STAMP_TOLERANCE = 1e-6
"""Seconds within which two stamps are the same: stamps pass through float seconds, which resolve an epoch stamp
(1.7e9 s) to 0.24 us, so one stamp computed two ways (sec + nanosec / 1e9, ns / 1e9) may differ by that."""


LOOKUP_TIMEOUT = 0.05
"""Seconds a lookup waits for a transform newer than any received yet (TF a little behind the image)."""


class TransformUnavailable(LookupError):
    """No transform for a lookup; the message says which frames and why (unknown frame, no chain, extrapolation).
    ``pending``: the stamp is after the newest data, which may still arrive."""

    def __init__(self, message: str, pending: bool = False) -> None:
        super().__init__(message)
        self.pending = pending


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of quaternions (x, y, z, w): the rotation ``b`` followed by ``a``."""
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])


def quat_matrix(q: np.ndarray) -> np.ndarray:
    """The 3x3 rotation matrix of a unit quaternion (x, y, z, w)."""
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def slerp(q0: np.ndarray, q1: np.ndarray, u: float) -> np.ndarray:
    """The rotation a fraction ``u`` of the way from ``q0`` to ``q1`` along the shorter arc (unit quaternions)."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # q and -q are one rotation: take the shorter way
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: linear, renormalised (the sine below vanishes)
        q = q0 + u * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    s = math.sin(theta)
    return (math.sin((1 - u) * theta) / s) * q0 + (math.sin(u * theta) / s) * q1


@dataclass(frozen=True)
class Transform:
    """A rigid transform ``parent <- child``: ``p_parent = R p_child + t``; ``rotation`` a unit quaternion
    (x, y, z, w), ``translation`` metres."""

    rotation: np.ndarray
    translation: np.ndarray

    @staticmethod
    def of(rotation, translation) -> Transform:
        """From any sequences (a message's fields); the quaternion is normalised."""
        q = np.asarray(rotation, dtype=np.float64)
        n = float(np.linalg.norm(q))
        if not math.isfinite(n) or n < 1e-9:
            raise ValueError(f"not a rotation quaternion: {list(q)}")
        return Transform(q / n, np.asarray(translation, dtype=np.float64).reshape(3))

    @staticmethod
    def identity() -> Transform:
        return Transform(np.array([0.0, 0.0, 0.0, 1.0]), np.zeros(3))

    def __mul__(self, other: Transform) -> Transform:
        """``(a <- b) * (b <- c) = (a <- c)``."""
        return Transform(quat_multiply(self.rotation, other.rotation),
                         self.apply(other.translation))

    def inverse(self) -> Transform:
        q = self.rotation * np.array([-1.0, -1.0, -1.0, 1.0])
        return Transform(q, -(quat_matrix(q) @ self.translation))

    def apply(self, p: np.ndarray) -> np.ndarray:
        """A point of the child frame in the parent frame."""
        return quat_matrix(self.rotation) @ np.asarray(p, dtype=np.float64) + self.translation

    def matrix(self) -> np.ndarray:
        """The 4x4 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = quat_matrix(self.rotation), self.translation
        return m


def interpolate(a: Transform, b: Transform, u: float) -> Transform:
    """The transform a fraction ``u`` of the way from ``a`` to ``b``: slerp of the rotations, lerp of the
    translations (tf2's interpolation)."""
    return Transform(slerp(a.rotation, b.rotation, u), a.translation + u * (b.translation - a.translation))


class _Link:
    """One child frame's link to its parent: a static transform, or a time-ordered history."""

    def __init__(self, parent: str, static: bool) -> None:
        self.parent, self.static = parent, static
        self.stamps: list[float] = []
        self.values: list[Transform] = []

    def add(self, stamp: float, value: Transform, keep: float) -> None:
        if self.static:
            self.stamps, self.values = [stamp], [value]
            return
        i = bisect.bisect_left(self.stamps, stamp - STAMP_TOLERANCE)
        if i < len(self.stamps) and abs(self.stamps[i] - stamp) <= STAMP_TOLERANCE:  # the same stamp again
            self.values[i] = value
        else:
            self.stamps.insert(i, stamp)
            self.values.insert(i, value)
        drop = bisect.bisect_left(self.stamps, self.stamps[-1] - keep)
        if drop:
            del self.stamps[:drop], self.values[:drop]

    def at(self, stamp: float, child: str) -> Transform:
        """``parent <- child`` at ``stamp``, interpolated; raises ``TransformUnavailable`` outside the history."""
        if self.static:
            return self.values[0]
        s = self.stamps
        i = bisect.bisect_left(s, stamp - STAMP_TOLERANCE)
        if i < len(s) and abs(s[i] - stamp) <= STAMP_TOLERANCE:
            return self.values[i]
        if i == 0 or i == len(s):
            side = "before the oldest" if i == 0 else "after the newest"
            raise TransformUnavailable(
                f"extrapolation: {stamp:.6f} s is {side} transform {self.parent} <- {child} "
                f"(history {s[0]:.6f} .. {s[-1]:.6f} s)", pending=i == len(s))
        u = (stamp - s[i - 1]) / (s[i] - s[i - 1])
        return interpolate(self.values[i - 1], self.values[i], u)


class TransformBuffer:
    """The transform tree /tf and /tf_static describe, looked up at a stamp (see the module docstring)."""

    def __init__(self, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._links: dict[str, _Link] = {}
        self._changed = threading.Condition()

    def set(self, parent: str, child: str, stamp: float, transform: Transform, static: bool = False) -> None:
        """Record ``parent <- child`` at ``stamp`` (seconds). A child given another parent starts anew (tf2 keeps
        one parent per child); a leading '/' of a frame name is dropped, as tf2 does."""
        parent, child = parent.lstrip("/"), child.lstrip("/")
        with self._changed:
            link = self._links.get(child)
            if link is None or link.parent != parent or link.static != static:
                link = self._links[child] = _Link(parent, static)
            link.add(stamp, transform, self.cache_seconds)
            self._changed.notify_all()

    def add_message(self, msg, static: bool = False) -> list[str]:
        """Record a tf2_msgs/TFMessage (rclpy's or a bag reader's: any object with its fields); returns the
        transforms dropped, as ('parent <- child', why) (a quaternion that is not a rotation)."""
        dropped = []
        for t in msg.transforms:
            r, p = t.transform.rotation, t.transform.translation
            try:
                value = Transform.of((r.x, r.y, r.z, r.w), (p.x, p.y, p.z))
            except ValueError as exc:
                dropped.append((f"{t.header.frame_id} <- {t.child_frame_id}", str(exc)))
                continue
            self.set(t.header.frame_id, t.child_frame_id, stamp_seconds(t.header.stamp), value, static)
        return dropped

    def frames(self) -> set[str]:
        with self._changed:
            return set(self._links) | {link.parent for link in self._links.values()}

    def _root_path(self, frame: str, stamp: float) -> dict[str, Transform]:
        """Every ancestor of ``frame`` (itself included) with ``ancestor <- frame`` at ``stamp``."""
        out = {frame: Transform.identity()}
        acc, f = Transform.identity(), frame
        while f in self._links:
            link = self._links[f]
            acc = link.at(stamp, f) * acc
            f = link.parent
            if f in out:
                raise TransformUnavailable(f"the transform tree has a loop through {f!r}")
            out[f] = acc
        return out

    def _lookup(self, target: str, source: str, stamp: float) -> Transform:
        known = self.frames()
        for f in (target, source):
            if f not in known:
                raise TransformUnavailable(f"frame {f!r} does not exist (no transform names it)")
        up_source = self._root_path(source, stamp)
        acc, f = Transform.identity(), target
        while f not in up_source:  # walk up from the target to the first common ancestor
            link = self._links.get(f)
            if link is None:
                raise TransformUnavailable(f"frames {target!r} and {source!r} are not connected (no common parent)")
            acc = link.at(stamp, f) * acc
            f = link.parent
        return acc.inverse() * up_source[f]  # (target <- common) * (common <- source)

    def lookup(self, target: str, source: str, stamp: float, timeout: float = 0.0) -> Transform:
        """``target <- source`` at ``stamp`` (seconds); waits up to ``timeout`` seconds for data newer than any
        received (only then: an unknown frame fails at once). Raises ``TransformUnavailable`` naming the frames
        and the reason."""
        target, source = target.lstrip("/"), source.lstrip("/")
        end = time.monotonic() + timeout
        with self._changed:
            while True:
                try:
                    return self._lookup(target, source, stamp)
                except TransformUnavailable as exc:
                    left = end - time.monotonic()
                    if left <= 0 or not exc.pending:
                        raise
                    self._changed.wait(left)


def relative_pose(reference: Transform, current: Transform) -> Transform:
    """``current_camera <- reference_camera`` from both cameras' poses ``fixed <- camera``: it maps points of the
    reference camera's frame into the current one's."""
    return current.inverse() * reference


def image_shift(motion: Transform, k: np.ndarray, depth: float = NOMINAL_DEPTH) -> tuple[float, float] | None:
    """The image motion (dy, dx) in pixels of the image camera matrix ``k`` describes, for a camera that moved by
    ``motion`` (``current <- reference``, REP 103 optical frames: z forward, x right, y down): where the scene
    point on the reference optical axis at ``depth`` metres appears now, minus the principal point (the module
    docstring says what is exact). None when that point is behind the current camera."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = motion.apply(np.array([0.0, 0.0, float(depth)]))
    if p[2] <= 1e-6 * depth:
        return None
    u, v = k[0, 0] * p[0] / p[2] + k[0, 1] * p[1] / p[2], k[1, 1] * p[1] / p[2]
    return float(v), float(u)


class PoseMotion:
    """One camera stream's image motion from TF: the reference (the stream's previous frame: its frame_id, stamp
    and scene depth) and, per frame, the shift since it (``shift``), or why there is none."""

    def __init__(self, buffer: TransformBuffer) -> None:
        self.buffer = buffer
        self._reference: tuple[str, float, float] | None = None
        self._timeout = LOOKUP_TIMEOUT

    def reset(self) -> None:
        """A new stream: no reference until the next frame."""
        self._reference = None

    def shift(self, fixed_frame: str, frame_id: str, stamp: float, k: np.ndarray) -> tuple[tuple[float, float] | None,
                                                                                             str]:
        """The image motion (dy, dx) in pixels of ``k``'s image from the reference to the frame ``frame_id`` at
        ``stamp`` through the camera's poses in ``fixed_frame``; (None, '') without a reference, (None, why) when a
        transform is unavailable. After a failure the next lookups do not wait for late data (a tree that never
        has it would cost every frame the wait)."""
        if self._reference is None:
            return None, ""
        ref_frame, ref_stamp, depth = self._reference
        if ref_frame != frame_id:
            return None, ""
        try:
            current = self.buffer.lookup(fixed_frame, frame_id, stamp, self._timeout)
            reference = self.buffer.lookup(fixed_frame, frame_id, ref_stamp)
        except TransformUnavailable as exc:
            self._timeout = 0.0
            return None, f"no transform {fixed_frame} <- {frame_id}: {exc}"
        self._timeout = LOOKUP_TIMEOUT
        shift = image_shift(relative_pose(reference, current), k, depth)
        return shift, "" if shift is not None else "the reference's scene point is behind the camera now"

    def advance(self, frame_id: str, stamp: float, depth: float | None) -> None:
        """This frame is the next one's reference; ``depth``: its scene depth (metres; None: ``NOMINAL_DEPTH``)."""
        ok = depth is not None and math.isfinite(depth) and depth > 0
        self._reference = (frame_id, stamp, float(depth) if ok else NOMINAL_DEPTH)
