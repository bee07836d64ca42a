"""``mtshare replay`` and ``mtshare visualize`` on real bags written here: the package's own (``mtshare make-bag``, both
storage formats), one in the layout of a RealSense recording written with rosbags alone, and broken ones.

Frames are rendered once (one synthetic room, 3 frames at 240x320, stored as a dataset so that ``mtshare eval``
can score the very same frames); every replay runs the real predictor, the live test a real node process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mtshare_ros.data import bag_cli
from mtshare_ros.data.synthetic import list_sequences, load_sequence, write_dataset
from mtshare_ros.replay import cli as replay_cli
from mtshare_ros.replay import visualize_cli
from mtshare_ros.replay.params import ParamError, resolve
from mtshare_ros.replay.topics import BagError, TopicSurvey, pick_image, sibling_info
from mtshare_ros.training.metrics import HEADLINE

FRAMES = 3
RESULT_TOPICS = ("segmentation", "depth", "normals", "segmentation/color", "depth/color", "normals/color", "points",
                 "scaled_camera_info")
REPORT_FILES = ("report.md", "metrics.json", "frames.csv", "timeline.png", "metrics.png", "montage.png", "replay.mp4")


# ----------------------------------------------------------------------------------------------- bags
@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "synthetic"
    write_dataset(root, num_rooms=1, frames_per_room=FRAMES, height=240, width=320, seed=5, val_fraction=0,
                  progress=False)
    return root


@pytest.fixture(scope="module")
def bags(dataset, tmp_path_factory) -> dict[str, Path]:
    """The package's own bags of the dataset's sequence, written by ``mtshare make-bag``."""
    folder = tmp_path_factory.mktemp("bags")
    out = {}
    for storage in ("mcap", "sqlite3"):
        out[storage] = folder / f"room_{storage}"
        assert bag_cli.main(["--from-dataset", str(dataset), "--out", str(out[storage]), "--storage", storage,
                             "--quiet"]) == 0
    return out


def _writer_types():
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_HUMBLE)  # a recording from another distribution than the package's
    return ts, ts.types


def _header(types, stamp_ns: int, frame_id: str):
    return types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)


def _image(types, stamp_ns, frame_id, array, encoding):
    data = np.ascontiguousarray(array)
    return types["sensor_msgs/msg/Image"](header=_header(types, stamp_ns, frame_id), height=data.shape[0],
                                          width=data.shape[1], encoding=encoding, is_bigendian=0, step=data.strides[0],
                                          data=data.reshape(-1).view(np.uint8))


def _info(types, stamp_ns, frame_id, K, h, w):
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types["sensor_msgs/msg/CameraInfo"](header=_header(types, stamp_ns, frame_id), height=h, width=w,
                                               distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(9),
                                               r=np.eye(3).reshape(9), p=P.reshape(12), binning_x=0, binning_y=0,
                                               roi=roi)


def write_bag(path: Path, messages: list[tuple[str, str, int, object]], storage: str = "mcap") -> Path:
    """A rosbag2 written with rosbags alone: (topic, msgtype, bag time ns, message) in any order."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts, _ = _writer_types()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        conns = {}
        for topic, msgtype, t, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], t, ts.serialize_cdr(msg, msgtype))
    return path


