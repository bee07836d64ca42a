"""The node as a robot meets it: its own process from the console script, real topics, real frames.

A probe node in this process publishes 640x480 frames and subscribes to every output.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mtshare_ros.ros.conversions import cloud_to_points, image_to_array
from mtshare_ros.ros.harness import (
    ALL_OUTPUTS,
    CameraPublisher,
    Recorder,
    pattern_frame,
    spin_until,
    start_node_process,
    stop_process,
)

H, W = 480, 640
OUT_H, OUT_W = 240, 320
EXPECTED_ENCODING = {
    "segmentation": "mono8",
    "segmentation/color": "rgb8",
    "depth": "32FC1",
    "depth/color": "rgb8",
    "normals": "32FC3",
    "normals/color": "rgb8",
}


def scene(seed: int) -> np.ndarray:
    return pattern_frame(seed, H, W)


class Rig:
    """Probe node + recorder + camera for one node process."""

    def __init__(self, namespace: str, tmp_path, extra_args=()) -> None:
        self.ns = namespace
        self.node = rclpy.create_node("probe_" + namespace.strip("/"))
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.log = tmp_path / f"node_{namespace.strip('/')}.log"
        self.proc = start_node_process(namespace, extra_ros_args=list(extra_args), log_path=self.log)
        self.rec = Recorder(self.node, namespace)
        self.cam = CameraPublisher(self.node, namespace)
        self.clients: dict[str, object] = {}

    def wait_ready(self, timeout: float = 120.0) -> None:
        ok = spin_until(self.ex, lambda: self.rec.connected() and self.cam.subscribed(), timeout)
        assert ok, f"node did not come up:\n{self.log.read_text()[-3000:]}"
        spin_until(self.ex, lambda: False, 0.5)  # let discovery settle

    def spin(self, seconds: float) -> None:
        spin_until(self.ex, lambda: False, seconds)

    def frames_with(self, output: str, frame_id: str) -> list:
        return [r for r in self.rec.messages[output] if r.msg.header.frame_id == frame_id]

    def send_until(self, make_msg, frame_id: str, outputs=("segmentation",), timeout: float = 60.0) -> None:
        """Publish ``make_msg(header)`` every 0.4 s until each of ``outputs`` got a message for it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            header = Header(frame_id=frame_id, stamp=self.node.get_clock().now().to_msg())
            make_msg(header)
            self.spin(0.4)
            if all(self.frames_with(o, frame_id) for o in outputs):
                return
        raise AssertionError(f"no {outputs} for frame_id {frame_id}:\n{self.log.read_text()[-3000:]}")

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """One request to the node's service ``name``. The client is made once per service and given a moment
        after discovery: Fast DDS drops the response to a client whose response reader the server has not
        matched yet ("failed to send response (timeout)": rmw_fastrtps waits 100 ms for it), which a loaded
        machine makes likely. Requests that can be repeated without effect (GetState, SetParameters) are sent
        again when an answer is lost; a lifecycle transition is not."""
        client = self.clients.get(name)
        if client is None:
            client = self.node.create_client(srv_type, f"{self.ns}/mtshare/{name}")
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            self.spin(1.0)
            self.clients[name] = client
        attempts = 3 if isinstance(request, (GetState.Request, SetParameters.Request)) else 1
        for _ in range(attempts):
            fut = client.call_async(request)
            if spin_until(self.ex, fut.done, timeout / attempts):
                return fut.result()
        raise AssertionError(f"service {name} did not answer ({attempts} attempt(s) of {timeout / attempts:.0f} s)")

    def set_param(self, name: str, value) -> tuple[bool, str]:
        if isinstance(value, list):
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value)
        elif isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        elif isinstance(value, float):
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
        res = self.call(
            SetParameters, "set_parameters", SetParameters.Request(parameters=[Parameter(name=name, value=pv)])
        )
        return res.results[0].successful, res.results[0].reason

    def close(self) -> None:
        stop_process(self.proc)
        self.node.destroy_node()

    def __enter__(self) -> Rig:
        """The node up and connected (closed again if it does not come up)."""
        try:
            self.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture(scope="module")
def rig(ros_session, tmp_path_factory):
    with Rig("/mtshare_test", tmp_path_factory.mktemp("node")) as r:
        yield r


