"""numpy <-> sensor_msgs without cv_bridge (which has no pip wheel)."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from mtshare_ros.runtime.camera import CameraModel
from mtshare_ros.runtime.decode import compressed_to_rgb, raw_to_rgb
from mtshare_ros.runtime.pointcloud import POINT_DTYPE

_ENCODINGS = {
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "rgb8",
    (np.dtype(np.float32), 1): "32FC1",
    (np.dtype(np.float32), 3): "32FC3",
}
_POINTFIELD_TYPES = {np.dtype("<f4"): PointField.FLOAT32, np.dtype("<u4"): PointField.UINT32}


def _share_data(msg: Image | PointCloud2, arr: np.ndarray) -> None:
    """``msg.data`` = the bytes of ``arr``, shared, not copied (the message holds a view of ``arr``'s memory).

    The generated setter copies whatever it is given into an ``array.array`` (twice for an array: the caller's
    copy and the setter's, 3.5 MB a frame for every output at 240x320), and publishing copies the field once more
    into the C message. That copy reads any buffer (rosidl's ``convert_from_py`` takes the buffer protocol), so
    the slot holds a byte view and publishing makes the only copy. A ``memoryview`` and not the array: it
    compares equal to the ``array.array`` a received message holds (``Image.__eq__``), as an ndarray would not.
    ``test/test_conversions.py`` pins the bytes on the wire against the setter's."""
    msg._data = memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def image_to_rgb(msg: Image | CompressedImage) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> uint8 (H, W, 3) RGB; raises ``runtime.decode.FrameError`` on bad
    frames."""
    if isinstance(msg, CompressedImage):
        return compressed_to_rgb(msg.format, msg.data)
    return raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def array_to_image(arr: np.ndarray, header: Header, encoding: str | None = None) -> Image:
    """(H, W) or (H, W, C) array -> Image with ``encoding`` (a task's ``TaskSpec.encoding``), which must agree with
    the array's dtype and channels; without, the encoding those imply. The message shares ``arr``'s memory
    (``_share_data``): publish it before ``arr`` changes."""
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    implied = _ENCODINGS.get((arr.dtype, ch))
    if implied is None or (encoding is not None and encoding != implied):
        raise ValueError(f"no ROS encoding {encoding or ''} for dtype {arr.dtype} with {ch} channels")
    encoding = implied
    msg = Image(header=header, height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = arr.shape[1] * ch * arr.dtype.itemsize
    _share_data(msg, arr)
    return msg


def points_to_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """Structured ``POINT_DTYPE`` array, (N,) or organised (H, W), -> PointCloud2 (NaN = no return), sharing
    ``points``' memory (``_share_data``): publish it before ``points`` changes."""
    fields = [
        PointField(
            name=name,
            offset=POINT_DTYPE.fields[name][1],
            datatype=_POINTFIELD_TYPES[POINT_DTYPE.fields[name][0]],
            count=1,
        )
        for name in POINT_DTYPE.names
    ]
    msg = PointCloud2(
        header=header,
        height=points.shape[0] if points.ndim == 2 else 1,
        width=points.shape[-1],
        fields=fields,
        is_bigendian=False,
        point_step=POINT_DTYPE.itemsize,
        row_step=POINT_DTYPE.itemsize * points.shape[-1],
        is_dense=False,
    )
    _share_data(msg, points)
    return msg


def cloud_to_points(msg: PointCloud2) -> np.ndarray:
    """Inverse of ``points_to_cloud`` for clouds with exactly its layout."""
    names = [f.name for f in msg.fields]
    if names != list(POINT_DTYPE.names) or msg.point_step != POINT_DTYPE.itemsize:
        raise ValueError(f"unexpected point layout {names} step {msg.point_step}")
    return np.frombuffer(msg.data, dtype=POINT_DTYPE, count=msg.width * msg.height).reshape(msg.height, msg.width)


def image_to_array(msg: Image) -> np.ndarray:
    """Decode an Image of one of the output encodings (mono8, rgb8, 32FC1, 32FC3) to an array."""
    for (dtype, ch), enc in _ENCODINGS.items():
        if enc == msg.encoding:
            row = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
            flat = row[:, : msg.width * ch * dtype.itemsize].copy().view(dtype)
            return flat.reshape(msg.height, msg.width, ch) if ch > 1 else flat.reshape(msg.height, msg.width)
    raise ValueError(f"unsupported encoding {msg.encoding!r}")


def camera_model(info: CameraInfo) -> CameraModel:
    """The geometry of a CameraInfo message, for ``runtime/camera.py``."""
    return CameraModel(
        k=np.asarray(info.k, dtype=np.float64).reshape(3, 3),
        p=np.asarray(info.p, dtype=np.float64).reshape(3, 4),
        r=np.asarray(info.r, dtype=np.float64).reshape(3, 3),
        d=tuple(info.d),
        distortion_model=info.distortion_model,
        height=info.height,
        width=info.width,
    )


def camera_info(camera: CameraModel, header: Header) -> CameraInfo:
    """A CameraInfo message for ``camera``, stamped with ``header``."""
    return CameraInfo(
        header=header,
        height=camera.height,
        width=camera.width,
        distortion_model=camera.distortion_model,
        d=list(camera.d),
        k=camera.k.reshape(-1).tolist(),
        r=camera.r.reshape(-1).tolist(),
        p=camera.p.reshape(-1).tolist(),
    )