@pytest.fixture(scope="module")
def realsense_bag(dataset, tmp_path_factory) -> Path:
    """The layout of ``ros2 launch realsense2_camera rs_launch.py align_depth.enable:=true`` recorded with
    compressed colour: JPEG colour, 16UC1 millimetre aligned depth stamped a few ms off the colour, raw depth and
    infrared, camera_info for each, IMU at 200 Hz and TF."""
    _, T = _writer_types()
    seq = list_sequences(dataset)[0]
    msgs = []
    t0 = 1_710_000_000 * 10**9
    ns = "/camera/camera"
    for k, frame in enumerate(load_sequence(dataset, seq)):
        t = t0 + int(k * 1e9 / 15)
        h, w = frame.rgb.shape[:2]
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        colour = T["sensor_msgs/msg/CompressedImage"](header=_header(T, t, "camera_color_optical_frame"),
                                                      format="rgb8; jpeg compressed bgr8", data=jpeg.reshape(-1))
        msgs.append((f"{ns}/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage", t, colour))
        msgs.append((f"{ns}/color/camera_info", "sensor_msgs/msg/CameraInfo", t,
                     _info(T, t, "camera_color_optical_frame", frame.K, h, w)))
        td = t + 4_000_000  # the depth camera's own stamp
        mm = np.round(frame.depth * 1000).astype(np.uint16)
        msgs.append((f"{ns}/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image", td + 2_000_000,
                     _image(T, td, "camera_color_optical_frame", mm, "16UC1")))
        msgs.append((f"{ns}/depth/image_rect_raw", "sensor_msgs/msg/Image", td,
                     _image(T, td, "camera_depth_optical_frame", mm, "16UC1")))
        msgs.append((f"{ns}/depth/camera_info", "sensor_msgs/msg/CameraInfo", td,
                     _info(T, td, "camera_depth_optical_frame", frame.K, h, w)))
        msgs.append((f"{ns}/infra1/image_rect_raw", "sensor_msgs/msg/Image", td,
                     _image(T, td, "camera_infra1_optical_frame", frame.rgb[..., 1], "mono8")))
    vec = T["geometry_msgs/msg/Vector3"]
    quat = T["geometry_msgs/msg/Quaternion"]
    for i in range(int(FRAMES / 15 * 200)):
        t = t0 + i * 5_000_000
        imu = T["sensor_msgs/msg/Imu"](
            header=_header(T, t, "camera_imu_optical_frame"), orientation=quat(x=0, y=0, z=0, w=1),
            orientation_covariance=np.zeros(9), angular_velocity=vec(x=0, y=0, z=0),
            angular_velocity_covariance=np.zeros(9), linear_acceleration=vec(x=0, y=9.8, z=0),
            linear_acceleration_covariance=np.zeros(9))
        msgs.append((f"{ns}/imu", "sensor_msgs/msg/Imu", t, imu))
    tf = T["tf2_msgs/msg/TFMessage"](transforms=[T["geometry_msgs/msg/TransformStamped"](
        header=_header(T, t0, "camera_link"), child_frame_id="camera_color_optical_frame",
        transform=T["geometry_msgs/msg/Transform"](translation=vec(x=0, y=0.015, z=0), rotation=quat(x=-0.5, y=0.5,
                                                                                                      z=-0.5, w=0.5)))])
    msgs.append(("/tf_static", "tf2_msgs/msg/TFMessage", t0, tf))
    return write_bag(tmp_path_factory.mktemp("rs") / "realsense", msgs)


def replay(args: list[str], capsys) -> tuple[int, str, str]:
    code = replay_cli.main([*map(str, args), "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """Every message of a bag by topic, deserialized with rosbags: (bag time, message)."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    out: dict[str, list] = {}
    with Reader(path) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, ts.deserialize_cdr(raw, conn.msgtype)))
    return out


def stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def check_video(path: Path, frames: int) -> None:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        assert img.shape[0] > 200 and img.shape[1] >= 4 * 320
        n += 1
    cap.release()
    assert n == frames, f"{path}: {n} frames played back, expected {frames}"


def assert_nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was written by a failed run"
    assert not list(out.parent.glob(f".{out.name}.partial-*")), "a staging folder was left behind"


# ----------------------------------------------------------------------------------------------- offline
@pytest.fixture(scope="module")
def multi_run(bags, tmp_path_factory):
    """Both make-bag bags (MCAP and sqlite3) in one folder, replayed with one command."""
    folder = tmp_path_factory.mktemp("many")
    for bag in bags.values():
        shutil.copytree(bag, folder / bag.name)
    out = tmp_path_factory.mktemp("runs") / "many"
    code = replay_cli.main([str(folder), "--out", str(out), "--quiet"])
    return code, out


