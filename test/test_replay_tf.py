"""Offline replay with ``temporal.motion_frame``: the bag's /tf and /tf_static give temporal sharing the camera's
image motion, as they give it to the node; a fixed frame the bag does not have falls back to the images with one
warning."""

from __future__ import annotations

import json

import pytest
from test_node_tf import BASE_TO_OPTICAL
from test_replay import _header, _image, _info, _writer_types, replay, write_bag
from test_tf_motion import _from_matrix

from mtshare_ros.data.motion import render_motion

FRAMES, FPS = 5, 30.0


def _tf(T, parent: str, child: str, stamp_ns: int, t):
    vec, quat = T["geometry_msgs/msg/Vector3"], T["geometry_msgs/msg/Quaternion"]
    x, y, z = map(float, t.translation)
    qx, qy, qz, qw = map(float, t.rotation)
    return T["geometry_msgs/msg/TransformStamped"](header=_header(T, stamp_ns, parent), child_frame_id=child,
                                                   transform=T["geometry_msgs/msg/Transform"](
                                                       translation=vec(x=x, y=y, z=z),
                                                       rotation=quat(x=qx, y=qy, z=qz, w=qw)))


@pytest.fixture(scope="module")
def pan_bag(tmp_path_factory):
    """A rendered slow pan as a robot records it: colour, camera_info, odom -> base_link on /tf at every frame's
    stamp (recorded a few ms after its image), base_link -> camera on /tf_static."""
    _, T = _writer_types()
    t0 = 1_710_000_000 * 10**9
    msgs = [("/tf_static", "tf2_msgs/msg/TFMessage", t0, T["tf2_msgs/msg/TFMessage"](
        transforms=[_tf(T, "base_link", "cam", t0, BASE_TO_OPTICAL)]))]
    for k, f in enumerate(render_motion(3_000_009, "slow_pan", FRAMES, FPS)):
        t = t0 + round(k * 1e9 / FPS)
        h, w = f.rgb.shape[:2]
        msgs.append(("/camera/image_raw", "sensor_msgs/msg/Image", t, _image(T, t, "cam", f.rgb, "rgb8")))
        msgs.append(("/camera/camera_info", "sensor_msgs/msg/CameraInfo", t, _info(T, t, "cam", f.K, h, w)))
        base = _from_matrix(f.pose) * BASE_TO_OPTICAL.inverse()
        msgs.append(("/tf", "tf2_msgs/msg/TFMessage", t + 3_000_000, T["tf2_msgs/msg/TFMessage"](
            transforms=[_tf(T, "odom", "base_link", t, base)])))
    return write_bag(tmp_path_factory.mktemp("tf") / "pan", msgs)


@pytest.mark.parametrize("fixed", ["odom", "nowhere"])
def test_offline_replay_takes_the_motion_from_the_bags_tf(pan_bag, tmp_path, capsys, fixed):
    out = tmp_path / fixed
    code, _, err = replay([pan_bag, "--out", out, "--param", "temporal.enabled=true", "--param",
                           f"temporal.motion_frame={fixed}"], capsys)
    assert code == 0, err
    c = json.loads((out / "metrics.json").read_text())["summary"]["compute"]
    warnings = [line for line in err.splitlines() if f"temporal.motion_frame '{fixed}'" in line]
    if fixed == "odom":  # every frame after the first (which has no previous frame to move from)
        assert c["motion_tf_fraction"] == pytest.approx((FRAMES - 1) / FRAMES) and not warnings, (c, err)
    else:
        assert c["motion_tf_fraction"] == 0.0 and c["keyframe_rate"] < 1.0, c
        assert len(warnings) == 1 and "frame 'nowhere' does not exist" in warnings[0], err
