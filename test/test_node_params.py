"""The node in this process: declared parameters, the launch file and params file that reference them,
and the rule that visualisation outputs cost nothing while nobody subscribes."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import yaml
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from mtshare_ros.ros.harness import spin_until
from mtshare_ros.ros.node import MtshareNode

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "launch" / "mtshare.launch.py"


@pytest.fixture(scope="module")
def node(ros_session):
    n = MtshareNode(namespace="/inproc")
    yield n
    n.destroy_node()


def test_every_parameter_has_a_description(node):
    for name, _param in node._parameters.items():
        if name == "use_sim_time":
            continue
        desc = node.describe_parameter(name)
        assert desc.description, f"parameter {name} has no description"


def launch_parameter_keys() -> set[str]:
    """Keys of the dict literals passed in ``parameters=[...]`` in the launch file."""
    keys: set[str] = set()
    for call in ast.walk(ast.parse(LAUNCH.read_text())):
        if isinstance(call, ast.Call):
            for kw in call.keywords:
                if kw.arg == "parameters":
                    for d in ast.walk(kw.value):
                        if isinstance(d, ast.Dict):
                            keys |= {k.value for k in d.keys if isinstance(k, ast.Constant)}
    return keys


def test_launch_file_and_params_file_reference_only_declared_parameters(node):
    declared = set(node._parameters)
    launch_keys = launch_parameter_keys()
    assert {"device", "use_sim_time", "autostart"} <= launch_keys
    assert launch_keys <= declared, f"launch file sets undeclared parameters {launch_keys - declared}"
    params = yaml.safe_load((ROOT / "config" / "mtshare.yaml").read_text())["/**"]["ros__parameters"]
    flat = set(params)
    assert flat <= declared, f"config/mtshare.yaml sets undeclared parameters {flat - declared}"


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros has no pip wheel")
def test_launch_description_builds():
    spec = importlib.util.spec_from_file_location("mtshare_launch", LAUNCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    desc = mod.generate_launch_description()
    names = {getattr(e, "name", None) for e in desc.entities}
    assert {"image_topic", "camera_info_topic", "namespace", "params_file", "device", "use_sim_time"} <= names


def test_visualisation_outputs_only_while_subscribed(node):
    from mtshare_ros.inference import Prediction

    node.trigger_configure()
    assert node.predictor is not None, "configure loads the model"
    pred = Prediction(
        size=(4, 6),
        scale=(1.0, 1.0),
        segmentation=np.zeros((4, 6), np.uint8),
        depth=np.ones((4, 6), np.float32),
        normals=np.tile(np.array([0, 0, -1], np.float32), (4, 6, 1)),
        image=np.zeros((4, 6, 3), np.uint8),
    )
    out = node._build_outputs(Header(frame_id="f"), pred)
    assert set(out) == {"segmentation", "depth", "normals"}
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    sub = node.create_subscription(Image, "/inproc/depth/color", lambda m: None, 1)
    assert spin_until(ex, lambda: node._pubs["depth/color"].get_subscription_count() > 0, 10)
    out = node._build_outputs(Header(frame_id="f"), pred)
    assert set(out) == {"segmentation", "depth", "normals", "depth/color"}
    node.destroy_subscription(sub)
    ex.remove_node(node)
