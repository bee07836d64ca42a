"""A fourth task registered from one file (``toy_task.py``) goes through everything a built-in task does: the
registry, training (a few steps), the shared engine and the predictor, a real node process (its topics, encoding,
header) and ``mtshare replay``. Nothing outside that file names the task."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtshare_ros.tasks import TASK_MODULES_ENV, task_names, task_spec, unregister_task

HERE = Path(__file__).resolve().parent
TINY = [
    "model.img_size=[64,96]", "model.embed_dim=48", "model.depth=2", "model.num_heads=2",
    "model.feature_layers=[0,1]", "model.head_channels=48", "data.dataset=toy", "data.size=[64,96]",
    "data.num_workers=0", "train.batch_size=4", "train.warmup_steps=2", "train.threads=1", "train.log_every=1",
    "train.steps=3", "data.val_split=null",
]
TASKS = ["segmentation", "depth", "normals", "intensity"]


@pytest.fixture(scope="module")
def toy_task():
    """The toy task registered as a node process would register it: through ``MTSHARE_TASK_MODULES``."""
    old_env, old_path = os.environ.get(TASK_MODULES_ENV), os.environ.get("PYTHONPATH", "")
    os.environ[TASK_MODULES_ENV] = "toy_task"
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old_path) if p)
    sys.path.insert(0, str(HERE))
    import toy_task  # noqa: F401  (registers it; task_names() would import it from the variable too)

    yield task_spec("intensity")
    unregister_task("intensity")
    sys.path.remove(str(HERE))
    os.environ["PYTHONPATH"] = old_path
    if old_env is None:
        os.environ.pop(TASK_MODULES_ENV, None)
    else:
        os.environ[TASK_MODULES_ENV] = old_env


@pytest.fixture(scope="module")
def checkpoint(toy_task, tmp_path_factory) -> Path:
    from mtshare_ros.training.config import load_config
    from mtshare_ros.training.trainer import train

    out = tmp_path_factory.mktemp("toy_run")
    cfg = load_config(None, [*TINY, f"train.out_dir={out}", f"train.tasks={TASKS}".replace("'", "")])
    trainer = train(cfg)
    assert trainer.step == 3
    return out / "model.pt"


def test_registry_lists_it_after_the_builtins(toy_task):
    assert task_names() == ("segmentation", "depth", "normals", "intensity")
    with pytest.raises(ValueError, match="unknown task 'nope'; known"):
        task_spec("nope")


def test_training_learns_it_and_the_engine_and_predictor_run_it(checkpoint):
    from mtshare_ros.runtime.predictor import Predictor
    from mtshare_ros.runtime.settings import FrameSettings, SharingSettings
    from mtshare_ros.sharing.loader import load_models

    loaded = load_models(str(checkpoint))
    assert "intensity" in loaded.dense and "intensity" in loaded.shared.subtasks
    predictor = Predictor(str(checkpoint), "cpu")
    rgb = np.random.default_rng(0).integers(0, 255, (128, 192, 3), dtype=np.uint8)
    for sharing in (True, False):  # the engine (exact deltas) and the independent model: the same map
        settings = FrameSettings(tasks=tuple(TASKS), sharing=SharingSettings(enabled=sharing, threshold=0.0,
                                                                             max_token_fraction=1.0))
        pred = predictor.predict(rgb, settings)
        m = pred.maps["intensity"]
        assert m.shape == (64, 96) and m.dtype == torch.float32 and ((m >= 0) & (m <= 1)).all()
        if sharing:
            engine = m
    torch.testing.assert_close(engine, m, rtol=1e-4, atol=1e-4)


def test_a_node_process_publishes_it(checkpoint, tmp_path, ros_session):
    from test_node_e2e import Rig

    from mtshare_ros.ros.conversions import image_to_array
    from mtshare_ros.ros.harness import CameraPublisher, Recorder

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"checkpoint": str(checkpoint), "tasks": TASKS}}}))
    rig = Rig("/toy", tmp_path, extra_args=["--params-file", str(params)])
    rig.rec = Recorder(rig.node, "/toy", outputs=("segmentation", "intensity", "intensity/color"))
    rig.cam = CameraPublisher(rig.node, "/toy")
    with rig:
        rgb = np.full((120, 160, 3), 200, np.uint8)
        rig.send_until(lambda h: rig.cam.publish(rgb, frame_id=h.frame_id), "toy_cam",
                       outputs=("intensity", "intensity/color"))
        msg = rig.frames_with("intensity", "toy_cam")[0].msg
        sent = {(h.stamp.sec, h.stamp.nanosec) for h in rig.cam.sent}
        assert msg.encoding == "32FC1" and (msg.height, msg.width) == (64, 80)  # 64 rows, the aspect ratio kept
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) in sent
        assert np.isfinite(image_to_array(msg)).all()
        colour = rig.frames_with("intensity/color", "toy_cam")[0].msg
        assert colour.encoding == "rgb8" and (colour.height, colour.width) == (64, 80)
    rig.close()


def test_replay_writes_it_to_the_output_bag(checkpoint, tmp_path):
    from test_replay import _header, _image, _writer_types, read_bag, write_bag

    from mtshare_ros.replay import cli as replay_cli

    _, ts = _writer_types()
    rng = np.random.default_rng(1)
    msgs = [("/cam/image_raw", "sensor_msgs/msg/Image", i * 10**8,
             _image(ts, i * 10**8, "cam", rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), "rgb8"))
            for i in range(3)]
    bag = write_bag(tmp_path / "bag", msgs)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"checkpoint": str(checkpoint), "tasks": TASKS}}}))
    out = tmp_path / "out"
    assert replay_cli.main([str(bag), "--out", str(out), "--params-file", str(params), "--quiet"]) == 0
    written = read_bag(next(out.rglob("*.mcap")).parent)
    assert len(written["/mtshare/intensity"]) == 3 and len(written["/mtshare/intensity/color"]) == 3
    assert _header is not None
