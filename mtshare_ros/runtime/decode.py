"""Decoding camera frames into RGB arrays, without ROS types: message fields in, ndarray out.

Every way a frame can be wrong (unsupported encoding, empty, rows shorter than ``step``, truncated
data, undecodable compressed bytes) raises ``FrameError`` with a message that says what was wrong,
so the node can warn and keep running instead of publishing garbage.
"""

from __future__ import annotations

import cv2
import numpy as np

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(CHANNELS)


class FrameError(ValueError):
    """A frame that cannot be turned into an RGB image."""


def raw_to_rgb(encoding: str, height: int, width: int, step: int, data: bytes | bytearray | memoryview) -> np.ndarray:
    """sensor_msgs/Image fields -> contiguous uint8 (H, W, 3) RGB; handles padded rows (step > W*C)."""
    if encoding not in CHANNELS:
        raise FrameError(f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    if height <= 0 or width <= 0:
        raise FrameError(f"empty image ({width}x{height})")
    ch = CHANNELS[encoding]
    row = width * ch
    if step < row:
        raise FrameError(f"step {step} is smaller than width*channels = {row} for {encoding}")
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * (height - 1) + row:
        raise FrameError(
            f"data has {buf.size} bytes, expected {step * height} for {width}x{height} {encoding} step {step}"
        )
    if buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)
    else:  # last row unpadded, as some drivers send
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    img = rows[:, :row].reshape(height, width, ch)
    if encoding == "rgb8":
        return np.ascontiguousarray(img)
    if encoding == "bgr8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    if encoding == "bgra8":
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def compressed_to_rgb(fmt: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> uint8 (H, W, 3) RGB."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise FrameError(f"empty compressed frame (format {fmt!r})")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise FrameError(f"corrupt compressed frame: could not decode {buf.size} bytes (format {fmt!r})")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
