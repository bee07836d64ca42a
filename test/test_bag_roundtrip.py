"""Camera bags: written with rosbags, read back byte-exact, with the documented topics, types and stamps (the
package's own layout and a Kinect driver's)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore
from test_real_frames import TILTED, K, plane_depth, write_frame

from mtshare_ros.data.bag import read_camera_bag, write_camera_bag
from mtshare_ros.data.bag_cli import main as make_bag_main
from mtshare_ros.data.synthetic import render_sequence
from mtshare_ros.replay.frames import open_reader
from mtshare_ros.replay.topics import choose_topics, survey

EXPECTED = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/depth/image_raw": "sensor_msgs/msg/Image",
    "/gt/segmentation": "sensor_msgs/msg/Image",
    "/gt/normals": "sensor_msgs/msg/Image",
}


@pytest.fixture(scope="module")
def frames():
    return list(render_sequence(1, 3, 48, 64, fps=20.0))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_round_trip_byte_exact(tmp_path, frames, storage):
    path = tmp_path / "bag"
    assert write_camera_bag(path, frames, storage=storage) == 3
    ts = get_typestore(Stores.ROS2_KILTED)
    with Reader(path) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == EXPECTED
        assert reader.message_count == 15
        by_topic: dict[str, list] = {}
        for conn, stamp, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            header_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            assert header_ns == stamp and msg.header.frame_id == "camera_color_optical_frame"
            by_topic.setdefault(conn.topic, []).append((stamp, msg))
    for k, f in enumerate(frames):
        stamp, img = by_topic["/camera/image_raw"][k]
        assert stamp - by_topic["/camera/image_raw"][0][0] == round(k / 20.0 * 1e9)
        assert img.encoding == "rgb8" and (img.height, img.width, img.step) == (48, 64, 64 * 3)
        assert bytes(img.data) == f.rgb.tobytes()
        _, depth = by_topic["/camera/depth/image_raw"][k]
        assert depth.encoding == "32FC1" and depth.is_bigendian == 0
        expected_depth = np.where(f.depth > 0, f.depth, np.nan).astype("<f4")
        assert bytes(depth.data) == expected_depth.tobytes()
        _, seg = by_topic["/gt/segmentation"][k]
        assert seg.encoding == "mono8" and bytes(seg.data) == f.segmentation.tobytes()
        _, nrm = by_topic["/gt/normals"][k]
        assert nrm.encoding == "32FC3" and bytes(nrm.data) == f.normals.astype("<f4").tobytes()
        _, info = by_topic["/camera/camera_info"][k]
        assert np.array_equal(np.asarray(info.k).reshape(3, 3), f.K)
        assert np.array_equal(np.asarray(info.p).reshape(3, 4)[:, :3], f.K)
    # The reader helper gives back the same arrays (NaN depth -> 0).
    back = list(read_camera_bag(path))
    assert len(back) == 3
    for f, b in zip(frames, back, strict=True):
        assert np.array_equal(b.rgb, f.rgb) and np.array_equal(b.depth, f.depth)
        assert np.array_equal(b.segmentation, f.segmentation) and np.array_equal(b.normals, f.normals)


def test_bag_without_ground_truth_and_errors(tmp_path, frames):
    path = tmp_path / "cam"
    write_camera_bag(path, frames[:2], ground_truth=False)
    with Reader(path) as reader:
        assert {c.topic for c in reader.connections} == {"/camera/image_raw", "/camera/camera_info"}
    back = list(read_camera_bag(path))
    assert len(back) == 2 and back[0].depth is None and back[0].normals is None
    with pytest.raises(FileExistsError, match="cam: bag already exists"):
        write_camera_bag(path, frames)
    with pytest.raises(ValueError, match="storage must be 'mcap' or 'sqlite3'"):
        write_camera_bag(tmp_path / "x", frames, storage="db3")
    with pytest.raises(FileNotFoundError, match="nope: bag not found"):
        list(read_camera_bag(tmp_path / "nope"))


def test_make_bag_cli(tmp_path):
    out = tmp_path / "cli_bag"
    assert make_bag_main(["--out", str(out), "--frames", "2", "--height", "30", "--width", "40", "--quiet"]) == 0
    assert (out / "cli_bag.mcap").is_file()
    back = list(read_camera_bag(out))
    assert len(back) == 2 and back[0].rgb.shape == (30, 40, 3)
    assert make_bag_main(["--out", str(out), "--frames", "2"]) == 2  # exists, no --force


def test_reader_groups_by_header_stamp_and_reuses_camera_info(tmp_path, frames):
    """A recorded-style bag: camera_info only once, messages logged slightly after their header stamps."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from mtshare_ros.data.bag import _Messages

    ts = get_typestore(Stores.ROS2_KILTED)
    msgs = _Messages(ts, "cam_optical")
    path = tmp_path / "recorded"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        img = writer.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        info = writer.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        for k, f in enumerate(frames):
            stamp = 10**9 + k * 50_000_000
            if k == 0:
                m = msgs.info(stamp, f.K, *f.rgb.shape[:2])
                writer.write(info, stamp + 1000, ts.serialize_cdr(m, m.__msgtype__))
            m = msgs.image(stamp, f.rgb, "rgb8")
            writer.write(img, stamp + 2000 + k, ts.serialize_cdr(m, m.__msgtype__))
    back = list(read_camera_bag(path))
    assert [b.stamp_ns for b in back] == [10**9 + k * 50_000_000 for k in range(3)]
    assert all(np.array_equal(b.K, frames[0].K) for b in back)
    assert all(np.array_equal(b.rgb, f.rgb) for b, f in zip(back, frames, strict=True))


