"""Live replay: the bag played into a node process at its recorded timing, and what the node publishes recorded,
like ``ros2 bag play`` + ``ros2 bag record`` without a ROS install.

The camera messages are published as the bag stores them (serialized bytes, original headers), each at its
recorded time divided by ``rate``; the node (started here with the replay's parameters, through
``ros/harness.py``, or one already running) processes them under its latest-frame policy, so frames it cannot
keep up with are dropped, as on the robot. Its outputs are received serialized and written straight into the
output bag at the bag time of their image (nothing accumulates in memory, whatever the bag's length); the
receipt time of each frame's last raw output minus the time its image was published is its latency. Scoring
and pictures come afterwards, from the output bag, exactly as ``mtshare visualize`` reads it.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mtshare_ros.replay import params as replay_params
from mtshare_ros.replay.evaluation import summarize
from mtshare_ros.replay.frames import bag_messages, open_reader, read_frames
from mtshare_ros.replay.outbag import OutputBag, msgtype_of
from mtshare_ros.replay.sink import Sink
from mtshare_ros.replay.topics import BagError, Topics
from mtshare_ros.sharing.temporal import parse_reasons
from mtshare_ros.tasks import task_names


def header_stamp(raw: bytes) -> int:
    """The header stamp (ns) of a serialized message that starts with a std_msgs/Header (every image, camera
    info and point cloud), read from its CDR bytes without deserializing it."""
    little = raw[1] == 1
    sec, nsec = struct.unpack_from("<iI" if little else ">iI", raw, 4)
    return sec * 10**9 + nsec


class LiveSession:
    """A private rclpy context with a probe node and its executor, for one ``mtshare replay --live`` run
    (private, so that a program that already initialised rclpy, a test for one, is not disturbed)."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from mtshare_ros.ros.resources import use_fastdds_profile

        use_fastdds_profile()
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"mtshare_replay_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def close(self) -> None:
        import rclpy

        self.executor.remove_node(self.node)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


class _Player:
    """Publishers into a node namespace and raw subscriptions to its outputs, for one bag."""

    def __init__(self, session: LiveSession, namespace: str, topics: Topics, bag_out: OutputBag) -> None:
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from mtshare_ros.ros.harness import Recorder
        from mtshare_ros.ros.publish import output_types

        node, self.bag_out = session.node, bag_out
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        image_type, suffix = (CompressedImage, "image/compressed") if topics.compressed else (Image, "image")
        self.image_topic = f"{namespace}/{suffix}"
        self.image_pub = node.create_publisher(image_type, self.image_topic, qos)
        self.info_pub = node.create_publisher(CameraInfo, f"{namespace}/camera_info", qos) if topics.info else None
        self.sent: dict[int, tuple[float, int]] = {}  # stamp -> (publish time, bag time)
        self.done: dict[int, float] = {}  # stamp -> receipt time of its last raw output
        self.received = 0
        types = output_types()
        self.raw = set(task_names())
        self.subs = [node.create_subscription(kind, f"{namespace}/{name}", self._callback(name, msgtype_of(kind)), qos,
                                              raw=True) for name, kind in types.items()]
        self.recorder = Recorder(node, namespace, outputs=())  # /diagnostics of that namespace

    def _callback(self, name: str, msgtype: str):
        def cb(raw: bytes) -> None:
            now = time.monotonic()
            stamp = header_stamp(raw)
            if stamp not in self.sent:
                return  # not a frame of this replay
            self.bag_out.write_raw(name, msgtype, self.sent[stamp][1], raw)
            self.received += 1
            if name in self.raw:
                self.done[stamp] = now  # the frame's last raw output so far

        return cb

    def ready(self) -> bool:
        return self.image_pub.get_subscription_count() > 0 and all(s.get_publisher_count() > 0 for s in self.subs[:3])

    def destroy(self, node) -> None:
        for s in self.subs:
            node.destroy_subscription(s)
        node.destroy_publisher(self.image_pub)
        if self.info_pub is not None:
            node.destroy_publisher(self.info_pub)


def _wait_ready(session: LiveSession, player: _Player, proc, log_path: Path | None, namespace: str) -> None:
    from mtshare_ros.ros.harness import spin_until

    timeout = 180.0 if proc is not None else 20.0
    alive = (lambda: proc.poll() is None) if proc is not None else (lambda: True)
    ok = spin_until(session.executor, lambda: player.ready() or not alive(), timeout)
    if proc is not None and proc.poll() is not None:
        tail = log_path.read_text().strip().splitlines()[-1:] if log_path and log_path.exists() else []
        raise BagError(f"the node process exited with code {proc.returncode} before it was ready"
                       f"{': ' + tail[0] if tail else ''} (log: {log_path})")
    if not ok or not player.ready():
        raise BagError(f"no node answers in {namespace}: nobody subscribes to {player.image_topic} or publishes its "
                       f"outputs within {timeout:.0f} s" + ("" if proc is not None else
                                                           " (is input_transport right for this bag's images?)"))
    spin_until(session.executor, lambda: False, 0.5)  # let discovery settle


