"""runtime/tf_motion.py: rigid transforms, the TF buffer's chaining and interpolation, and the projection of a
camera's motion into the image shift the engine takes (checked against the image estimator on a rendered pan)."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from mtshare_ros.runtime.tf_motion import (
    PoseMotion,
    Transform,
    TransformBuffer,
    TransformUnavailable,
    image_shift,
    quat_matrix,
    relative_pose,
    slerp,
)

K = np.array([[300.0, 0.0, 159.5], [0.0, 310.0, 119.5], [0.0, 0.0, 1.0]])


def _axis(axis: str, angle: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of a rotation by ``angle`` about a coordinate axis."""
    v = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1)}[axis]
    return np.array([*(math.sin(angle / 2) * np.array(v, float)), math.cos(angle / 2)])


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def _from_matrix(m: np.ndarray) -> Transform:
    from mtshare_ros.data.geometry import quat_from_matrix

    w, x, y, z = quat_from_matrix(m[:3, :3])
    return Transform.of((x, y, z, w), m[:3, 3])


def _close(a: Transform, b: Transform, tol: float = 1e-9) -> bool:
    return np.allclose(a.matrix(), b.matrix(), atol=tol)


# ------------------------------------------------------------------------------------------------ transforms
@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_quaternions_are_the_rotation_matrices(axis):
    assert np.allclose(quat_matrix(_axis(axis, 0.7)), _rot(axis, 0.7), atol=1e-12)


def test_composition_and_inverse_are_the_matrices():
    a = Transform.of(_axis("z", 0.4), (1.0, -2.0, 0.5))
    b = Transform.of(slerp(_axis("x", 1.1), _axis("y", -0.3), 0.5), (0.2, 0.3, -0.7))
    assert np.allclose((a * b).matrix(), a.matrix() @ b.matrix(), atol=1e-12)
    assert np.allclose(a.inverse().matrix(), np.linalg.inv(a.matrix()), atol=1e-12)
    assert _close(a * a.inverse(), Transform.identity())
    with pytest.raises(ValueError, match="not a rotation"):
        Transform.of((0, 0, 0, 0), (0, 0, 0))


def test_slerp_turns_at_a_constant_rate_along_the_shorter_arc():
    for u in (0.0, 0.25, 0.5, 1.0):
        assert np.allclose(quat_matrix(slerp(_axis("z", 0.2), _axis("z", 1.4), u)), _rot("z", 0.2 + 1.2 * u),
                           atol=1e-12)
    # -q is the same rotation as q: the way from 170 to -170 degrees is 20 degrees through 180, not 340
    mid = slerp(_axis("z", math.radians(170)), -_axis("z", math.radians(-170)), 0.5)
    assert np.allclose(quat_matrix(mid), _rot("z", math.pi), atol=1e-12)


# ------------------------------------------------------------------------------------------------ the buffer
def _tree() -> TransformBuffer:
    """map -> odom (static), odom -> base (moving: 1 m/s along x, turning 0.5 rad/s), base -> camera (static)."""
    buf = TransformBuffer()
    buf.set("map", "odom", 0.0, Transform.of(_axis("z", 0.3), (5.0, 1.0, 0.0)), static=True)
    for t in np.arange(0.0, 2.01, 0.1):
        buf.set("odom", "base", float(t), Transform.of(_axis("z", 0.5 * t), (1.0 * t, 0.0, 0.0)))
    buf.set("base", "camera", 0.0, Transform.of(_axis("x", -math.pi / 2), (0.1, 0.0, 0.4)), static=True)
    buf.set("base", "lidar", 0.0, Transform.of(_axis("z", 1.0), (-0.2, 0.0, 0.6)), static=True)
    return buf


def test_lookups_chain_the_tree_and_interpolate_between_samples():
    buf = _tree()
    t = 1.234  # between two samples: slerp and lerp of odom -> base
    base = Transform.of(_axis("z", 0.5 * t), (t, 0.0, 0.0))  # exact: constant rates interpolate exactly
    m_o = Transform.of(_axis("z", 0.3), (5.0, 1.0, 0.0))
    b_c = Transform.of(_axis("x", -math.pi / 2), (0.1, 0.0, 0.4))
    b_l = Transform.of(_axis("z", 1.0), (-0.2, 0.0, 0.6))
    assert _close(buf.lookup("odom", "base", t), base)
    assert _close(buf.lookup("map", "camera", t), m_o * base * b_c)  # up through two links
    assert _close(buf.lookup("camera", "map", t), (m_o * base * b_c).inverse())  # down
    assert _close(buf.lookup("lidar", "camera", t), b_l.inverse() * b_c)  # across, through their parent
    assert _close(buf.lookup("/odom", "odom", t), Transform.identity())  # tf2's leading '/' is dropped
    # between samples of a turn that is not at a constant rate: the slerp, not the matrix average
    buf.set("odom", "arm", 0.0, Transform.of(_axis("y", 0.0), (0, 0, 0)))
    buf.set("odom", "arm", 1.0, Transform.of(_axis("y", 1.0), (0, 0, 2.0)))
    assert _close(buf.lookup("odom", "arm", 0.3), Transform.of(_axis("y", 0.3), (0, 0, 0.6)))


