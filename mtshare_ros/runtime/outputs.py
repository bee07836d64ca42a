"""Everything published for one frame, as host arrays: the raw maps, their false colours, the point cloud and
the scaled camera model, keyed by output name.

The node publishes what this returns and nothing else, so a frame's outputs are decided here, in one place,
without ROS types. Visualisation outputs (colours, points) cost time each, so only those in ``wanted`` (someone
subscribes) are made. They are made where the prediction lives (the inference device; ``colorize.py``,
``pointcloud.py``), and each output then crosses to the host once, into buffers reused across frames
(``buffers.py``): on a GPU, whose inference takes a few milliseconds, copying the float maps to colour them on
the CPU would cost more than the inference.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import torch

from mtshare_ros.runtime.buffers import OutputBuffers
from mtshare_ros.runtime.camera import CameraModel, scale_camera
from mtshare_ros.runtime.pointcloud import POINT_FLOATS, as_points, depth_to_points
from mtshare_ros.runtime.predictor import OutOfMemory, Prediction
from mtshare_ros.runtime.upsample import at_input_resolution
from mtshare_ros.tasks import BUILTIN_TASKS, task_names, task_spec

GEOMETRY_OUTPUTS = ("points", "scaled_camera_info")


def output_names(tasks: Collection[str] | None = None) -> tuple[str, ...]:
    """Every output of ``tasks`` (default: every registered task), by topic name relative to the node's (or its
    camera's) namespace: each task's map and its ``/color``, then ``points`` and ``scaled_camera_info``."""
    tasks = task_names() if tasks is None else tuple(tasks)
    return (*tasks, *(f"{t}/color" for t in tasks), *GEOMETRY_OUTPUTS)


RAW_OUTPUTS = BUILTIN_TASKS
COLOUR_OUTPUTS = tuple(f"{t}/color" for t in BUILTIN_TASKS)
OUTPUT_NAMES = output_names(BUILTIN_TASKS)
"""The built-in tasks' outputs (``output_names()`` has those of every registered task)."""


def assemble_outputs(
    pred: Prediction, num_classes: int, wanted: Collection[str], camera: CameraModel | None,
    rgb: np.ndarray | None = None, buffers: OutputBuffers | None = None,
) -> dict[str, np.ndarray | CameraModel]:
    """The outputs of ``pred``: the raw maps of every task that ran, colours and points only when ``wanted``,
    and the camera model scaled to the outputs when a ``camera`` is known (the caller passes only one that
    ``camera.camera_problem`` accepts). The point cloud needs depth and that camera model; it is (H, W)
    ``POINT_DTYPE`` records. ``rgb``: the camera image, when the outputs are wanted at its resolution
    (``output_size: input``; ``upsample.py``). ``buffers``: memory reused across frames (the arrays returned are
    valid until the next call with the same ``buffers``); without, every array is new.

    Colours and points are made on the inference device: when it runs out of memory there, ``buffers`` are
    released and ``OutOfMemory`` is raised (the frame's outputs are lost; the next call allocates again)."""
    buffers = buffers if buffers is not None else OutputBuffers()
    try:
        return _assemble(pred, num_classes, wanted, camera, rgb, buffers)
    except torch.cuda.OutOfMemoryError as exc:
        reason = OutOfMemory.reason(exc)
    buffers.release()  # outside the handler, whose traceback holds the frame's device tensors until it ends
    torch.cuda.empty_cache()  # only CUDA raises this error; a no-op where CUDA is not initialised
    raise OutOfMemory(f"out of memory making the outputs of a {pred.size[1]}x{pred.size[0]} frame: {reason}")


@torch.inference_mode()
def _assemble(
    pred: Prediction, num_classes: int, wanted: Collection[str], camera: CameraModel | None,
    rgb: np.ndarray | None, buffers: OutputBuffers,
) -> dict[str, np.ndarray | CameraModel]:
    if rgb is not None:
        pred = at_input_resolution(pred, rgb)
    out: dict[str, np.ndarray | CameraModel] = {}
    for name, tensor in pred.maps.items():
        out[name] = buffers.to_host(name, tensor)
        key = f"{name}/color"
        if key in wanted:
            h, w = tensor.shape[:2]
            work = buffers.device(key, (h, w, 3), torch.uint8, tensor.device)
            out[key] = buffers.to_host(key, task_spec(name).colour(tensor, work, num_classes=num_classes))
    if camera is not None:
        scaled = out["scaled_camera_info"] = scale_camera(camera, pred.size, pred.scale)
        depth = pred.maps.get("depth")
        if depth is not None and "points" in wanted:
            work = buffers.device("points", (*pred.size, POINT_FLOATS), torch.float32, depth.device)
            cloud = depth_to_points(depth, scaled.k, pred.image, pred.maps.get("segmentation"), work)
            out["points"] = as_points(buffers.to_host("points", cloud))
    buffers.end_frame()
    return out
