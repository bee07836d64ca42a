"""Several cameras through one node process: real publishers per camera, real outputs per camera.

Three cameras at two resolutions, every output of each checked (stamp, frame_id, size); then one camera stops,
one changes resolution and one sends bad frames, and each of the others keeps its rate and its outputs; names
that cannot be cameras are refused at configure."""

from __future__ import annotations

import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor

from mtshare_ros.ros.conversions import array_to_image
from mtshare_ros.ros.harness import (
    ALL_OUTPUTS,
    CameraPublisher,
    Recorder,
    pattern_frame,
    spin_until,
    start_node_process,
    stop_process,
)

NS = "/multicam"
SIZES = {"front": (480, 640), "rear": (480, 640), "arm/wrist": (240, 320)}
OUT = {(480, 640): (240, 320), (240, 320): (240, 320), (120, 160): (240, 320)}


class MultiRig:
    def __init__(self, tmp_path, cameras, extra=()) -> None:
        self.node = rclpy.create_node("probe_multicam")
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.log = tmp_path / "node_multicam.log"
        arg = "cameras:=[" + ", ".join(cameras) + "]"
        self.proc = start_node_process(NS, extra_ros_args=["-p", arg, "--log-level", "multicam.mtshare:=debug", *extra],
                                       log_path=self.log)
        self.rec = {c: Recorder(self.node, f"{NS}/{c}") for c in cameras}
        self.cam = {c: CameraPublisher(self.node, f"{NS}/{c}") for c in cameras}

    def spin(self, seconds: float) -> None:
        spin_until(self.ex, lambda: False, seconds)

    def wait_ready(self, timeout: float = 120.0) -> None:
        ok = spin_until(self.ex, lambda: all(r.connected() for r in self.rec.values())
                        and all(c.subscribed() for c in self.cam.values()), timeout)
        assert ok, f"node did not come up:\n{self.log.read_text()[-3000:]}"
        self.spin(0.5)

    def got(self, cam: str, output: str, frame_id: str) -> list:
        return [r for r in self.rec[cam].messages[output] if r.msg.header.frame_id == frame_id]

    def close(self) -> None:
        stop_process(self.proc)
        self.node.destroy_node()


def _stamp(h) -> tuple[int, int]:
    return h.stamp.sec, h.stamp.nanosec


@pytest.fixture
def rig(tmp_path, ros_session):
    r = MultiRig(tmp_path, list(SIZES))
    try:
        r.wait_ready()
        yield r
    finally:
        r.close()


def _send_round(rig: MultiRig, cams, frame_id: str, seed: int, sizes=SIZES) -> None:
    for c in cams:
        h, w = sizes[c]
        rig.cam[c].publish(pattern_frame(seed, h, w), frame_id=f"{frame_id}_{c}")


def test_three_cameras_two_resolutions_every_output_and_faults_stay_with_their_camera(rig):
    # every camera, every output, with its own header and size
    end = time.monotonic() + 90
    while time.monotonic() < end:
        _send_round(rig, SIZES, "all", 1)
        rig.spin(0.5)
        if all(rig.got(c, o, f"all_{c}") for c in SIZES for o in ALL_OUTPUTS):
            break
    for c, size in SIZES.items():
        sent = {_stamp(h) for h in rig.cam[c].sent}
        for o in ALL_OUTPUTS:
            got = rig.got(c, o, f"all_{c}")
            assert got, f"no {o} from camera {c}:\n{rig.log.read_text()[-3000:]}"
            msg = got[-1].msg
            assert _stamp(msg.header) in sent, (c, o)
            if o != "scaled_camera_info":
                assert (msg.height, msg.width) == OUT[size], (c, o, msg.height, msg.width)
    diag = spin_until(rig.ex, lambda: any(len(a.status) == 3 for a in rig.rec["front"].diagnostics), 20)
    assert diag, "one /diagnostics status per camera"
    names = {s.name for a in rig.rec["front"].diagnostics for s in a.status}
    assert {f"{NS}/mtshare: inference {c}" for c in SIZES} <= names, names

    def batches() -> set:
        return {kv.value for a in rig.rec["front"].diagnostics for s in a.status for kv in s.values
                if kv.key == "batch"}

    spin_until(rig.ex, lambda: bool(batches()), 15)  # the next /diagnostics after the first outputs
    assert batches() & {"2.000", "3.000"}, f"frames waiting together go through one pass: {batches()}\n" + \
        rig.log.read_text()[-3000:]

    # arm/wrist stops, rear changes resolution, front sends bad frames: each keeps to its own camera
    bad = array_to_image(pattern_frame(2, 480, 640), rig.cam["front"].sent[-1])
    bad.data = bad.data[: len(bad.data) // 2]  # truncated
    sizes = {**SIZES, "rear": (120, 160)}
    sent_rear = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        rig.cam["front"].image_pub.publish(bad)
        _send_round(rig, ["rear"], "after", 3, sizes)
        sent_rear += 1
        rig.spin(0.5)
    got_rear = rig.got("rear", "depth", "after_rear")
    assert len(got_rear) >= sent_rear // 2, f"rear kept {len(got_rear)} of {sent_rear} frames"
    assert all((r.msg.height, r.msg.width) == OUT[(120, 160)] for r in got_rear)
    log = rig.log.read_text()
    assert f"{NS}/front/image" in log and "skipping frame" in log, log[-3000:]
    assert "frame failed" not in log and rig.proc.poll() is None
    # and front, good again, still works
    h = rig.cam["front"].publish(pattern_frame(4, 480, 640), frame_id="back_front")
    assert spin_until(rig.ex, lambda: bool(rig.got("front", "segmentation", "back_front")), 30), "front came back"
    assert _stamp(rig.got("front", "segmentation", "back_front")[0].msg.header) == _stamp(h)


@pytest.mark.parametrize("cameras,reason", [(["a", "a"], "more than once"), (["a", "2b"], "not a relative ROS name")])
def test_bad_camera_names_are_refused_at_configure(tmp_path, ros_session, cameras, reason):
    log = tmp_path / "node.log"
    proc = start_node_process("/badcams", extra_ros_args=["-p", "cameras:=[" + ", ".join(cameras) + "]"],
                              log_path=log)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and "configure failed" not in log.read_text():
            time.sleep(0.5)
        text = log.read_text()
        assert "configure failed: cameras" in text and reason in text, text[-2000:]
    finally:
        stop_process(proc)
