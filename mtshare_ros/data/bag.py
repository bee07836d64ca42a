"""Camera bags (rosbag2, written and read with the pure-Python ``rosbags`` library; no ROS install needed).

Topics of the package's own layout (``PACKAGE_LAYOUT``; all stamped with the frame's time, header.frame_id an
optical frame):
  /camera/image_raw        sensor_msgs/Image rgb8
  /camera/camera_info      sensor_msgs/CameraInfo (plumb_bob, zero distortion, P = [K | 0])
  /camera/depth/image_raw  sensor_msgs/Image 32FC1, metres, NaN where invalid (REP 118)
  /gt/segmentation         sensor_msgs/Image mono8, class ids (SYNTHETIC_CLASSES), 255 = ignore
  /gt/normals              sensor_msgs/Image 32FC3, unit normals in the optical frame, 0 0 0 where invalid
The bag is what the demo, the replay evaluation and the tests feed to the node.

``KINECT_LAYOUT`` writes real RGB-D frames the way a Kinect v1 driver (openni2_launch, ``depth_registration``
on) records them: /camera/rgb/image_raw bgr8, /camera/rgb/camera_info, /camera/depth_registered/image_raw 16UC1
millimetres with 0 invalid and its camera_info, all in camera_rgb_optical_frame; no ground-truth topics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

TOPIC_IMAGE = "/camera/image_raw"
TOPIC_INFO = "/camera/camera_info"
TOPIC_DEPTH = "/camera/depth/image_raw"
TOPIC_SEGMENTATION = "/gt/segmentation"
TOPIC_NORMALS = "/gt/normals"
CAMERA_TOPICS = (TOPIC_IMAGE, TOPIC_INFO)
GT_TOPICS = (TOPIC_DEPTH, TOPIC_SEGMENTATION, TOPIC_NORMALS)
DEFAULT_FRAME_ID = "camera_color_optical_frame"
DEFAULT_START_NS = 1_700_000_000 * 10**9  # a fixed epoch keeps bags byte-reproducible
IMAGE_TYPE = "sensor_msgs/msg/Image"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"


class CameraFrame(Protocol):
    """What ``write_camera_bag`` reads of a frame: a rendered ``renderer.Frame`` (which also has segmentation and
    normals) or a real ``rgbd_frames.RGBDFrame``."""

    rgb: np.ndarray  # (H, W, 3) uint8 RGB
    K: np.ndarray  # (3, 3)
    stamp: float  # seconds since the start of the sequence
    depth: np.ndarray | None  # (H, W) metres, 0 = invalid


@dataclass(frozen=True)
class BagLayout:
    """Which topics and encodings a written bag has: the package's own, or a camera driver's. A topic set to
    None is not written; ``depth_encoding`` is "32FC1" (metres, NaN invalid) or "16UC1" (millimetres, 0 invalid,
    what depth drivers publish)."""

    image: str
    info: str
    image_encoding: str = "rgb8"  # or "bgr8"
    depth: str | None = None
    depth_encoding: str = "32FC1"
    depth_info: str | None = None
    segmentation: str | None = None
    normals: str | None = None
    frame_id: str = DEFAULT_FRAME_ID


PACKAGE_LAYOUT = BagLayout(TOPIC_IMAGE, TOPIC_INFO, depth=TOPIC_DEPTH, segmentation=TOPIC_SEGMENTATION,
                           normals=TOPIC_NORMALS)
KINECT_LAYOUT = BagLayout("/camera/rgb/image_raw", "/camera/rgb/camera_info", image_encoding="bgr8",
                          depth="/camera/depth_registered/image_raw", depth_encoding="16UC1",
                          depth_info="/camera/depth_registered/camera_info", frame_id="camera_rgb_optical_frame")


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


@dataclass
class BagFrame:
    """One camera frame read back from a bag; ground truth fields are None where the bag has none."""

    stamp_ns: int
    frame_id: str
    rgb: np.ndarray  # (H, W, 3) uint8
    K: np.ndarray  # (3, 3)
    depth: np.ndarray | None = None  # (H, W) float32 metres, 0 = invalid (NaN in the bag)
    segmentation: np.ndarray | None = None  # (H, W) uint8
    normals: np.ndarray | None = None  # (H, W, 3) float32


class _Messages:
    """Builds the ROS messages of one frame."""

    def __init__(self, typestore, frame_id: str):
        self.ts, self.frame_id = typestore, frame_id
        self.Header = typestore.types["std_msgs/msg/Header"]
        self.Time = typestore.types["builtin_interfaces/msg/Time"]
        self.Image = typestore.types[IMAGE_TYPE]
        self.Info = typestore.types[INFO_TYPE]
        self.Roi = typestore.types["sensor_msgs/msg/RegionOfInterest"]

    def header(self, stamp_ns: int):
        return self.Header(stamp=self.Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=self.frame_id)

    def image(self, stamp_ns: int, array: np.ndarray, encoding: str):
        h, w = array.shape[:2]
        data = np.ascontiguousarray(array)
        return self.Image(header=self.header(stamp_ns), height=h, width=w, encoding=encoding,
                          is_bigendian=int(data.dtype.byteorder == ">"), step=data.strides[0],
                          data=data.reshape(-1).view(np.uint8))

    def info(self, stamp_ns: int, K: np.ndarray, h: int, w: int):
        P = np.zeros((3, 4))
        P[:, :3] = K
        return self.Info(header=self.header(stamp_ns), height=h, width=w, distortion_model="plumb_bob",
                         d=np.zeros(5), k=np.asarray(K, dtype=np.float64).reshape(9),
                         r=np.eye(3).reshape(9), p=P.reshape(12), binning_x=0, binning_y=0,
                         roi=self.Roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def write_camera_bag(path: str | Path, frames: Iterable[CameraFrame], storage: str = "mcap",
                     frame_id: str | None = None, ground_truth: bool = True,
                     start_ns: int = DEFAULT_START_NS, layout: BagLayout = PACKAGE_LAYOUT) -> int:
    """Write ``frames`` to a new rosbag2 at ``path`` (a folder; must not exist). Returns the frame count.

    ``frames``: ``CameraFrame``s; segmentation and normals are written where a frame has them (rendered ones).
    ``storage`` is "mcap" (default) or "sqlite3". Message stamps and bag timestamps are
    ``start_ns + frame.stamp``; ``frame_id`` defaults to the layout's. Depth, segmentation and normals go onto
    the layout's topics (those it has) unless ``ground_truth`` is False; a frame without one writes none.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: bag already exists (rosbag2 writes a new folder)")
    ts = _typestore()
    msgs = _Messages(ts, frame_id or layout.frame_id)
    topics = [layout.info, layout.image]
    if ground_truth:
        topics += [t for t in (layout.depth_info, layout.depth, layout.segmentation, layout.normals) if t]
    count = 0
    with Writer(path, version=9, storage_plugin=plugins[storage]) as writer:
        conns = {t: writer.add_connection(t, INFO_TYPE if t in (layout.info, layout.depth_info) else IMAGE_TYPE,
                                          typestore=ts) for t in topics}

        def put(topic: str | None, msg, stamp: int) -> None:
            if topic in conns:
                writer.write(conns[topic], stamp, ts.serialize_cdr(msg, msg.__msgtype__))

        for frame in frames:
            stamp = start_ns + int(round(frame.stamp * 1e9))
            h, w = frame.rgb.shape[:2]
            info = msgs.info(stamp, frame.K, h, w)
            put(layout.info, info, stamp)
            rgb = frame.rgb.astype(np.uint8)
            put(layout.image, msgs.image(stamp, rgb[..., ::-1] if layout.image_encoding == "bgr8" else rgb,
                                         layout.image_encoding), stamp)
            depth = getattr(frame, "depth", None)
            if depth is not None and layout.depth:
                put(layout.depth_info, info, stamp)
                put(layout.depth, msgs.image(stamp, _depth_pixels(depth, layout.depth_encoding),
                                             layout.depth_encoding), stamp)
            segmentation = getattr(frame, "segmentation", None)
            if segmentation is not None:
                put(layout.segmentation, msgs.image(stamp, segmentation.astype(np.uint8), "mono8"), stamp)
            normals = getattr(frame, "normals", None)
            if normals is not None:
                put(layout.normals, msgs.image(stamp, normals.astype("<f4"), "32FC3"), stamp)
            count += 1
    return count


