"""Motion from TF in a real node process (``temporal.motion_frame``): a rendered slow pan streamed with the
camera's poses on /tf and /tf_static; the node takes the image motion from them, and falls back to the image
estimate, with one warning, when the fixed frame is one nobody publishes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from test_node_e2e import Rig
from test_node_temporal import FPS, _diagnostics, _send
from test_tf_motion import _from_matrix
from tf2_msgs.msg import TFMessage  # a ROS install has it; `make venv` builds it (scripts/build_tf2_msgs.py)

from mtshare_ros.data.motion import render_motion
from mtshare_ros.runtime.camera import CameraModel, scale_camera
from mtshare_ros.runtime.tf_motion import Transform as Rigid
from mtshare_ros.runtime.tf_motion import image_shift, relative_pose

FRAMES = 6
CAMERA = "cam"  # the frame_id test_node_temporal._send stamps the images with
# base_link (x forward, z up) -> the camera's optical frame (z forward, x right, y down): REP 103's rotation
BASE_TO_OPTICAL = Rigid.of((-0.5, 0.5, -0.5, 0.5), (0.2, 0.0, 0.5))


@pytest.fixture(scope="module")
def frames():
    return list(render_motion(3_000_009, "slow_pan", FRAMES, FPS))


def _msg(parent: str, child: str, stamp: float, t: Rigid) -> TransformStamped:
    m = TransformStamped(child_frame_id=child, transform=Transform(
        translation=Vector3(x=float(t.translation[0]), y=float(t.translation[1]), z=float(t.translation[2])),
        rotation=Quaternion(x=float(t.rotation[0]), y=float(t.rotation[1]), z=float(t.rotation[2]),
                            w=float(t.rotation[3]))))
    m.header.frame_id = parent
    m.header.stamp = Time(nanoseconds=round(stamp * 1e9)).to_msg()
    return m


class TfPublisher:
    """The robot's TF: odom -> base_link on /tf per frame, base_link -> camera once on /tf_static (latched)."""

    def __init__(self, rig: Rig) -> None:
        self.dynamic = rig.node.create_publisher(TFMessage, "/tf", QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE))
        static = rig.node.create_publisher(TFMessage, "/tf_static", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        static.publish(TFMessage(transforms=[_msg("base_link", CAMERA, 0.0, BASE_TO_OPTICAL)]))
        self._static = static  # kept: a transient-local publisher serves late joiners while it lives

    def publish(self, camera_pose: np.ndarray, stamp: float) -> None:
        """``camera_pose``: the optical frame's pose in odom (the renderer's camera-to-world)."""
        base = _from_matrix(camera_pose) * BASE_TO_OPTICAL.inverse()
        self.dynamic.publish(TFMessage(transforms=[_msg("odom", "base_link", stamp, base)]))


def _stream(rig: Rig, frames, t0: float = 1000.0) -> None:
    tf = TfPublisher(rig)
    rig.cam.fx = frames[0].K[0, 0] * 640.0 / frames[0].rgb.shape[1]  # camera_info: the renderer's focal length
    for k, f in enumerate(frames):
        tf.publish(f.pose, t0 + k / FPS)
        _send(rig, f.rgb, t0 + k / FPS)


def test_the_node_takes_the_image_motion_from_tf(ros_session, tmp_path, frames):
    with Rig("/mtshare_tf", tmp_path, ["-p", "temporal.enabled:=true", "-p", "temporal.keyframe_interval:=1000",
                                       "-p", "temporal.motion_frame:=odom"]) as rig:
        _stream(rig, frames)
        d = _diagnostics(rig, FRAMES)
        seg = rig.rec.messages["segmentation"][-1].msg
        log = rig.log.read_text()
    assert d["motion_source"] == "tf" and "motion_tf_problem" not in d, (d.get("motion_tf_problem"), log)
    # what the node must have computed: the last two poses' relative rotation (a pure turn: any depth), through
    # camera_info's K scaled to the inference resolution, in the image estimator's units and sign
    h, w = frames[0].rgb.shape[:2]
    k = np.array(frames[0].K, dtype=np.float64)
    k[0, 2], k[1, 2] = w / 2 - 0.5, h / 2 - 0.5  # the principal point camera_info_for publishes
    cam = CameraModel(k, np.hstack([k, np.zeros((3, 1))]), np.eye(3), (0.0,) * 5, "plumb_bob", h, w)
    k_inf = scale_camera(cam, (seg.height, seg.width), (seg.width / w, seg.height / h)).k
    dy, dx = image_shift(relative_pose(_from_matrix(frames[-2].pose), _from_matrix(frames[-1].pose)), k_inf)
    assert dx > 0.3  # the pan moves the content right
    assert float(d["motion_dx_px"]) == pytest.approx(dx, abs=2e-3) and float(d["motion_dy_px"]) == pytest.approx(
        dy, abs=2e-3), (d, dy, dx)
    assert float(d["motion_response"]) == 1.0 and int(d["temporal_keyframes"]) == 1, d


def test_an_unknown_fixed_frame_falls_back_to_the_image_estimate_with_one_warning(ros_session, tmp_path, frames):
    with Rig("/mtshare_tf_missing", tmp_path, ["-p", "temporal.enabled:=true", "-p",
                                               "temporal.keyframe_interval:=1000", "-p",
                                               "temporal.motion_frame:=nowhere"]) as rig:
        _stream(rig, frames)  # every frame answered: the node keeps running
        d = _diagnostics(rig, FRAMES)
        assert rig.proc.poll() is None
        log = rig.log.read_text()
    assert d["motion_source"] == "image" and "frame 'nowhere' does not exist" in d["motion_tf_problem"], d
    assert not math.isclose(float(d["motion_response"]), 1.0), d  # the phase correlation's peak, not a given shift
    warnings = [line for line in log.splitlines() if "temporal.motion_frame 'nowhere'" in line]
    assert len(warnings) == 1 and "WARN" in warnings[0] and "no transform nowhere <- cam:" in warnings[0], log
