"""A frame's outputs from real predictions of the shipped model (120x160 frames), built on the inference device
with both kernels (the CPU's and, on the CPU, the torch ones other devices use; ``device_kernels.py``), against
references computed here from first principles with numpy: the host arrays the node publishes, byte for byte
(normals' colours from OpenCV within the documented 1 LSB), memory reused across frames, only what is wanted
built, and on CUDA (when present) the same bytes as on the CPU."""

import cv2
import device_kernels
import numpy as np
import pytest
import torch

from mtshare_ros.classes import palette
from mtshare_ros.ros.harness import pattern_frame
from mtshare_ros.runtime import pointcloud
from mtshare_ros.runtime.buffers import OutputBuffers
from mtshare_ros.runtime.camera import CameraModel
from mtshare_ros.runtime.outputs import OUTPUT_NAMES, assemble_outputs
from mtshare_ros.runtime.pointcloud import POINT_DTYPE
from mtshare_ros.runtime.predictor import Predictor
from mtshare_ros.runtime.settings import FrameSettings

H, W = 120, 160
CLASSES = 15
kernels = device_kernels.kernels  # the fixture


def _camera(h: int, w: int) -> CameraModel:
    k = np.array([[0.8 * w, 0, w / 2 - 0.5], [0, 0.8 * w, h / 2 - 0.5], [0, 0, 1.0]])
    return CameraModel(k=k, p=np.hstack([k, np.zeros((3, 1))]), r=np.eye(3), d=(0.0,) * 5,
                       distortion_model="plumb_bob", height=h, width=w)


def _frame(seed: int) -> np.ndarray:
    return cv2.resize(pattern_frame(seed), (W, H), interpolation=cv2.INTER_AREA)


SMALL = FrameSettings(max_width=W)  # 128x160 inference: a small frame keeps the model cheap


@pytest.fixture(scope="module")
def predictor():
    return Predictor("default", "cpu")


@pytest.fixture(scope="module")
def predict(predictor):
    """Predictions by (seed, settings), each made once for the module (outputs never change a prediction)."""
    made = {}

    def get(seed: int, settings: FrameSettings = SMALL):
        key = (seed, repr(settings))  # settings hold a mapping: not hashable
        if key not in made:
            made[key] = predictor.predict(_frame(seed), settings)
        return made[key]

    return get


def _reference(image: np.ndarray, seg: np.ndarray, depth: np.ndarray, normals: np.ndarray, k: np.ndarray) -> dict:
    """What each output is, written out: palette lookup; turbo by nearness at round(float32(clip(d, 0, far)) *
    float32(255 / far)), far = numpy's 98th percentile of every 4th row and column; (n + 1) / 2 in float32, rounded
    half to even; the PointCloud2 records of the back-projected depth."""
    ref = {"segmentation/color": palette(CLASSES)[seg]}
    sample = depth[::4, ::4]
    far = max(float(np.percentile(sample[np.isfinite(sample)], 98)), 1e-6)
    index = np.rint(np.clip(depth, 0, far).astype(np.float32) * np.float32(255.0 / far))
    turbo = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)[:, 0, ::-1]
    colour = turbo[255 - np.nan_to_num(index).astype(np.int64)]
    colour[~np.isfinite(depth)] = 0
    ref["depth/color"] = colour
    n = np.clip(np.rint(np.abs(normals * np.float32(127.5) + np.float32(127.5))), 0, 255).astype(np.uint8)
    n[~np.isfinite(normals[..., 2]) | (normals == 0).all(-1)] = 0
    ref["normals/color"] = n
    h, w = depth.shape
    pts = np.zeros((h, w), POINT_DTYPE)
    z = np.where(depth > 0, depth, np.nan).astype(np.float32)
    pts["z"] = z
    pts["x"] = ((np.arange(w, dtype=np.float32) - np.float32(k[0, 2])) / np.float32(k[0, 0]))[None, :] * z
    pts["y"] = ((np.arange(h, dtype=np.float32) - np.float32(k[1, 2])) / np.float32(k[1, 1]))[:, None] * z
    rgb = (image[..., 0].astype(np.uint32) << 16) | (image[..., 1].astype(np.uint32) << 8) | image[..., 2]
    pts["rgb"] = rgb.view(np.float32)
    pts["label"] = seg
    ref["points"] = pts
    return ref


