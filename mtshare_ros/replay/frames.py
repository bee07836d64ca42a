"""A bag's camera frames in order, each with the messages of other topics that belong to it.

A frame is one message of the image topic. Ground truth, camera_info and earlier results belong to it by header
stamp: the nearest stamp within a tolerance (a RealSense's aligned depth is stamped by the depth camera, a few
milliseconds off the colour image; this package's own topics carry the image's stamp exactly). Messages are read
once, in the bag's time order; a frame is handed out when the bag has moved ``lookahead`` seconds past it, so
a ground-truth message recorded slightly after its image still finds it, and memory stays bounded by that window.

Decoding follows the dataset loaders (``data/datasets.py``), so that metrics mean what ``mtshare eval``'s mean:
depth in metres with 0 where invalid (NaN, inf, negative, or 0 in a 16UC1 bag), normals renormalised with short
vectors invalid (``clean_normals``), segmentation ids checked against the classes.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtshare_ros.data.bag import _typestore, image_to_array
from mtshare_ros.replay.topics import BagError, Topics
from mtshare_ros.runtime.decode import compressed_to_rgb, raw_to_rgb
from mtshare_ros.tasks import task_spec

Hook = Callable[[object, int, bytes], None]
"""Called with (connection, bag time ns, serialized message) for every message read, e.g. to copy it."""


@dataclass
class SyncedFrame:
    """One image message and what belongs to it. ``attached`` maps ``gt/<task>`` and result names to their
    (deserialized ``rosbags``) messages; ``info`` is the camera_info of the frame (or the latest one before)."""

    index: int
    log_ns: int
    stamp_ns: int
    frame_id: str
    msg: object
    info: object | None = None
    attached: dict[str, object] = field(default_factory=dict)

    def rgb(self) -> np.ndarray:
        """The image as uint8 RGB; ``runtime.decode.FrameError`` for a frame that does not decode."""
        m = self.msg
        if hasattr(m, "format"):
            return compressed_to_rgb(m.format, m.data)
        rgb = raw_to_rgb(m.encoding, m.height, m.width, m.step, m.data)
        return rgb if rgb.flags.writeable else rgb.copy()  # a view of the message: torch wants its own


def open_reader(path: str | Path):
    """An open ``rosbags`` reader for a rosbag2 folder or a bare .mcap / .db3 file; ``BagError`` otherwise."""
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag (expected a rosbag2 folder with metadata.yaml, or a .mcap/.db3 file)")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, KeyError, struct/sqlite errors for broken files
        raise BagError(f"{path}: cannot read rosbag2 ({_reason(exc)}); expected a complete MCAP or sqlite3 bag"
                       + (" (an MCAP recording cut off before it closed can be repaired with `mcap recover`)"
                          if "magic" in str(exc).lower() else "")) from None
    return reader


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def bag_messages(reader, connections, path) -> Iterator[tuple[object, int, bytes]]:
    """``reader.messages`` with failures of a damaged file turned into one ``BagError`` line."""
    try:
        yield from reader.messages(connections=connections)
    except BagError:
        raise
    except Exception as exc:
        raise BagError(f"{path}: truncated or corrupt rosbag2, reading stopped ({_reason(exc)})") from None


def read_frames(
    reader,
    path,
    topics: Topics,
    tolerance: float = 0.03,
    lookahead: float = 1.0,
    on_message: Hook | None = None,
    extra: tuple[str, ...] = (),
) -> Iterator[SyncedFrame]:
    """Frames of ``topics.image`` in bag order with their ground truth, results and camera_info attached
    (ground truth and camera_info by the nearest stamp within ``tolerance`` seconds, results by an equal stamp).
    ``extra`` topics are read too (only for ``on_message``)."""
    ts = _typestore()
    keys = {topics.image: "image"}
    if topics.info:
        keys[topics.info] = "info"
    keys.update({topic: f"gt/{task}" for task, topic in topics.gt.items()})
    keys.update({topic: name for name, topic in topics.results.items()})
    exact = set(topics.results)  # results carry their image's header: only an equal stamp is theirs
    wanted = set(keys) | set(extra)
    conns = [c for c in reader.connections if c.topic in wanted]
    tol_ns, ahead_ns = int(tolerance * 1e9), int(lookahead * 1e9)
    pending: deque[SyncedFrame] = deque()
    buffers: dict[str, deque[tuple[int, int, object]]] = {}  # key -> (log ns, stamp ns, message)
    last_info = None
    index = 0

    def finish(frame: SyncedFrame) -> SyncedFrame:
        nonlocal last_info
        for key, buf in buffers.items():
            best = min(buf, key=lambda e: abs(e[1] - frame.stamp_ns), default=None)
            if best is not None and abs(best[1] - frame.stamp_ns) <= (0 if key in exact else tol_ns):
                if key == "info":
                    frame.info = best[2]
                else:
                    frame.attached[key] = best[2]
        if frame.info is None:
            frame.info = last_info
        last_info = frame.info
        for buf in buffers.values():  # what lies a lookahead before this frame cannot belong to a later one
            while buf and buf[0][0] < frame.log_ns - ahead_ns:
                buf.popleft()
        return frame

    for conn, log_ns, raw in bag_messages(reader, conns, path):
        if on_message is not None:
            on_message(conn, log_ns, raw)
        while pending and log_ns > pending[0].log_ns + ahead_ns:
            yield finish(pending.popleft())
        key = keys.get(conn.topic)
        if key is None:
            continue
        try:
            msg = ts.deserialize_cdr(raw, conn.msgtype)
        except Exception as exc:
            raise BagError(f"{path}: message on {conn.topic} at {log_ns} ns does not deserialize as "
                           f"{conn.msgtype} ({_reason(exc)})") from None
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if key == "image":
            pending.append(SyncedFrame(index, log_ns, stamp, msg.header.frame_id, msg))
            index += 1
        else:
            buffers.setdefault(key, deque()).append((log_ns, stamp, msg))
    while pending:
        yield finish(pending.popleft())


def gt_array(task: str, msg, topic: str) -> np.ndarray:
    """A ground-truth message as the dataset loaders give it: depth (H, W) float32 metres with 0 invalid,
    segmentation (H, W) uint8 ids with 255 ignore, normals (H, W, 3) float32 unit vectors with 0 invalid."""
    alias = {"mono16": "16UC1", "8UC1": "mono8"}.get(msg.encoding)
    arr = image_to_array(dataclasses.replace(msg, encoding=alias) if alias else msg)
    return task_spec(task).decode_gt(arr, msg.encoding)

