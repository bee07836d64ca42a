"""Drive a running mtshare node from another process: publish camera frames, record every output.

Shared by the demo, the node latency benchmark and the end-to-end tests, so all three exercise the
node exactly as a robot would: a separate process, real topics, the shipped Fast DDS profile.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from mtshare_ros.ros.conversions import array_to_image
from mtshare_ros.ros.publish import output_type
from mtshare_ros.ros.resources import share_path, use_fastdds_profile
from mtshare_ros.runtime.outputs import OUTPUT_NAMES

ALL_OUTPUTS = OUTPUT_NAMES
CAMERA_FRAME = "camera_color_optical_frame"


def start_node_process(
    namespace: str = "/mtshare",
    params_file: str | Path | None = None,
    extra_ros_args: list[str] | None = None,
    log_path: str | Path | None = None,
) -> subprocess.Popen:
    """Start ``mtshare_node`` (the console script) in its own process with the shipped params file.

    The child inherits this environment, which carries the LD_LIBRARY_PATH the ROS wheels set up and
    the Fast DDS profile; its output goes to ``log_path`` (or is discarded).
    """
    use_fastdds_profile()
    script = Path(sys.executable).with_name("mtshare_node")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "mtshare_ros.ros.node"]
    params = params_file or share_path("config/mtshare.yaml")
    cmd += ["--ros-args", "-r", f"__ns:={namespace}", "--params-file", str(params)] + list(extra_ros_args or [])
    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT first (clean shutdown), then kill."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def camera_info_for(height: int, width: int, fx: float, header: Header) -> CameraInfo:
    """Pinhole camera info, principal point at the image centre."""
    cx, cy = width / 2 - 0.5, height / 2 - 0.5
    return CameraInfo(
        header=header,
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=[0.0] * 5,
        k=[fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0],
        r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
        p=[fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
    )


@dataclass
class Received:
    """One output message and the wall-clock delay from its header stamp to its receipt."""

    msg: object
    latency_ms: float
    received: float


@dataclass
class Recorder:
    """Subscribes to every output of a node namespace and keeps what arrives."""

    node: Node
    namespace: str = "/mtshare"
    outputs: tuple[str, ...] = ALL_OUTPUTS
    messages: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    diagnostics: list[DiagnosticArray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self._subs = [
            self.node.create_subscription(output_type(name), f"{self.namespace}/{name}", self._cb(name), qos)
            for name in self.outputs
        ]
        self._subs.append(self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10))

    def _cb(self, name: str):
        def cb(msg) -> None:
            now = self.node.get_clock().now()
            latency = (now - Time.from_msg(msg.header.stamp)).nanoseconds * 1e-6
            with self._lock:
                self.messages[name].append(Received(msg, latency, time.monotonic()))

        return cb

    def _on_diag(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self.diagnostics.append(msg)

    def count(self, name: str) -> int:
        with self._lock:
            return len(self.messages[name])

    def connected(self) -> bool:
        """True once every output topic has a publisher (the node is configured)."""
        return all(s.get_publisher_count() > 0 for s in self._subs[: len(self.outputs)])

    def latest_diagnostics(self, camera: str = "") -> dict[str, str]:
        """The latest /diagnostics values of this namespace's node; ``camera``: of that camera's status (a node
        with several cameras, ``namespace`` being the node's)."""
        with self._lock:
            for arr in reversed(self.diagnostics):
                for st in arr.status:
                    if st.name.startswith(self.namespace + "/") and (not camera or st.name.endswith(f" {camera}")):
                        return {kv.key: kv.value for kv in st.values}
        return {}


class CameraPublisher:
    """Publishes frames (uint8 RGB arrays) on ``<ns>/image`` and a matching ``<ns>/camera_info``."""

    def __init__(self, node: Node, namespace: str = "/mtshare", fx: float = 525.0) -> None:
        self.node = node
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.image_pub = node.create_publisher(Image, f"{namespace}/image", qos)
        self.info_pub = node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos)
        self.fx = fx
        self.sent: list[Header] = []

    def subscribed(self) -> bool:
        return self.image_pub.get_subscription_count() > 0

    def publish(self, rgb: np.ndarray, frame_id: str = CAMERA_FRAME, stamp: float | None = None) -> Header:
        """Publish a frame stamped now, or at ``stamp`` seconds (a recording's own time line)."""
        now = self.node.get_clock().now() if stamp is None else Time(nanoseconds=round(stamp * 1e9))
        header = Header(frame_id=frame_id, stamp=now.to_msg())
        h, w = rgb.shape[:2]
        self.info_pub.publish(camera_info_for(h, w, self.fx * w / 640.0, header))
        self.image_pub.publish(array_to_image(rgb, header))
        self.sent.append(header)
        return header


def pattern_frame(seed: int, height: int = 480, width: int = 640, squares: int = 8) -> np.ndarray:
    """A cheap camera frame (gradient with coloured squares) for tests and timing, where content is irrelevant."""
    rng = np.random.default_rng(seed)
    img = np.dstack([np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))] * 3)
    side = min(height, width) // 4
    for _ in range(squares):
        x, y = rng.integers(0, width - side), rng.integers(0, height - side)
        img[y : y + side, x : x + side] = rng.integers(0, 256, 3)
    return img


def spin_until(executor, predicate, timeout: float) -> bool:
    """Spin ``executor`` until ``predicate()`` holds or ``timeout`` seconds pass."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return predicate()