def test_lookups_that_cannot_be_answered_say_which_frames_and_why():
    buf = _tree()
    with pytest.raises(TransformUnavailable, match="frame 'nowhere' does not exist"):
        buf.lookup("nowhere", "camera", 1.0)
    buf.set("world", "tag", 0.0, Transform.identity(), static=True)
    with pytest.raises(TransformUnavailable, match="'tag' and 'camera' are not connected"):
        buf.lookup("tag", "camera", 1.0)
    with pytest.raises(TransformUnavailable, match=r"extrapolation: 2\.5.* after the newest transform odom <- base"):
        buf.lookup("map", "camera", 2.5)
    with pytest.raises(TransformUnavailable, match="before the oldest") as info:
        buf.lookup("map", "camera", -0.5)
    assert not info.value.pending  # the past will not arrive: no wait


def test_history_is_kept_for_the_cache_time_only():
    buf = TransformBuffer(cache_seconds=1.0)
    for t in np.arange(0.0, 3.01, 0.5):
        buf.set("odom", "base", float(t), Transform.identity())
    buf.lookup("odom", "base", 2.25)
    with pytest.raises(TransformUnavailable, match="before the oldest"):
        buf.lookup("odom", "base", 1.75)


def test_a_lookup_waits_for_a_transform_still_in_flight_but_not_for_an_unknown_frame():
    buf = TransformBuffer()
    buf.set("odom", "base", 0.0, Transform.identity())
    late = threading.Timer(0.2, lambda: buf.set("odom", "base", 1.0, Transform.of(_axis("z", 1.0), (1, 0, 0))))
    late.start()
    try:
        got = buf.lookup("odom", "base", 0.5, timeout=30.0)  # after the newest sample until the timer fires
    finally:
        late.join()
    assert _close(got, Transform.of(_axis("z", 0.5), (0.5, 0, 0)))
    t0 = time.monotonic()
    with pytest.raises(TransformUnavailable):
        buf.lookup("nowhere", "base", 0.5, timeout=30.0)
    assert time.monotonic() - t0 < 5.0  # failed at once, not after the timeout


# ------------------------------------------------------------------------------------------------ projection
@pytest.mark.parametrize("depth", [0.5, 3.0, 40.0])
def test_a_rotation_about_the_optical_y_axis_moves_the_image_by_fx_tan_a_at_any_depth(depth):
    """The camera turns right by a (its z axis towards its x): the content moves left by fx tan(a)."""
    a = math.radians(4.0)
    reference, current = Transform.identity(), Transform.of(_axis("y", a), (0, 0, 0))
    dy, dx = image_shift(relative_pose(reference, current), K, depth)
    assert dx == pytest.approx(-K[0, 0] * math.tan(a), rel=1e-12) and dy == pytest.approx(0.0, abs=1e-9)
    # tilting down (about x, its z axis towards its y): the content moves up by fy tan(b)
    dy, dx = image_shift(relative_pose(reference, Transform.of(_axis("x", -a), (0, 0, 0))), K, depth)
    assert dy == pytest.approx(-K[1, 1] * math.tan(a), rel=1e-12) and dx == pytest.approx(0.0, abs=1e-9)


def test_a_translation_moves_the_image_by_its_parallax_at_the_given_depth():
    """The camera moves right by t in front of a wall at depth z: every pixel moves left by fx t / z; forward
    motion does not move the centre; a motion that puts the point behind the camera has no shift."""
    moved = Transform.of((0, 0, 0, 1), (0.1, 0.0, 0.0))
    assert image_shift(relative_pose(Transform.identity(), moved), K, 2.0) == pytest.approx((0.0, -300.0 * 0.05))
    forward = Transform.of((0, 0, 0, 1), (0.0, 0.0, 0.5))
    assert image_shift(relative_pose(Transform.identity(), forward), K, 2.0) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert image_shift(relative_pose(Transform.identity(), Transform.of((0, 0, 0, 1), (0, 0, 3.0))), K, 2.0) is None