def test_replay_of_make_bag_bags_in_both_storage_formats(multi_run, bags):
    code, out = multi_run
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["bag"] for r in summary["bags"]] == sorted(b.name for b in bags.values())
    assert all(r["status"] == "ok" for r in summary["bags"])
    assert "| [room_mcap](room_mcap/report.md) | ok | 3 |" in (out / "summary.md").read_text()
    for name in ("room_mcap", "room_sqlite3"):
        run = out / name
        for f in REPORT_FILES:
            assert (run / f).is_file() and (run / f).stat().st_size > 0, f"{name}/{f}"
        m = json.loads((run / "metrics.json").read_text())
        assert m["topics"]["image"] == "/camera/image_raw" and m["topics"]["camera_info"] == "/camera/camera_info"
        assert m["topics"]["ground_truth"] == {"depth": "/camera/depth/image_raw", "segmentation": "/gt/segmentation",
                                               "normals": "/gt/normals"}, "the package's own GT maps automatically"
        s = m["summary"]
        assert (s["frames"], s["processed"], s["dropped"], s["rejected"]) == (FRAMES, FRAMES, 0, 0)
        assert s["latency_ms"]["p50"] > 0 and s["latency_ms"]["p95"] >= s["latency_ms"]["p50"] and s["fps"] > 0
        c = s["compute"]
        assert c["sharing"] and 0 < c["gmacs_executed_per_frame"] < c["gmacs_independent_per_frame"]
        assert set(c["recomputed_fraction"]) >= {"depth", "normals"}
        for task in ("segmentation", "depth", "normals"):
            assert m["metrics"][task]["frames"] == FRAMES
            for key in HEADLINE[task]:
                assert isinstance(m["metrics"][task][key], float)
        assert len(m["per_frame"]) == FRAMES and all(
            "depth.abs_rel" in f and "gmacs_executed" in f for f in m["per_frame"])
        assert m["per_frame"][0]["segmentation.mIoU"] is not None
        check_video(run / "replay.mp4", FRAMES)
        report = (run / "report.md").read_text()
        for text in ("![sample frames](montage.png)", "![latency and compute per frame](timeline.png)", "abs_rel",
                     "GMACs executed"):
            assert text in report


def test_output_bag_has_inputs_and_every_result_stamped_like_the_inputs(multi_run, bags):
    _, out = multi_run
    inp = read_bag(bags["mcap"])
    res = read_bag(out / "room_mcap" / "results")
    for topic in ("/camera/image_raw", "/camera/camera_info", "/gt/segmentation", "/gt/normals"):
        assert [t for t, _ in res[topic]] == [t for t, _ in inp[topic]], f"{topic} copied unchanged"
    image_times = {stamp(m): t for t, m in inp["/camera/image_raw"]}
    for name in RESULT_TOPICS:
        msgs = res[f"/mtshare/{name}"]
        assert len(msgs) == FRAMES, name
        for t, msg in msgs:
            assert image_times[stamp(msg)] == t, f"{name}: written at its image's bag time"
            assert msg.header.frame_id == "camera_color_optical_frame"
    depth = res["/mtshare/depth"][0][1]
    assert (depth.encoding, depth.height, depth.width) == ("32FC1", 240, 320)
    assert res["/mtshare/scaled_camera_info"][0][1].k[0] > 0