def test_every_output_matches_the_input_frame(rig):
    rig.send_until(lambda h: rig.cam.publish(scene(0), frame_id=h.frame_id), "cam_a", outputs=ALL_OUTPUTS)
    sent = {(h.stamp.sec, h.stamp.nanosec) for h in rig.cam.sent}
    for name in ALL_OUTPUTS:
        rec = rig.frames_with(name, "cam_a")[0]
        msg = rec.msg
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in sent, f"{name}: stamp not copied"
        if name in EXPECTED_ENCODING:
            assert msg.encoding == EXPECTED_ENCODING[name], name
            assert (msg.height, msg.width) == (OUT_H, OUT_W), name
            arr = image_to_array(msg)
            if name == "segmentation":
                assert arr.max() < 15
            if name == "normals":
                n = np.linalg.norm(arr, axis=-1)
                assert np.allclose(n, 1.0, atol=1e-3), "normals are unit vectors"
            if name == "depth":
                finite = arr[np.isfinite(arr)]
                assert finite.size > 0 and (finite > 0).all(), "depth is positive metres or NaN"
    info = rig.frames_with("scaled_camera_info", "cam_a")[0].msg
    assert (info.height, info.width) == (OUT_H, OUT_W)
    assert np.isclose(info.k[0], 525.0 / 2) and np.isclose(info.k[2], 159.5)
    cloud = rig.frames_with("points", "cam_a")[0].msg
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label"]
    pts = cloud_to_points(cloud)
    assert pts.shape == (OUT_H, OUT_W), "organised cloud at the output resolution"
    z = pts["z"][np.isfinite(pts["z"])]
    assert z.size > 0 and (z > 0).all()


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "bgra8", "mono8", "rgb8_padded"])
def test_input_encodings(rig, encoding):
    img = scene(1)
    enc, data, step = encoding, img, W * 3
    if encoding == "bgr8":
        data = img[..., ::-1]
    elif encoding in ("rgba8", "bgra8"):
        base = img if encoding == "rgba8" else img[..., ::-1]
        data, step = np.dstack([base, np.full((H, W), 255, np.uint8)]), W * 4
    elif encoding == "mono8":
        data, step = img[..., 0], W
    elif encoding == "rgb8_padded":
        enc, step = "rgb8", W * 3 + 64
        data = np.zeros((H, step), np.uint8)
        data[:, : W * 3] = img.reshape(H, -1)

    def publish(header):
        msg = Image(header=header, height=H, width=W, encoding=enc, step=step)
        msg.data = np.ascontiguousarray(data).tobytes()
        rig.cam.image_pub.publish(msg)

    rig.send_until(publish, f"enc_{encoding}")


def test_bad_frames_are_rejected_and_node_keeps_running(rig):
    bad = [
        ("16UC1", H, W, W * 2, bytes(H * W * 2)),
        ("rgb8", 0, 0, 0, b""),
        ("rgb8", H, W, W * 3, bytes(100)),
    ]
    for i, (enc, h, w, step, data) in enumerate(bad):
        header = Header(frame_id=f"bad_{i}", stamp=rig.node.get_clock().now().to_msg())
        msg = Image(header=header, height=h, width=w, encoding=enc, step=step)
        msg.data = data
        rig.cam.image_pub.publish(msg)
        rig.spin(0.6)
    rig.send_until(lambda h: rig.cam.publish(scene(2), frame_id=h.frame_id), "after_bad")
    for i in range(len(bad)):
        assert not rig.frames_with("segmentation", f"bad_{i}")
    assert spin_until(rig.ex, lambda: int(rig.rec.latest_diagnostics().get("frames_rejected", 0)) >= 1, 10)
    assert rig.proc.poll() is None
    assert "skipping frame" in rig.log.read_text()