@pytest.mark.parametrize("seed", [0, 1])
def test_every_output_against_first_principles(predict, seed, kernels):
    pred = predict(seed)
    out = assemble_outputs(pred, CLASSES, set(OUTPUT_NAMES), _camera(H, W), buffers=OutputBuffers())
    assert set(out) == set(OUTPUT_NAMES)
    seg, depth, normals = out["segmentation"], out["depth"], out["normals"]
    assert (seg.dtype, depth.dtype, normals.dtype) == (np.uint8, np.float32, np.float32)
    assert seg.shape == depth.shape == normals.shape[:2] == pred.size
    assert np.array_equal(seg, pred.maps["segmentation"].numpy()) and np.isfinite(depth).mean() > 0.5
    ref = _reference(pred.image.numpy(), seg, depth, normals, out["scaled_camera_info"].k)
    for name in ("segmentation/color", "depth/color", "normals/color"):
        assert out[name].dtype == np.uint8 and out[name].shape == (*pred.size, 3)
        if name == "normals/color" and kernels == "opencv":  # a fused multiply-add: within 1 LSB
            assert np.abs(out[name].astype(int) - ref[name]).max() <= 1
        else:
            assert np.array_equal(out[name], ref[name]), name
    assert out["points"].dtype == POINT_DTYPE and out["points"].tobytes() == ref["points"].tobytes()


def test_only_the_wanted_outputs_and_points_only_with_depth_and_a_camera(predict):
    pred = predict(0)
    assert set(assemble_outputs(pred, CLASSES, set(), None)) == {"segmentation", "depth", "normals"}
    out = assemble_outputs(pred, CLASSES, {"depth/color", "points"}, None)
    assert set(out) == {"segmentation", "depth", "normals", "depth/color"}  # no camera: no points
    out = assemble_outputs(pred, CLASSES, {"points"}, _camera(H, W))
    assert set(out) == {"segmentation", "depth", "normals", "points", "scaled_camera_info"}
    no_seg = predict(0, FrameSettings(tasks=("depth",), max_width=W))
    out = assemble_outputs(no_seg, CLASSES, set(OUTPUT_NAMES), _camera(H, W))
    assert set(out) == {"depth", "depth/color", "points", "scaled_camera_info"}
    assert (out["points"]["label"] == 0).all()


def test_buffers_are_reused_across_frames_and_follow_the_size(predict, kernels):
    buffers = OutputBuffers()
    wanted = set(OUTPUT_NAMES)
    first = assemble_outputs(predict(0), CLASSES, wanted, _camera(H, W), buffers=buffers)
    kept = {name: first[name].copy() for name in ("depth/color", "points")}
    second = assemble_outputs(predict(1), CLASSES, wanted, _camera(H, W), buffers=buffers)
    for name in kept:  # the same memory, this frame's content
        assert np.shares_memory(first[name], second[name])
        assert not np.array_equal(second[name], kept[name])
    fresh = assemble_outputs(predict(1), CLASSES, wanted, _camera(H, W))
    assert all(np.array_equal(fresh[n], second[n], equal_nan=n != "points") for n in ("depth/color", "normals/color"))
    assert fresh["points"].tobytes() == second["points"].tobytes()
    other = predict(1, FrameSettings())  # 240x320: another output size
    third = assemble_outputs(other, CLASSES, wanted, _camera(H, W), buffers=buffers)
    assert other.size != second["points"].shape and third["points"].shape == other.size
    assert not np.shares_memory(third["points"], second["points"])


