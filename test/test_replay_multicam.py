"""``mtshare replay`` of a bag with two colour cameras (different sizes, different frame counts): each
``--image-topic`` is replayed through its own stream and reported on its own."""

from __future__ import annotations

import json

import numpy as np
from test_replay import _image, _writer_types, read_bag, write_bag

from mtshare_ros.replay import cli as replay_cli


def test_two_image_topics_are_two_reports(tmp_path, capsys):
    _, ts = _writer_types()
    rng = np.random.default_rng(2)
    msgs = []
    for topic, (h, w), n in (("/left/image_raw", (240, 320), 3), ("/right/image_raw", (120, 160), 2)):
        for i in range(n):
            t = 10**9 + i * 10**8
            msgs.append((topic, "sensor_msgs/msg/Image", t,
                         _image(ts, t, topic.split("/")[1], rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "rgb8")))
    bag = write_bag(tmp_path / "two", msgs)
    out = tmp_path / "out"
    code = replay_cli.main([str(bag), "--out", str(out), "--image-topic", "/left/image_raw",
                            "--image-topic", "/right/image_raw", "--quiet"])
    assert code == 0, capsys.readouterr().err
    for cam, frames in (("left_image_raw", 3), ("right_image_raw", 2)):
        report = json.loads((out / "two" / cam / "metrics.json").read_text())
        assert report["topics"]["image"] == f"/{cam.replace('_image_raw', '')}/image_raw"
        assert report["summary"]["processed"] == frames
        results = read_bag(out / "two" / cam / "results")
        assert len(results["/mtshare/depth"]) == frames
    summary = json.loads((out / "summary.json").read_text())
    assert [r["bag"] for r in summary["bags"]] == ["two/left_image_raw", "two/right_image_raw"]
    assert replay_cli.main([str(bag), "--out", str(tmp_path / "x"), "--image-topic", "/left/image_raw",
                            "--image-topic", "/left/image_raw", "--quiet"]) == 2