def play(session: LiveSession, reader, path, topics: Topics, values: dict[str, Any], bag_out: OutputBag,
         rate: float, node_namespace: str | None, log_path: Path | None, progress: bool = True,
         desc: str = "live") -> dict:
    """Play the bag into a node and record its outputs into ``bag_out`` (closed on return); returns the
    playback's timing: publish and receipt times by stamp, the wall time, the node's last diagnostics."""
    from mtshare_ros.ros.harness import spin_until, start_node_process, stop_process

    values = dict(values, input_transport="compressed" if topics.compressed else "raw")
    namespace = node_namespace or f"/mtshare_replay_{os.getpid()}_{time.monotonic_ns() % 100000}"
    proc = None
    if node_namespace is None:
        proc = start_node_process(namespace, extra_ros_args=replay_params.ros_args(values), log_path=log_path)
    player = _Player(session, namespace, topics, bag_out)
    try:
        _wait_ready(session, player, proc, log_path, namespace)
        conns = [c for c in reader.connections if c.topic in {topics.image, topics.info, *topics.gt.values()}]
        bar = tqdm(total=topics.count, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True)
        start, log0 = None, None
        for conn, log_ns, raw in bag_messages(reader, conns, path):
            raw = bytes(raw)
            if start is None:
                start, log0 = time.monotonic(), log_ns
            due = start + (log_ns - log0) * 1e-9 / rate
            while (left := due - time.monotonic()) > 0:  # handle outputs until the message is due
                session.executor.spin_once(timeout_sec=min(left, 0.02))
            if conn.topic == topics.image:
                player.sent[header_stamp(raw)] = (time.monotonic(), log_ns)
                player.image_pub.publish(raw)
                bar.update(1)
                bar.set_postfix_str(f"{len(player.done)} back", refresh=False)
            elif conn.topic == topics.info and player.info_pub is not None:
                player.info_pub.publish(raw)
            bag_out.copy(conn, log_ns, raw)
        bar.close()
        if start is None:
            raise BagError(f"{path}: {topics.image} has no messages to replay")
        last_change = [time.monotonic(), player.received]

        def settled() -> bool:  # every frame answered, or nothing new for a while
            if player.received != last_change[1]:
                last_change[:] = [time.monotonic(), player.received]
            return len(player.done) >= len(player.sent) or time.monotonic() - last_change[0] > 3.0

        spin_until(session.executor, settled, 60.0)
        end = max(player.done.values(), default=time.monotonic())
        period = float(values.get("diagnostics_period", 1.0))
        spin_until(session.executor, lambda: False, min(period + 0.3, 5.0))  # one more diagnostics message
        return {"sent": dict(player.sent), "done": dict(player.done), "wall_s": end - start,
                "namespace": namespace, "started_node": proc is not None,
                "diagnostics": player.recorder.latest_diagnostics()}
    finally:
        player.destroy(session.node)
        if proc is not None:
            stop_process(proc)
        bag_out.close()


def _compute_from_diagnostics(diag: dict[str, str]) -> dict:
    """The node's own compute numbers (its last diagnostics) in the summary's ``compute`` layout."""
    def num(key: str) -> float:
        try:
            return float(diag[key])
        except (KeyError, ValueError):
            return float("nan")

    compute = {"gmacs_executed_per_frame": num("gmacs_executed"), "gmacs_independent_per_frame":
               num("gmacs_independent"), "sharing": diag.get("sharing") == "1.000",
               "temporal": diag.get("temporal") == "1.000", "source": "node diagnostics (last values)"}
    if "macs_saved_fraction" in diag:
        compute["macs_saved_fraction"] = num("macs_saved_fraction")
    if "keyframe_rate" in diag:
        compute["keyframe_rate"] = num("keyframe_rate")
    if "keyframe_reasons" in diag:
        compute["keyframe_reasons"] = parse_reasons(diag["keyframe_reasons"])
    compute["recomputed_fraction"] = {k.removeprefix("recomputed_"): num(k) for k in diag
                                      if k.startswith("recomputed_")}
    return compute


def score(playback: dict, bag_path: Path, topics: Topics, sink: Sink, namespace: str, tolerance: float = 0.03,
          progress: bool = True) -> dict:
    """Score the outputs recorded under ``namespace`` from the output bag; returns the run's summary."""

    raw = task_names()
    results = {name: f"/{namespace.strip('/')}/{name}" for name in raw}
    reader = open_reader(bag_path)
    try:
        present = {c.topic for c in reader.connections}
        with_results = topics.with_results({n: t for n, t in results.items() if t in present})
        bar = tqdm(total=topics.count, desc="scoring", unit="frame", disable=not progress, dynamic_ncols=True)
        for frame in read_frames(reader, bag_path, with_results, tolerance):
            bar.update(1)
            sent = playback["sent"].get(frame.stamp_ns)
            done = playback["done"].get(frame.stamp_ns)
            sink.add_recorded(frame, raw, "dropped", (done - sent[0]) * 1e3 if sent and done else None)
        bar.close()
    finally:
        reader.close()
    summary = summarize(sink.records, playback["wall_s"])
    summary["node_diagnostics"] = playback["diagnostics"]
    summary["compute"] = _compute_from_diagnostics(playback["diagnostics"])
    return summary

