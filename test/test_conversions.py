"""Output messages: every output of a real frame, as the node converts it (``OutputPublishers.to_messages``, whose
messages share the outputs' memory instead of copying it), against messages built here the plain way (every field
through the generated setters, data as bytes), compared in process and as they arrive (serialised and read back)."""

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from mtshare_ros.ros.conversions import (
    array_to_image,
    camera_model,
    cloud_to_points,
    image_to_array,
    points_to_cloud,
)
from mtshare_ros.ros.harness import camera_info_for, pattern_frame
from mtshare_ros.ros.publish import OutputPublishers, output_type
from mtshare_ros.runtime.buffers import OutputBuffers
from mtshare_ros.runtime.outputs import OUTPUT_NAMES, assemble_outputs
from mtshare_ros.runtime.predictor import Predictor
from mtshare_ros.runtime.settings import FrameSettings

H, W = 120, 160
HEADER = Header(frame_id="camera_optical")
HEADER.stamp.sec, HEADER.stamp.nanosec = 17, 250_000_000


def _image(arr: np.ndarray, encoding: str) -> Image:
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    return Image(header=HEADER, height=arr.shape[0], width=arr.shape[1], encoding=encoding, is_bigendian=0,
                 step=arr.shape[1] * ch * arr.dtype.itemsize, data=arr.tobytes())


def _cloud(points: np.ndarray) -> PointCloud2:
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    fields += [PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1),
               PointField(name="label", offset=16, datatype=PointField.UINT32, count=1)]
    return PointCloud2(header=HEADER, height=points.shape[0], width=points.shape[1], fields=fields,
                       is_bigendian=False, point_step=20, row_step=20 * points.shape[1], is_dense=False,
                       data=points.tobytes())


def _info(camera) -> CameraInfo:
    return CameraInfo(header=HEADER, height=camera.height, width=camera.width,
                      distortion_model=camera.distortion_model, d=list(camera.d), k=camera.k.ravel().tolist(),
                      r=camera.r.ravel().tolist(), p=camera.p.ravel().tolist())


REFERENCE = {"segmentation": lambda a: _image(a, "mono8"), "depth": lambda a: _image(a, "32FC1"),
             "normals": lambda a: _image(a, "32FC3"), "points": _cloud, "scaled_camera_info": _info,
             **{f"{t}/color": lambda a: _image(a, "rgb8") for t in ("segmentation", "depth", "normals")}}


def _wire(msg, name: str):
    """``msg`` as a subscriber receives it."""
    return deserialize_message(serialize_message(msg), output_type(name))


@pytest.fixture(scope="module")
def outputs():
    """Every output of one real frame (the shipped model at 120x160, all outputs wanted, a camera known)."""
    predictor = Predictor("default", "cpu")
    frame = cv2.resize(pattern_frame(4), (W, H), interpolation=cv2.INTER_AREA)
    pred = predictor.predict(frame, FrameSettings(max_width=W))
    camera = camera_model(camera_info_for(H, W, 0.8 * W, HEADER))
    return assemble_outputs(pred, len(predictor.class_names), set(OUTPUT_NAMES), camera, None, OutputBuffers())


def test_every_output_message_equals_the_plain_one_in_process_and_on_the_wire(outputs):
    assert set(outputs) == set(OUTPUT_NAMES)
    messages = OutputPublishers.to_messages(outputs, HEADER)
    for name, msg in messages.items():
        ref = REFERENCE[name](outputs[name])
        assert msg == ref, name
        got, want = _wire(msg, name), _wire(ref, name)
        assert got == want, name
        if name != "scaled_camera_info":
            assert bytes(got.data) == outputs[name].tobytes(), name
    np.testing.assert_array_equal(image_to_array(_wire(messages["normals"], "normals")), outputs["normals"])
    assert cloud_to_points(_wire(messages["points"], "points")).tobytes() == outputs["points"].tobytes()


def test_a_message_keeps_the_bytes_it_was_made_from():
    """Strided input is made contiguous, and the message holds its own reference to the bytes: they stay valid
    when the caller drops its array (the node publishes before reusing a buffer, never after freeing one)."""
    rgb = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    strided = rgb[:, ::2]
    want = _wire(_image(np.ascontiguousarray(strided), "rgb8"), "segmentation/color")
    msg = array_to_image(strided, HEADER, "rgb8")
    del strided, rgb
    assert _wire(msg, "segmentation/color") == want
    points = np.zeros((2, 3), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4")])
    points["label"] = np.arange(6).reshape(2, 3)
    cloud = points_to_cloud(points[:, ::-1], HEADER)
    assert cloud_to_points(_wire(cloud, "points"))["label"].tolist() == [[2, 1, 0], [5, 4, 3]]