def test_parameters_change_at_run_time_and_invalid_values_are_rejected(rig):
    ok, reason = rig.set_param("tasks", ["segmentation"])
    assert ok, reason
    rig.send_until(lambda h: rig.cam.publish(scene(3), frame_id=h.frame_id), "seg_only")
    stamps = {
        r.msg.header.stamp.sec * 10**9 + r.msg.header.stamp.nanosec for r in rig.frames_with("segmentation", "seg_only")
    }
    depth_stamps = {
        r.msg.header.stamp.sec * 10**9 + r.msg.header.stamp.nanosec for r in rig.frames_with("depth", "seg_only")
    }
    assert stamps and not depth_stamps, "depth must stop when only segmentation is enabled"

    ok, reason = rig.set_param("tasks", ["segmentation", "bogus"])
    assert not ok and "bogus" in reason
    ok, reason = rig.set_param("depth.min", 50.0)
    assert not ok and "depth.min" in reason
    ok, reason = rig.set_param("checkpoint", "/tmp/other.pt")
    assert not ok  # read-only: needs a reconfigure
    ok, reason = rig.set_param("tasks", ["segmentation", "depth", "normals"])
    assert ok, reason
    rig.send_until(lambda h: rig.cam.publish(scene(4), frame_id=h.frame_id), "all_again", outputs=("depth", "normals"))


def test_sharing_settings_change_at_run_time(rig):
    ok, reason = rig.set_param("sharing.threshold", 0.5)
    assert ok, reason
    ok, reason = rig.set_param("sharing.max_token_fraction", 0.0)
    assert not ok, "out of the declared range"
    rig.send_until(lambda h: rig.cam.publish(scene(8), frame_id=h.frame_id), "shared", outputs=("depth", "normals"))
    assert spin_until(rig.ex, lambda: "recomputed_depth" in rig.rec.latest_diagnostics(), 10)
    d = rig.rec.latest_diagnostics()
    assert 0.0 <= float(d["recomputed_depth"]) <= 1.0 and float(d["sharing"]) == 1.0
    assert float(d["gmacs_executed"]) <= float(d["gmacs_independent"])
    ok, reason = rig.set_param("sharing.threshold", 0.0)
    assert ok, reason


def test_lifecycle_deactivate_stops_and_activate_resumes(rig):
    res = rig.call(
        ChangeState, "change_state", ChangeState.Request(transition=Transition(id=Transition.TRANSITION_DEACTIVATE))
    )
    assert res.success
    state = rig.call(GetState, "get_state", GetState.Request()).current_state.label
    assert state == "inactive"
    for _ in range(5):
        rig.cam.publish(scene(5), frame_id="while_inactive")
        rig.spin(0.3)
    assert not rig.frames_with("segmentation", "while_inactive")
    res = rig.call(
        ChangeState, "change_state", ChangeState.Request(transition=Transition(id=Transition.TRANSITION_ACTIVATE))
    )
    assert res.success
    rig.send_until(lambda h: rig.cam.publish(scene(6), frame_id=h.frame_id), "reactivated")


def test_diagnostics_report_rates_and_drops(rig):
    assert spin_until(rig.ex, lambda: "fps" in rig.rec.latest_diagnostics(), 10)
    d = rig.rec.latest_diagnostics()
    for key in ("fps", "frames_dropped", "latency_ms_p50", "inference_ms_p50", "frames_processed"):
        assert key in d, key
    assert int(d["frames_processed"]) > 0


def test_compressed_transport(ros_session, tmp_path):
    """A second node with input_transport compressed: JPEG frames work, a corrupt one is skipped."""
    r = Rig("/mtshare_compressed", tmp_path, extra_args=["-p", "input_transport:=compressed"])
    try:
        pub = r.node.create_publisher(
            CompressedImage,
            "/mtshare_compressed/image/compressed",
            QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT),
        )
        ok = spin_until(r.ex, lambda: r.rec.connected() and pub.get_subscription_count() > 0, 120)
        assert ok, r.log.read_text()[-3000:]
        corrupt = CompressedImage(format="jpeg", header=Header(frame_id="corrupt"))
        corrupt.data = b"\xff\xd8garbage"

        def rejected() -> bool:
            pub.publish(corrupt)
            r.spin(0.3)
            return int(r.rec.latest_diagnostics().get("frames_rejected", 0)) >= 1

        assert spin_until(r.ex, rejected, 30), "corrupt frame not reported in diagnostics"
        _, jpg = cv2.imencode(".jpg", scene(7)[..., ::-1])

        def publish(header):
            msg = CompressedImage(header=header, format="jpeg")
            msg.data = jpg.tobytes()
            pub.publish(msg)

        r.send_until(publish, "jpeg", outputs=("segmentation", "depth"))
        assert not r.frames_with("segmentation", "corrupt")
        assert "corrupt compressed frame" in r.log.read_text()
    finally:
        r.close()
