"""The node in this process: declared parameters, the launch file and params file that reference them,
and the rule that visualisation outputs cost nothing while nobody subscribes."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
import torch
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


def test_parameters_are_the_table_and_the_params_file_holds_its_defaults(node):
    """One table declares every parameter (``ros/params.py``); ``config/mtshare.yaml`` sets every one of them to
    the table's default, so the file a user copies documents what the node does without it."""
    from mtshare_ros.ros.params import PARAMS

    rclpy_own = {"use_sim_time", "start_type_description_service"}  # every rclpy node declares these
    assert set(node._parameters) - rclpy_own == {p.name for p in PARAMS}
    for p in PARAMS:
        assert node.get_parameter(p.name).value == p.default, p.name
        assert node.describe_parameter(p.name).read_only == p.read_only, p.name
    params = yaml.safe_load((ROOT / "config" / "mtshare.yaml").read_text())["/**"]["ros__parameters"]
    assert set(params) == {p.name for p in PARAMS} - {"autostart"}
    for p in PARAMS:
        if p.name in params:
            assert params[p.name] == p.default and type(params[p.name]) is p.type, p.name


def test_parameters_resolve_into_one_settings_value():
    """-1 per-task thresholds inherit, others override; the settings are one immutable value."""
    import dataclasses

    from mtshare_ros.ros.params import PARAMS, check_settings, frame_settings

    values = {p.name: p.default for p in PARAMS}
    settings = frame_settings(values)
    assert settings.sharing.thresholds(["depth", "normals"]) == {"depth": 0.05, "normals": 0.05}
    values.update({"sharing.threshold": 0.2, "sharing.normals_threshold": 0.0, "tasks": ["segmentation", "depth"]})
    settings = frame_settings(values)
    assert settings.sharing.thresholds(["depth", "normals"]) == {"depth": 0.2, "normals": 0.0}
    assert settings.tasks == ("segmentation", "depth")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.tasks = ("depth",)
    values.update({"depth.min": 5.0, "depth.max": 1.0})
    assert "depth.min" in check_settings(frame_settings(values))
    values.update({"depth.min": 0.05, "depth.max": 20.0, "sharing.mode": "fixed"})
    assert frame_settings(values).sharing.mode == "fixed" and check_settings(frame_settings(values)) == ""
    values["temporal.enabled"] = True
    assert "per frame" in check_settings(frame_settings(values))


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
    from mtshare_ros.runtime.outputs import assemble_outputs
    from mtshare_ros.runtime.predictor import Prediction

    node.trigger_configure()
    assert node.predictor is not None, "configure loads the model"
    pred = Prediction(
        size=(4, 6),
        scale=(1.0, 1.0),
        maps={"segmentation": torch.zeros((4, 6), dtype=torch.uint8), "depth": torch.ones((4, 6)),
              "normals": torch.tensor([0.0, 0.0, -1.0]).repeat(4, 6, 1)},
        image=torch.zeros((4, 6, 3), dtype=torch.uint8),
    )
    out = assemble_outputs(pred, 5, node.outputs.wanted(), None)
    assert set(out) == {"segmentation", "depth", "normals"}
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    sub = node.create_subscription(Image, "/inproc/depth/color", lambda m: None, 1)
    assert spin_until(ex, lambda: node.outputs["depth/color"].get_subscription_count() > 0, 10)
    out = assemble_outputs(pred, 5, node.outputs.wanted(), None)
    assert set(out) == {"segmentation", "depth", "normals", "depth/color"}
    assert set(node.outputs.to_messages(out, Header(frame_id="f"))) == set(out)
    node.destroy_subscription(sub)
    ex.remove_node(node)