def test_output_bag_reads_with_the_mcap_ros2_reader(multi_run):
    """What Foxglove does: the MCAP's own schemas (ros2msg) decode every message, no ROS install involved."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    _, out = multi_run
    files = list((out / "room_mcap" / "results").glob("*.mcap"))
    assert len(files) == 1
    seen: dict[str, int] = {}
    with files[0].open("rb") as f:
        for schema, channel, _, msg in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            assert schema.encoding == "ros2msg"
            seen[channel.topic] = seen.get(channel.topic, 0) + 1
            if channel.topic == "/mtshare/normals":
                assert msg.encoding == "32FC3" and len(msg.data) == 240 * 320 * 12
            if channel.topic == "/mtshare/points":
                assert [f.name for f in msg.fields] == ["x", "y", "z", "rgb", "label"]
    assert all(seen.get(f"/mtshare/{n}") == FRAMES for n in RESULT_TOPICS), seen
    assert seen["/camera/image_raw"] == FRAMES


def test_metrics_equal_mtshare_eval_on_the_same_frames(multi_run, dataset, tmp_path):
    from mtshare_ros.training import eval_cli

    _, out = multi_run
    replayed = json.loads((out / "room_mcap" / "metrics.json").read_text())["metrics"]
    assert eval_cli.main(["--root", str(dataset), "--split", "train", "--sharing", "0.05:0.1", "--batch-size", "1",
                          "--num-workers", "0", "--out", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    for task, keys in HEADLINE.items():
        # the node's input path (bag image -> message -> tensor) and the dataset loader may differ in the
        # last float bit: a pixel on a threshold (normals within 30 deg) may flip; two pixels' worth is allowed
        near = 2.0 / evaluated[task]["pixels"]
        for key in keys:
            assert replayed[task][key] == pytest.approx(evaluated[task][key], rel=1e-6, abs=near), f"{task} {key}"
        assert replayed[task]["pixels"] == evaluated[task]["pixels"], task


def test_realsense_recording_as_it_is(realsense_bag, tmp_path, capsys):
    out = tmp_path / "rs"
    code, stdout, err = replay([realsense_bag, "--out", out, "--output-storage", "sqlite3",
                                "--gt-depth-topic", "/camera/camera/aligned_depth_to_color/image_raw"], capsys)
    assert code == 0, err
    assert "image topic: /camera/camera/color/image_raw/compressed" in err
    assert "camera_info: /camera/camera/color/camera_info" in err
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"]["processed"] == FRAMES
    assert set(m["metrics"]) == {"depth"} and m["metrics"]["depth"]["frames"] == FRAMES
    assert 0 < m["metrics"]["depth"]["abs_rel"] < 1 and m["metrics"]["depth"]["coverage"] > 0.9
    assert list((out / "results").glob("*.db3")), "--output-storage sqlite3"
    res = read_bag(out / "results")
    assert "/camera/camera/imu" not in res and "/tf_static" not in res, "only the camera topics are copied"
    assert len(res["/mtshare/points"]) == FRAMES, "camera_info found, so points are made"
    assert "depth abs_rel" in stdout and "report:" in stdout


def test_16uc1_millimetres_and_32fc1_metres_give_the_same_ground_truth(dataset):
    from mtshare_ros.replay.frames import gt_array

    _, T = _writer_types()
    frame = next(load_sequence(dataset, list_sequences(dataset)[0]))
    mm = np.round(frame.depth * 1000).astype(np.uint16)
    metres = np.where(frame.depth > 0, mm / 1000.0, np.nan).astype(np.float32)
    a = gt_array("depth", _image(T, 0, "f", mm, "16UC1"), "/d")
    b = gt_array("depth", _image(T, 0, "f", metres, "32FC1"), "/d")
    assert np.array_equal(a == 0, frame.depth <= 0) and np.allclose(a, b, atol=1e-6)


def test_temporal_sharing_and_stream_breaks(bags, tmp_path, capsys):
    out = tmp_path / "temporal"
    code, _, err = replay([bags["mcap"], "--out", out, "--param", "temporal.enabled=true"], capsys)
    assert code == 0, err
    c = json.loads((out / "metrics.json").read_text())["summary"]["compute"]
    assert c["temporal"] and 0 < c["keyframe_rate"] < 1, "frames after the first reuse the stream"
    assert "segmentation" in c["recomputed_fraction"]
    # why each keyframe came: counted over the whole replay, and in the report
    assert c["keyframe_reasons"].get("start") == 1 and sum(c["keyframe_reasons"].values()) == round(
        c["keyframe_rate"] * FRAMES), c
    assert "Keyframes by reason: " in (out / "report.md").read_text()
    out2 = tmp_path / "breaks"
    code, _, err = replay([bags["mcap"], "--out", out2, "--param", "temporal.enabled=true",
                           "--param", "temporal.max_stamp_gap=0.01"], capsys)
    assert code == 0, err
    s = json.loads((out2 / "metrics.json").read_text())["summary"]
    assert len(s["stream_breaks"]) == FRAMES - 1 and s["compute"]["keyframe_rate"] == 1.0
    assert s["compute"]["keyframe_reasons"] == {"start": FRAMES}, "every break restarts the stream"


def test_visualize_makes_the_montage_and_the_video(multi_run, bags, tmp_path, capsys):
    _, out = multi_run
    pictures = tmp_path / "pictures"
    assert visualize_cli.main([str(out / "room_sqlite3" / "results"), "--out", str(pictures), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "3 frames, 3 with results" in captured.out
    assert cv2.imread(str(pictures / "montage.png")).shape[1] == 320 * 7, "input, 3 tasks, 3 error maps"
    check_video(pictures / "replay.mp4", FRAMES)
    assert visualize_cli.main([str(bags["mcap"]), "--out", str(tmp_path / "none"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no result topics" in err[0] and str(bags["mcap"]) in err[0]
    assert_nothing_written(tmp_path / "none")


# ----------------------------------------------------------------------------------------------- errors
def _single_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("mtshare replay:")]
    assert len(lines) == 1, err
    return lines[0]


def test_bag_without_a_colour_image_topic(tmp_path, capsys):
    _, T = _writer_types()
    depth = np.full((24, 32), 1500, np.uint16)
    bag = write_bag(tmp_path / "depth_only", [
        ("/camera/depth/image_rect_raw", "sensor_msgs/msg/Image", 10, _image(T, 10, "d", depth, "16UC1")),
        ("/camera/infra1/image_rect_raw", "sensor_msgs/msg/Image", 10, _image(T, 10, "i", depth.astype(np.uint8),
                                                                              "mono8")),
    ])
    out = tmp_path / "out"
    code, _, err = replay([bag, "--out", out], capsys)
    line = _single_error(err)
    assert code == 1 and str(bag) in line and "no colour image topic" in line and "16UC1" in line
    assert_nothing_written(out)


def test_unknown_encoding(tmp_path, capsys):
    _, T = _writer_types()
    yuv = np.zeros((24, 32, 2), np.uint8)
    bag = write_bag(tmp_path / "yuv", [("/cam/image_raw", "sensor_msgs/msg/Image", 10,
                                        _image(T, 10, "c", yuv, "yuv422"))])
    out = tmp_path / "out"
    code, _, err = replay([bag, "--out", out], capsys)
    line = _single_error(err)
    assert code == 1 and "/cam/image_raw" in line and "'yuv422' is not supported" in line
    code, _, err = replay([bag, "--out", out, "--image-topic", "/cam/image_raw"], capsys)
    line = _single_error(err)
    assert code == 1 and "--image-topic /cam/image_raw" in line and "'yuv422'" in line and "rgb8" in line
    assert_nothing_written(out)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_bag(bags, storage, tmp_path, capsys):
    bag = tmp_path / "cut"
    shutil.copytree(bags[storage], bag)
    (data,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    out = tmp_path / "out"
    code, _, err = replay([bag, "--out", out], capsys)
    line = _single_error(err)
    assert code == 1 and str(bag) in line and "cannot read rosbag2" in line
    assert_nothing_written(out)


def test_missing_ground_truth_topic(bags, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = replay([bags["mcap"], "--out", out, "--gt-depth-topic", "/camera/aligned_depth"], capsys)
    line = _single_error(err)
    assert code == 1 and "--gt-depth-topic /camera/aligned_depth is not in the bag" in line and "32FC1" in line
    code, _, err = replay([bags["mcap"], "--out", out, "--gt-normals-topic", "/gt/segmentation"], capsys)
    line = _single_error(err)
    assert code == 1 and "/gt/segmentation is Image mono8, expected" in line
    assert_nothing_written(out)


def test_a_failed_bag_among_several_is_listed_not_written(bags, tmp_path, capsys):
    folder = tmp_path / "bags"
    shutil.copytree(bags["sqlite3"], folder / "good")
    (folder / "broken.mcap").write_bytes(b"\x89MCAP0\r\n" + bytes(100))
    out = tmp_path / "out"
    code, _, err = replay([folder, "--out", out], capsys)
    assert code == 1
    assert (out / "good" / "report.md").is_file() and not (out / "broken").exists()
    rows = {r["bag"]: r for r in json.loads((out / "summary.json").read_text())["bags"]}
    assert rows["good"]["status"] == "ok" and rows["broken"]["status"] == "failed"
    assert "broken.mcap" in rows["broken"]["error"] and "failed:" in (out / "summary.md").read_text()


def test_bad_arguments_fail_before_any_work(bags, tmp_path, capsys):
    out = tmp_path / "out"
    for args, text in ((["--param", "sharing.thresold=0.1"], "did you mean 'sharing.threshold'"),
                       (["--param", "depth.min=30"], "depth.min (30.0) must be below depth.max"),
                       (["--params-file", tmp_path / "missing.yaml"], "missing.yaml: cannot read"),
                       (["--node-namespace", "/x"], "--node-namespace needs --live"),
                       (["--live", "--node-namespace", "/x", "--param", "tasks=[depth]"], "keeps its own")):
        code, _, err = replay([bags["mcap"], "--out", out, *args], capsys)
        assert code == 2 and text in _single_error(err), err
    code, _, err = replay([tmp_path / "nope", "--out", out], capsys)
    assert code == 2 and "nope: no such bag" in _single_error(err)
    assert_nothing_written(out)


def test_params_file_layouts():
    values, warnings = resolve(Path(__file__).parent.parent / "config" / "mtshare.yaml", ["sharing.threshold:=0.2"])
    assert values["sharing.threshold"] == 0.2 and values["tasks"] == ["segmentation", "depth", "normals"]
    assert all("not a parameter of the node" in w for w in warnings)


def test_params_file_nested_and_named(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/robot/mtshare:\n  ros__parameters:\n    depth:\n      max: 8\n    tasks: [depth]\n    bogus: 1\n")
    values, warnings = resolve(f, [])
    assert values["depth.max"] == 8.0 and values["tasks"] == ["depth"] and warnings == [
        f"{f}: bogus is not a parameter of the node; ignored"]
    f.write_text("other_node:\n  ros__parameters:\n    depth.max: 8\n")
    with pytest.raises(ParamError, match="no ros__parameters for node 'mtshare'"):
        resolve(f, [])


# ----------------------------------------------------------------------------------------------- topic choice
def _survey(*rows) -> dict[str, TopicSurvey]:
    kinds = {"I": "sensor_msgs/msg/Image", "C": "sensor_msgs/msg/CompressedImage", "K": "sensor_msgs/msg/CameraInfo",
             "U": "sensor_msgs/msg/Imu", "P": "sensor_msgs/msg/PointCloud2"}
    return {name: TopicSurvey(name, kinds[kind], 30, enc) for name, kind, enc in rows}


@pytest.mark.parametrize("layout,image,info", [
    ("realsense", "/camera/camera/color/image_raw", "/camera/camera/color/camera_info"),
    ("zed", "/zed/zed_node/rgb/image_rect_color", "/zed/zed_node/rgb/camera_info"),
    ("oak", "/oak/rgb/image_raw", "/oak/rgb/camera_info"),
    ("isaac", "/rgb", "/camera_info"),
])
def test_colour_topic_of_real_driver_layouts(layout, image, info):
    layouts = {
        "realsense": _survey(("/camera/camera/color/image_raw", "I", "rgb8"),
                             ("/camera/camera/color/image_raw/compressed", "C", "rgb8; jpeg compressed bgr8"),
                             ("/camera/camera/color/image_raw/compressedDepth", "C", "rgb8; compressedDepth"),
                             ("/camera/camera/color/camera_info", "K", ""),
                             ("/camera/camera/aligned_depth_to_color/image_raw", "I", "16UC1"),
                             ("/camera/camera/depth/image_rect_raw/compressed", "C", "jpeg"),
                             ("/camera/camera/infra1/image_rect_raw", "I", "mono8"),
                             ("/camera/camera/infra2/image_rect_raw", "I", "8UC1"),
                             ("/camera/camera/imu", "U", ""), ("/camera/camera/depth/color/points", "P", "")),
        "zed": _survey(("/zed/zed_node/left/image_rect_color", "I", "bgra8"),
                       ("/zed/zed_node/right/image_rect_color", "I", "bgra8"),
                       ("/zed/zed_node/rgb/image_rect_color", "I", "bgra8"),
                       ("/zed/zed_node/rgb/image_rect_color/compressed", "C", "bgra8; jpeg compressed bgr8"),
                       ("/zed/zed_node/rgb/camera_info", "K", ""), ("/zed/zed_node/left/camera_info", "K", ""),
                       ("/zed/zed_node/depth/depth_registered", "I", "32FC1"),
                       ("/zed/zed_node/confidence/confidence_map", "I", "32FC1")),
        "oak": _survey(("/oak/rgb/image_raw", "I", "bgr8"), ("/oak/rgb/camera_info", "K", ""),
                       ("/oak/stereo/image_raw", "I", "16UC1"), ("/oak/left/image_raw", "I", "mono8"),
                       ("/oak/right/image_raw", "I", "mono8"), ("/oak/imu/data", "U", "")),
        "isaac": _survey(("/rgb", "I", "rgb8"), ("/depth", "I", "32FC1"), ("/camera_info", "K", ""),
                         ("/instance_segmentation", "I", "32SC1"), ("/semantic_segmentation", "I", "rgba8")),
    }
    topics = layouts[layout]
    picked, notes = pick_image(topics, layout)
    assert picked.name == image, notes
    assert sibling_info(image, topics) == info
    assert sibling_info(image + "/compressed", topics) == info


def test_no_colour_topic_names_what_was_found():
    topics = _survey(("/camera/depth/image_raw", "I", "16UC1"), ("/camera/ir/image", "I", "mono8"))
    expected = (r"bagname: no colour image topic .*/camera/depth/image_raw \(Image 16UC1\): name says depth; "
                r"/camera/ir/image \(Image mono8\): name says ir")
    with pytest.raises(BagError, match=expected):
        pick_image(topics, "bagname")


# ----------------------------------------------------------------------------------------------- live
def test_live_mode_against_a_node_process(bags, tmp_path, capsys):
    out = tmp_path / "live"
    code, stdout, err = replay([bags["mcap"], "--out", out, "--live", "--rate", "0.5"], capsys)
    assert code == 0, err + ((out / "node.log").read_text() if (out / "node.log").exists() else "")
    m = json.loads((out / "metrics.json").read_text())
    s = m["summary"]
    assert m["mode"] == "live" and m["started_node"] and s["frames"] == FRAMES
    assert s["processed"] >= 1 and s["processed"] + s["dropped"] == FRAMES
    assert 0 < s["latency_ms"]["p50"] < 10_000
    assert s["node_diagnostics"].get("frames_received") not in (None, "0")
    assert s["compute"]["gmacs_executed_per_frame"] > 0
    res = read_bag(out / "results")
    inp = {stamp(msg): t for t, msg in read_bag(bags["mcap"])["/camera/image_raw"]}
    assert len(res["/mtshare/segmentation"]) == s["processed"]
    for name in RESULT_TOPICS:
        for t, msg in res[f"/mtshare/{name}"]:
            assert inp[stamp(msg)] == t, f"{name}: the node's output at its image's bag time"
    scored = [f for f in m["per_frame"] if f["status"] == "ok"]
    assert all(f["segmentation.mIoU"] is not None for f in scored)
    check_video(out / "replay.mp4", FRAMES)
    assert "live" in (out / "report.md").read_text() and (out / "node.log").is_file()


def test_live_mode_into_a_node_that_is_already_running(bags, tmp_path, capsys):
    from mtshare_ros.ros.harness import start_node_process, stop_process

    ns = "/replay_running"
    proc = start_node_process(ns, log_path=tmp_path / "node.log")
    try:
        out = tmp_path / "live"
        code, _, err = replay([bags["sqlite3"], "--out", out, "--live", "--rate", "0.5", "--node-namespace", ns],
                              capsys)
        assert code == 0, err + (tmp_path / "node.log").read_text()
        m = json.loads((out / "metrics.json").read_text())
        assert m["node_namespace"] == ns and not m["started_node"] and m["summary"]["processed"] >= 1
        assert proc.poll() is None, "replay leaves a node it did not start running"
    finally:
        stop_process(proc)


def test_help_of_both_commands():
    for cmd in ("replay", "visualize"):
        res = subprocess.run([sys.executable, "-m", "mtshare_ros.cli", cmd, "--help"], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0 and "usage: mtshare " + cmd in res.stdout
    res = subprocess.run([sys.executable, "-m", "mtshare_ros.cli", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert "replay" in res.stdout and "visualize" in res.stdout
