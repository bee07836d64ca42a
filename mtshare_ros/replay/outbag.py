"""The output bag: the input camera topics copied unchanged and every result topic of the node, each result
written at the bag time of the image it came from and carrying that image's header.

So ``ros2 bag play`` of it, RViz, or Foxglove (which reads MCAP with the ``mcap`` package's ROS 2 reader) show
the results next to the original frames, on the original time line. Results are the node's own messages
(``ros/publish.py`` makes them from ``runtime/outputs.py``), serialized by rclpy; copies are the input bytes.
"""

from __future__ import annotations

from pathlib import Path

from mtshare_ros.data.bag import _typestore

STORAGES = ("mcap", "sqlite3")


def msgtype_of(cls: type) -> str:
    """``sensor_msgs.msg.Image`` -> ``sensor_msgs/msg/Image`` (the name rosbag2 stores)."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


class OutputBag:
    """A rosbag2 being written; results go under ``namespace`` (``/mtshare/segmentation``, ...)."""

    def __init__(self, path: str | Path, storage: str = "mcap", namespace: str = "/mtshare") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise ValueError(f"output storage must be one of {STORAGES}, got {storage!r}")
        self.path = Path(path)
        self.namespace = "/" + namespace.strip("/")
        self._ts = _typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        self._writer.open()
        self._conns: dict[str, object] = {}
        self.written = 0

    def topic(self, name: str) -> str:
        return f"{self.namespace}/{name}"

    def _connection(self, topic: str, msgtype: str, source=None):
        conn = self._conns.get(topic)
        if conn is None:
            if msgtype in self._ts.types or source is None:
                conn = self._writer.add_connection(topic, msgtype, typestore=self._ts)
            else:  # a type this typestore lacks: keep the definition the input bag recorded
                conn = self._writer.add_connection(topic, msgtype, msgdef=source.msgdef.data, rihs01=source.digest)
            self._conns[topic] = conn
        return conn

    def copy(self, source_conn, log_ns: int, raw: bytes) -> None:
        """Write a message of the input bag unchanged, on its own topic and at its own time."""
        self._writer.write(self._connection(source_conn.topic, source_conn.msgtype, source_conn), log_ns, raw)
        self.written += 1

    def write_raw(self, name: str, msgtype: str, log_ns: int, raw: bytes) -> None:
        """Write a serialized result (as a node published it) under the output namespace."""
        self._writer.write(self._connection(self.topic(name), msgtype), log_ns, raw)
        self.written += 1

    def write_messages(self, messages: dict[str, object], log_ns: int) -> None:
        """Write rclpy result messages (``OutputPublishers.to_messages``) at ``log_ns``."""
        from rclpy.serialization import serialize_message

        for name, msg in messages.items():
            self.write_raw(name, msgtype_of(type(msg)), log_ns, serialize_message(msg))

    def close(self) -> None:
        """Finish the bag (metadata.yaml, MCAP summary); a second call does nothing."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