def test_pose_motion_shifts_from_the_previous_frame_and_says_why_not():
    buf = TransformBuffer()
    for k in range(5):
        buf.set("odom", "cam", 0.1 * k, Transform.of(_axis("y", math.radians(2 * k)), (0, 0, 0)))
    motion = PoseMotion(buf)
    assert motion.shift("odom", "cam", 0.0, K) == (None, "")  # the first frame has no reference
    motion.advance("cam", 0.0, None)
    shift, why = motion.shift("odom", "cam", 0.2, K)  # two samples on: 4 degrees to the right
    assert why == "" and shift == pytest.approx((0.0, -300.0 * math.tan(math.radians(4))), abs=1e-9)
    motion.advance("cam", 0.2, 2.5)
    shift, why = motion.shift("nowhere", "cam", 0.3, K)
    assert shift is None and why.startswith("no transform nowhere <- cam: frame 'nowhere' does not exist")
    motion.reset()
    assert motion.shift("odom", "cam", 0.4, K) == (None, "")


def test_the_shift_has_the_image_estimators_sign_and_size_on_a_rendered_pan():
    """A rendered slow pan (the renderer knows each pose): the shift projected from the two poses and the phase
    correlation of the two images agree in sign and, within the off-centre excess of a rotation, in size."""
    from mtshare_ros.data.motion import render_motion
    from mtshare_ros.sharing.motion import estimate_shift, grey

    a, b = render_motion(3_000_009, "slow_pan", 2, fps=5.0)  # 3 degrees between the frames
    dy, dx = image_shift(relative_pose(_from_matrix(a.pose), _from_matrix(b.pose)), a.K,
                         float(np.median(a.depth[a.depth > 0])))
    ta, tb = (torch.from_numpy(f.rgb).permute(2, 0, 1)[None].float() / 255 for f in (a, b))
    ey, ex, _ = estimate_shift(grey(ta), grey(tb))
    assert abs(dx) > 5.0 and abs(dy) < 1.0, (dy, dx)  # a turn about the vertical: mostly sideways
    assert np.sign(ex) == np.sign(dx) and abs(ex - dx) < 0.15 * abs(dx) + 1.5, ((ey, ex), (dy, dx))
    assert abs(ey - dy) < 2.0, ((ey, ex), (dy, dx))


# ------------------------------------------------------------------------------------------------ the pipeline
def test_the_frame_pipeline_projects_tf_with_the_previous_depth_and_a_nominal_camera():
    """No camera_info: the pipeline projects with the nominal camera matrix (the checkpoint's canonical focal
    length, else NOMINAL_HFOV_DEG) at the inference resolution, and a sideways translation's parallax at the
    previous frame's median model depth; the engine gets that shift instead of its image estimate."""
    from mtshare_ros.data.motion import render_motion
    from mtshare_ros.runtime.camera import nominal_camera_matrix
    from mtshare_ros.runtime.pipeline import CameraPipeline
    from mtshare_ros.runtime.predictor import Predictor
    from mtshare_ros.runtime.settings import FrameSettings, TemporalSettings

    buf = TransformBuffer()
    predictor = Predictor("default", "cpu")
    pipeline = CameraPipeline(predictor, transforms=buf)
    settings = FrameSettings(tasks=("segmentation", "depth"), motion_frame="odom",
                             temporal=TemporalSettings(enabled=True, keyframe_interval=1000))
    frames = list(render_motion(3_000_009, "static", 2, 30.0))
    for k in range(2):  # the camera slides 5 cm to its right between the frames (the images do not: no matter)
        buf.set("odom", "cam", 100.0 + k / 30, Transform.of((0, 0, 0, 1), (0.05 * k, 0.0, 0.0)))
    with torch.no_grad():
        first = pipeline.process(lambda: frames[0].rgb, 100.0, "cam", settings, set())
        depth = float(first.prediction.maps["depth"].nanmedian())
        assert pipeline.motion_source == "image"  # the first frame has nothing to move from
        second = pipeline.process(lambda: frames[1].rgb, 100.0 + 1 / 30, "cam", settings, set())
    h, w = second.prediction.size
    k = nominal_camera_matrix(h, w, predictor.cfg.canonical_focal)
    assert pipeline.motion_source == "tf" and pipeline.cache.motion.source == "given"
    assert 0.3 < depth < 20.0
    assert pipeline.cache.motion.last == pytest.approx((0.0, -k[0, 0] * 0.05 / depth), rel=1e-6, abs=1e-9)