def test_memory_kept_across_frames_is_for_the_last_frame_only(predict):
    """An output no longer made (unsubscribed, its task no longer run) gives its buffers back, the others follow
    the frame's size, and the point cloud's rays are kept for the current size and intrinsics only: a camera that
    changed resolution holds nothing of the old one."""
    buffers = OutputBuffers()
    small, large = predict(0), predict(0, FrameSettings())  # 128x160 and 240x320
    assemble_outputs(small, CLASSES, set(OUTPUT_NAMES), _camera(H, W), buffers=buffers)
    assert set(buffers._host) == {"segmentation/color", "depth/color", "normals/color", "points"}  # CPU: maps are views
    assemble_outputs(large, CLASSES, {"depth/color"}, _camera(H, W), buffers=buffers)
    assert set(buffers._host) == {"depth/color"} and buffers._host["depth/color"].shape[:2] == large.size
    assert pointcloud._ray_grid.cache_info().maxsize == 1


def test_outputs_at_the_input_resolution_are_made_from_the_upsampled_maps(predict, kernels):
    pred = predict(0)
    full = cv2.resize(_frame(0), (2 * W, 2 * H))  # the camera's image, larger than the inference
    out = assemble_outputs(pred, CLASSES, set(OUTPUT_NAMES), _camera(2 * H, 2 * W), full)
    assert out["depth"].shape == out["points"].shape == (2 * H, 2 * W)
    ref = _reference(full, out["segmentation"], out["depth"], out["normals"], out["scaled_camera_info"].k)
    assert np.array_equal(out["depth/color"], ref["depth/color"])
    assert out["points"].tobytes() == ref["points"].tobytes()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_outputs_are_the_cpu_outputs(predict, kernels):
    """Built on the GPU from the CPU's maps: the bytes of the torch kernels on the CPU (the maps are given, so
    device differences in the model do not enter), and of the CPU's own kernels but for the normals' 1 LSB."""
    pred = predict(0)
    cpu = assemble_outputs(pred, CLASSES, set(OUTPUT_NAMES), _camera(H, W))
    on_gpu = type(pred)(size=pred.size, scale=pred.scale, image=pred.image.cuda(),
                        maps={t: m.cuda() for t, m in pred.maps.items()})
    buffers = OutputBuffers()
    for _ in range(2):  # the second frame through reused pinned buffers
        gpu = assemble_outputs(on_gpu, CLASSES, set(OUTPUT_NAMES), _camera(H, W), buffers=buffers)
        for name in OUTPUT_NAMES[:-1]:
            if name == "normals/color" and kernels == "opencv":
                assert np.abs(gpu[name].astype(int) - cpu[name]).max() <= 1
            else:
                assert gpu[name].tobytes() == cpu[name].tobytes(), name


def test_switching_temporal_sharing_off_releases_its_buffers(predictor):
    """The reference buffers belong to temporal sharing: switched off, they go (they would be stale anyway), so
    a node that tried it and went back holds no memory for it."""
    from dataclasses import replace

    from mtshare_ros.sharing.temporal import TemporalSettings

    on = replace(SMALL, temporal=TemporalSettings(enabled=True))
    for seed in range(3):
        predictor.predict(_frame(seed), on)
    assert predictor.temporal_cache.nbytes() > 0
    predictor.predict(_frame(3), SMALL)
    assert predictor.temporal_cache.nbytes() == 0
    assert predictor.predict(_frame(4), on).stats["keyframe"] == 1.0  # switched on again: starts afresh


def test_switching_temporal_sharing_off_after_a_stream_reset_releases_its_weights(predictor):
    """A camera restart empties the temporal buffers before temporal sharing is switched off (the soak benchmark's
    order): the weights fused for its keyframes go all the same, leaving what per-frame inference uses."""
    from dataclasses import replace

    from mtshare_ros.sharing.temporal import TemporalSettings

    predictor.release_caches()
    predictor.predict(_frame(0), SMALL)
    per_frame = set(predictor.shared._fused)
    on = replace(SMALL, temporal=TemporalSettings(enabled=True))
    for _ in range(3):  # a keyframe, then frames between keyframes: their base rows run with fused weights
        predictor.predict(_frame(0), on)
    assert set(predictor.shared._fused) > per_frame
    predictor.reset_stream()
    predictor.predict(_frame(3), SMALL)
    assert set(predictor.shared._fused) == per_frame