def _depth_pixels(depth: np.ndarray, encoding: str) -> np.ndarray:
    """Metres (0 invalid) as a depth image: 32FC1 metres with NaN invalid (REP 118), or 16UC1 millimetres with 0
    invalid (a driver's raw depth; beyond 65.534 m is invalid too)."""
    if encoding == "32FC1":
        return np.where(depth > 0, depth, np.nan).astype("<f4")
    if encoding == "16UC1":
        mm = np.round(np.where(depth > 0, depth, 0.0) * 1000.0)
        return np.where(mm < 65535, mm, 0).astype("<u2")
    raise ValueError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")


_DECODE = {"rgb8": (np.uint8, 3), "mono8": (np.uint8, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
           "32FC3": (np.float32, 3)}


def image_to_array(msg) -> np.ndarray:
    """sensor_msgs/Image -> numpy (H, W[, C]) for the encodings this package writes; clear error otherwise."""
    if msg.encoding not in _DECODE:
        raise ValueError(f"image encoding {msg.encoding!r} not supported; expected one of {sorted(_DECODE)}")
    dtype, channels = _DECODE[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
    arr = row[:, : msg.width * channels * dt.itemsize].copy().view(dt).astype(dtype)
    return arr.reshape(msg.height, msg.width, channels) if channels > 1 else arr.reshape(msg.height, msg.width)


def read_camera_bag(path: str | Path) -> Iterator[BagFrame]:
    """Frames of a camera bag in time order, grouping consecutive messages that share a header stamp.

    Bags recorded from a real camera work too: a frame without its own camera_info uses the latest one seen.
    Depth NaNs (REP 118 invalid) become 0, the package's invalid value.
    """
    from rosbags.rosbag2 import Reader

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: bag not found")
    ts = _typestore()
    wanted = set(CAMERA_TOPICS + GT_TOPICS)
    with Reader(path) as reader:
        conns = [c for c in reader.connections if c.topic in wanted]
        if not any(c.topic == TOPIC_IMAGE for c in conns):
            raise ValueError(f"{path}: no {TOPIC_IMAGE} topic (topics: {sorted(c.topic for c in reader.connections)})")
        pending: dict[str, object] = {}
        current, last_info = None, None
        for conn, _, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            if current is not None and stamp != current:
                if TOPIC_IMAGE in pending:
                    yield _assemble(current, pending, last_info)
                pending = {}
            current = stamp
            pending[conn.topic] = msg
            if conn.topic == TOPIC_INFO:
                last_info = msg
        if current is not None and TOPIC_IMAGE in pending:
            yield _assemble(current, pending, last_info)


def _assemble(stamp_ns: int, msgs: dict, last_info) -> BagFrame:
    image = msgs[TOPIC_IMAGE]
    info = msgs.get(TOPIC_INFO, last_info)
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3) if info is not None else np.full((3, 3), np.nan)
    frame = BagFrame(stamp_ns=stamp_ns, frame_id=image.header.frame_id, rgb=image_to_array(image), K=K)
    if TOPIC_DEPTH in msgs:
        depth = image_to_array(msgs[TOPIC_DEPTH])
        frame.depth = np.where(np.isfinite(depth), depth, 0.0).astype(np.float32)
    if TOPIC_SEGMENTATION in msgs:
        frame.segmentation = image_to_array(msgs[TOPIC_SEGMENTATION])
    if TOPIC_NORMALS in msgs:
        frame.normals = image_to_array(msgs[TOPIC_NORMALS])
    return frame
