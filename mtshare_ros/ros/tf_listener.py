"""/tf and /tf_static into a ``runtime.tf_motion.TransformBuffer``: the node's TF listener.

tf2_ros's ``TransformListener`` does this where ROS is installed; the pip-installed ROS wheels have no tf2_ros,
so the node keeps its own small buffer (``runtime/tf_motion.py``) and subscribes as tf2_ros does: /tf reliable,
volatile, depth 100; /tf_static reliable, transient local, depth 100 (late joiners receive the static tree).
The message type, tf2_msgs/msg/TFMessage, comes with ROS; in the pip environment ``scripts/build_tf2_msgs.py``
builds it (the Makefile runs it). A transform whose quaternion is not a rotation is dropped with one warning.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from mtshare_ros.runtime.tf_motion import TransformBuffer

TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TfListener:
    """Subscribes ``node`` to /tf and /tf_static and keeps what they say in ``buffer``. Raises ImportError when
    tf2_msgs is not installed (the caller says so and goes on without TF)."""

    def __init__(self, node: Node, buffer: TransformBuffer, warn: Callable[[str, str], None]) -> None:
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer
        self._warn = warn
        self._subs = [
            node.create_subscription(TFMessage, "/tf", lambda m: self._on_tf(m, False), TF_QOS),
            node.create_subscription(TFMessage, "/tf_static", lambda m: self._on_tf(m, True), TF_STATIC_QOS),
        ]
        self._node = node

    def _on_tf(self, msg, static: bool) -> None:
        topic = "/tf_static" if static else "/tf"
        for link, why in self.buffer.add_message(msg, static):
            self._warn(f"{topic}: transform {link} dropped: {why}", f"{topic} {link}")

    def destroy(self) -> None:
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
