"""numpy <-> sensor_msgs without cv_bridge (which has no pip wheel)."""

from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from mtshare_ros.imaging import compressed_to_rgb, raw_to_rgb
from mtshare_ros.pointcloud import POINT_DTYPE, scale_intrinsics

_ENCODINGS = {
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "rgb8",
    (np.dtype(np.float32), 1): "32FC1",
    (np.dtype(np.float32), 3): "32FC3",
}
_POINTFIELD_TYPES = {np.dtype("<f4"): PointField.FLOAT32, np.dtype("<u4"): PointField.UINT32}


def _as_byte_array(arr: np.ndarray) -> array.array:
    """Fast path for uint8[] message fields: assigning bytes would check every element in Python."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)  # one copy, no bytes temporary
    return out


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> uint8 (H, W, 3) RGB; raises imaging.FrameError on bad frames."""
    return raw_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def compressed_image_to_rgb(msg: CompressedImage) -> np.ndarray:
    return compressed_to_rgb(msg.format, msg.data)


def array_to_image(arr: np.ndarray, header: Header) -> Image:
    """(H, W) or (H, W, C) array -> Image with the encoding implied by dtype and channels."""
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    encoding = _ENCODINGS.get((arr.dtype, ch))
    if encoding is None:
        raise ValueError(f"no ROS encoding for dtype {arr.dtype} with {ch} channels")
    msg = Image(header=header, height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0)
    msg.step = arr.shape[1] * ch * arr.dtype.itemsize
    msg.data = _as_byte_array(arr)
    return msg


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    return array_to_image(rgb, header)


def points_to_cloud(points: np.ndarray, header: Header) -> PointCloud2:
    """Structured ``POINT_DTYPE`` array, (N,) or organised (H, W), -> PointCloud2 (NaN = no return)."""
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
    msg.data = _as_byte_array(points.view(np.uint8))
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


def scaled_camera_info(
    info: CameraInfo, scale: tuple[float, float], size: tuple[int, int], header: Header
) -> CameraInfo:
    """CameraInfo for the output resolution: K and P rescaled by (sx, sy), distortion kept (not rectified)."""
    sx, sy = scale
    k = scale_intrinsics(np.asarray(info.k).reshape(3, 3), sx, sy)
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4).copy()
    p[:, :3] = scale_intrinsics(p[:, :3], sx, sy)
    p[0, 3] *= sx
    p[1, 3] *= sy
    return CameraInfo(
        header=header,
        height=size[0],
        width=size[1],
        distortion_model=info.distortion_model,
        d=list(info.d),
        k=k.reshape(-1).tolist(),
        r=list(info.r),
        p=p.reshape(-1).tolist(),
    )
