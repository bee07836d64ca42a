"""A device out of memory at any step of a frame: the frame is lost with ``OutOfMemory``, what is kept between
frames is released, and the next frame comes out as from a fresh predictor.

A real ``torch.cuda.OutOfMemoryError`` comes only from CUDA; this machine may have none, so the error is injected
(it can be made and raised on the CPU): from a forward hook on a module of the real model, or from a step of the
frame replaced for one call. The node's own handling (skip, release, keep serving) is tested against a node
process in ``test_node_faults.py``."""

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from mtshare_ros.ros.harness import pattern_frame
from mtshare_ros.runtime import outputs as outputs_module
from mtshare_ros.runtime.buffers import OutputBuffers
from mtshare_ros.runtime.camera import CameraModel
from mtshare_ros.runtime.outputs import OUTPUT_NAMES, assemble_outputs
from mtshare_ros.runtime.predictor import OutOfMemory, Predictor
from mtshare_ros.runtime.settings import FrameSettings
from mtshare_ros.sharing.temporal import TemporalSettings
from mtshare_ros.tasks import depth as depth_task

H, W = 120, 160
CLASSES = 15
# temporal sharing on: a failed frame must also drop the stream's reference buffers and the keyframe weights.
# Every frame a keyframe (interval 1): the blocks and heads the faults are injected into run as modules on
# keyframes, and a rule, not the frames' content (a scene cut), makes the injected frame one.
TEMPORAL = FrameSettings(max_width=W, temporal=TemporalSettings(enabled=True, keyframe_interval=1))


def _frame(seed: int) -> np.ndarray:
    return cv2.resize(pattern_frame(seed), (W, H), interpolation=cv2.INTER_AREA)


def _camera() -> CameraModel:
    k = np.array([[0.8 * W, 0, W / 2 - 0.5], [0, 0.8 * W, H / 2 - 0.5], [0, 0, 1.0]])
    return CameraModel(k=k, p=np.hstack([k, np.zeros((3, 1))]), r=np.eye(3), d=(0.0,) * 5,
                       distortion_model="plumb_bob", height=H, width=W)


def _oom(*_args, **_kwargs):
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB (injected)")


@pytest.fixture(scope="module")
def predictor():
    return Predictor("default", "cpu")


@pytest.fixture(scope="module")
def fresh_outputs():
    """What a fresh predictor makes of frame 9 (its first frame: a keyframe), raw maps and every output."""
    p = Predictor("default", "cpu")
    pred = p.predict(_frame(9), TEMPORAL)
    return pred, assemble_outputs(pred, CLASSES, OUTPUT_NAMES, _camera())


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        if isinstance(a[name], np.ndarray):
            assert a[name].tobytes() == b[name].tobytes(), name


def _fail_once(monkeypatch, target, name: str) -> None:
    """``target.name`` raises the out-of-memory error at its next call, then is itself again."""
    def fail(*_args, **_kwargs):
        monkeypatch.undo()
        _oom()

    monkeypatch.setattr(target, name, fail)


def _inject(where: str, predictor: Predictor, monkeypatch) -> None:
    """Make the next frame run out of memory at ``where``, once."""
    if where == "upload":
        _fail_once(monkeypatch, predictor, "preprocess")
    elif where == "postprocess":
        _fail_once(monkeypatch, depth_task, "in_range")
    else:
        enc = predictor.shared.base.encoder
        module = {"patch embedding": enc.patch_embed, "encoder block": enc.blocks[len(enc.blocks) // 2].mlp.fc1,
                  "head": predictor.shared.base.head}[where]

        def hook(*_args):
            handle.remove()
            _oom()

        handle = module.register_forward_hook(hook)


@pytest.mark.parametrize("where", ["upload", "patch embedding", "encoder block", "head", "postprocess"])
def test_a_frame_out_of_memory_releases_the_caches_and_the_next_frame_is_right(predictor, fresh_outputs, where,
                                                                                monkeypatch):
    for seed in range(3):  # a stream with temporal sharing: reference buffers and fused keyframe weights held
        predictor.predict(_frame(seed), TEMPORAL)
    assert predictor.temporal_cache.nbytes() > 0 and predictor.shared._fused
    if where == "encoder block":
        predictor.reset_stream()  # the block runs as a module on keyframes (between them, rows of it run)
        predictor.predict(_frame(3), TEMPORAL)
    _inject(where, predictor, monkeypatch)
    with pytest.raises(OutOfMemory, match="out of memory on a 160x120 frame: CUDA out of memory"):
        predictor.predict(_frame(4), TEMPORAL)
    assert predictor.temporal_cache.nbytes() == 0 and not predictor.temporal_cache.base
    assert not predictor.shared._fused, "the engine's fused weights are released"
    pred = predictor.predict(_frame(9), TEMPORAL)
    assert pred.stats["keyframe"] == 1.0
    reference, reference_outputs = fresh_outputs
    for task in ("segmentation", "depth", "normals"):
        assert pred.maps[task].numpy().tobytes() == reference.maps[task].numpy().tobytes(), task
    _same(assemble_outputs(pred, CLASSES, OUTPUT_NAMES, _camera()), reference_outputs)


@pytest.mark.parametrize("step", ["colorize_depth", "depth_to_points"])
def test_outputs_out_of_memory_release_their_buffers_and_the_next_frame_is_right(fresh_outputs, step, monkeypatch):
    pred, reference = fresh_outputs
    buffers = OutputBuffers()
    _same(assemble_outputs(pred, CLASSES, OUTPUT_NAMES, _camera(), buffers=buffers), reference)
    monkeypatch.setattr(depth_task if step == "colorize_depth" else outputs_module, step, _oom)
    with pytest.raises(OutOfMemory, match="out of memory making the outputs of a 160x128 frame"):
        assemble_outputs(pred, CLASSES, OUTPUT_NAMES, _camera(), buffers=buffers)
    assert not buffers._host and not buffers._device, "every buffer is released"
    monkeypatch.undo()
    _same(assemble_outputs(pred, CLASSES, OUTPUT_NAMES, _camera(), buffers=buffers), reference)


def test_other_errors_are_not_taken_for_out_of_memory(predictor, monkeypatch):
    monkeypatch.setattr(depth_task, "in_range", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        predictor.predict(_frame(0), replace(TEMPORAL, temporal=TemporalSettings()))
