"""The node's output publishers: one per output name, each output converted to its message type and sent with
the input frame's header.

Who subscribes decides what ``runtime/outputs.py`` computes (``wanted``): the visualisation outputs cost
milliseconds per frame and are skipped while nobody listens.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from mtshare_ros.ros.conversions import array_to_image, camera_info, points_to_cloud
from mtshare_ros.runtime.camera import CameraModel
from mtshare_ros.runtime.outputs import OUTPUT_NAMES

OUTPUT_TYPES = {**{n: Image for n in OUTPUT_NAMES}, "points": PointCloud2, "scaled_camera_info": CameraInfo}


class OutputPublishers:
    """Lifecycle publishers of every output of a node (created on configure, destroyed on cleanup)."""

    def __init__(self, node: Any, qos: QoSProfile) -> None:
        self._node = node
        self._pubs = {name: node.create_lifecycle_publisher(OUTPUT_TYPES[name], name, qos) for name in OUTPUT_NAMES}

    def __getitem__(self, name: str):
        return self._pubs[name]

    def wanted(self) -> set[str]:
        """The outputs someone subscribes to now."""
        return {name for name, pub in self._pubs.items() if pub.get_subscription_count() > 0}

    @staticmethod
    def to_messages(outputs: dict[str, np.ndarray | CameraModel], header: Header) -> dict[str, Any]:
        """Every output as its message, each with ``header`` (the input's stamp and frame)."""
        msgs: dict[str, Any] = {}
        for name, value in outputs.items():
            if name == "points":
                msgs[name] = points_to_cloud(value, header)
            elif name == "scaled_camera_info":
                msgs[name] = camera_info(value, header)
            else:
                msgs[name] = array_to_image(value, header)
        return msgs

    def publish(self, messages: dict[str, Any]) -> None:
        for name, msg in messages.items():
            self._pubs[name].publish(msg)

    def destroy(self) -> None:
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._pubs = {}