def test_make_bag_from_stored_sequence(tmp_path):
    from mtshare_ros.data.synthetic import load_sequence, write_dataset

    root = tmp_path / "ds"
    write_dataset(root, num_rooms=2, frames_per_room=2, height=30, width=40, seed=2, val_fraction=0.5,
                  progress=False)
    out = tmp_path / "seq_bag"
    assert make_bag_main(["--out", str(out), "--from-dataset", str(root), "--storage", "sqlite3", "--quiet"]) == 0
    stored = list(load_sequence(root, "s02000007"))  # the val room
    back = list(read_camera_bag(out))
    assert len(back) == 2
    for f, b in zip(stored, back, strict=True):
        assert np.array_equal(b.rgb, f.rgb) and np.array_equal(b.segmentation, f.segmentation)
        assert np.array_equal(b.depth, f.depth)
    assert make_bag_main(["--out", str(tmp_path / "x"), "--from-dataset", str(root), "--sequence", "nope"]) == 2


def test_make_bag_from_rgbd_writes_a_kinect_driver_bag(tmp_path):
    """Real frames in the 7-Scenes layout as a Kinect v1 driver records them: bgr8 colour, 16UC1 millimetre
    registered depth (0 and the sensor's 65535 both 0 = invalid), a camera_info with K beside each, one optical
    frame, 30 Hz stamps; replay finds the colour topic and its camera_info unaided."""
    root = tmp_path / "real"
    root.mkdir()
    np.savetxt(root / "camera-intrinsics.txt", K)
    for i in range(4):
        write_frame(root, i, plane_depth(TILTED, -2.0), holes=i == 1)
    out = tmp_path / "kinect"
    assert make_bag_main(["--out", str(out), "--from-rgbd", str(root), "--first", "1", "--frames", "3",
                          "--quiet"]) == 0
    ts = get_typestore(Stores.ROS2_KILTED)
    with Reader(out) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/camera/rgb/image_raw": "sensor_msgs/msg/Image", "/camera/rgb/camera_info": "sensor_msgs/msg/CameraInfo",
            "/camera/depth_registered/image_raw": "sensor_msgs/msg/Image",
            "/camera/depth_registered/camera_info": "sensor_msgs/msg/CameraInfo"}
        msgs: dict[str, list] = {}
        for conn, stamp, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            assert msg.header.frame_id == "camera_rgb_optical_frame"
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
            msgs.setdefault(conn.topic, []).append((stamp, msg))
    stamps = [s for s, _ in msgs["/camera/rgb/image_raw"]]
    assert [s - stamps[0] for s in stamps] == [0, round(1e9 / 30), round(2e9 / 30)]
    for k, i in enumerate((1, 2, 3)):
        img, depth = msgs["/camera/rgb/image_raw"][k][1], msgs["/camera/depth_registered/image_raw"][k][1]
        assert img.encoding == "bgr8" and (img.height, img.width) == (96, 128)
        bgr = cv2.imread(str(root / f"frame-{i:06d}.color.jpg"))
        assert bytes(img.data) == bgr.tobytes()
        mm = cv2.imread(str(root / f"frame-{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED)
        assert depth.encoding == "16UC1" and bytes(depth.data) == np.where(mm == 65535, 0, mm).astype("<u2").tobytes()
        for topic in ("/camera/rgb/camera_info", "/camera/depth_registered/camera_info"):
            assert np.array_equal(np.asarray(msgs[topic][k][1].k).reshape(3, 3), K)
    holes = cv2.imread(str(root / "frame-000001.depth.png"), cv2.IMREAD_UNCHANGED)
    first = np.frombuffer(bytes(msgs["/camera/depth_registered/image_raw"][0][1].data), "<u2").reshape(96, 128)
    assert (holes[12, 12], holes[31, 61]) == (0, 65535) and (first[12, 12], first[31, 61]) == (0, 0)
    reader = open_reader(out)
    try:
        topics = choose_topics(survey(reader, out), out)
    finally:
        reader.close()
    assert (topics.image, topics.info) == ("/camera/rgb/image_raw", "/camera/rgb/camera_info")
    assert any("--gt-depth-topic /camera/depth_registered/image_raw" in n for n in topics.notes)
    assert make_bag_main(["--out", str(tmp_path / "x"), "--from-rgbd", str(root), "--frames", "5", "--quiet"]) == 2
    assert not (tmp_path / "x").exists()  # frame 4 is missing: no half-written bag
