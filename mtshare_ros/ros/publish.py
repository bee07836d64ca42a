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
from mtshare_ros.runtime.outputs import output_names
from mtshare_ros.tasks import BUILTIN_TASKS, task_spec

GEOMETRY_TYPES = {"points": PointCloud2, "scaled_camera_info": CameraInfo}


def output_type(name: str):
    """The message type of output ``name``: an Image for every task map and colour image."""
    return GEOMETRY_TYPES.get(name, Image)


def output_types(tasks=None) -> dict[str, type]:
    """Output name -> message type, for ``tasks`` (default: every registered task)."""
    return {name: output_type(name) for name in output_names(tasks)}


OUTPUT_TYPES = output_types(BUILTIN_TASKS)
"""The built-in tasks' outputs and their message types."""


class OutputPublishers:
    """Lifecycle publishers of every output of a node (created on configure, destroyed on cleanup)."""

    def __init__(self, node: Any, qos: QoSProfile, prefix: str = "") -> None:
        """``prefix``: the camera's namespace (``front`` publishes ``front/depth``, ...); '' for the node's own."""
        self._node = node
        self._pubs = {name: node.create_lifecycle_publisher(output_type(name), f"{prefix}/{name}" if prefix else name,
                                                            qos) for name in output_names()}

    def __getitem__(self, name: str):
        return self._pubs[name]

    def wanted(self) -> set[str]:
        """The outputs someone subscribes to now."""
        return {name for name, pub in self._pubs.items() if pub.get_subscription_count() > 0}

    @staticmethod
    def to_messages(outputs: dict[str, np.ndarray | CameraModel], header: Header) -> dict[str, Any]:
        """Every output as its message, each with ``header`` (the input's stamp and frame). The messages share the
        outputs' memory (``conversions._share_data``; ``runtime/buffers.py`` reuses it for the next frame): publish
        or write them before the next frame's outputs are made (publishing copies)."""
        msgs: dict[str, Any] = {}
        for name, value in outputs.items():
            if name == "points":
                msgs[name] = points_to_cloud(value, header)
            elif name == "scaled_camera_info":
                msgs[name] = camera_info(value, header)
            elif name.endswith("/color"):
                msgs[name] = array_to_image(value, header, "rgb8")
            else:
                msgs[name] = array_to_image(value, header, task_spec(name).encoding)
        return msgs

    def publish(self, messages: dict[str, Any]) -> None:
        for name, msg in messages.items():
            self._pubs[name].publish(msg)

    def destroy(self) -> None:
        for pub in self._pubs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._pubs = {}
