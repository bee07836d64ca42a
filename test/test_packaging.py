"""What an install (pip or colcon, both go through setup.py) puts where ROS expects it."""

import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_installs_launch_config_rviz_and_index(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mtshare_ros-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = [n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n]
    for expected in (
        "share/ament_index/resource_index/packages/mtshare_ros",
        "share/mtshare_ros/package.xml",
        "share/mtshare_ros/launch/mtshare.launch.py",
        "share/mtshare_ros/config/mtshare.yaml",
        "share/mtshare_ros/config/fastdds_shm.xml",
        "share/mtshare_ros/config/mtshare.rviz",
    ):
        assert expected in data, f"{expected} missing from the wheel"
    weights = sorted((ROOT / "mtshare_ros" / "weights").glob("*.pt"))
    for w in weights:
        assert f"mtshare_ros/weights/{w.name}" in names, f"shipped weights {w.name} not packaged"
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mtshare_node = mtshare_ros.ros.node:main" in entry_points


def test_rviz_config_shows_the_node_outputs():
    cfg = yaml.safe_load((ROOT / "config" / "mtshare.rviz").read_text())
    displays = cfg["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if "Topic" in d}
    assert {
        "/mtshare/segmentation/color",
        "/mtshare/depth/color",
        "/mtshare/normals/color",
        "/mtshare/points",
    } <= topics
    cloud = next(d for d in displays if d["Class"] == "rviz_default_plugins/PointCloud2")
    assert cloud["Color Transformer"] == "RGB8"
