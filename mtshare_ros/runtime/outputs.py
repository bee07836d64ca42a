"""Everything published for one frame, as arrays: the raw maps, their false colours, the point cloud and the
scaled camera model, keyed by output name.

The node publishes what this returns and nothing else, so a frame's outputs are decided here, in one place,
without ROS types. Visualisation outputs (colours, points) cost a few milliseconds each, so only those in
``wanted`` (someone subscribes) are made.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from mtshare_ros.runtime.camera import CameraModel, scale_camera
from mtshare_ros.runtime.colorize import colorize_depth, colorize_normals, colorize_segmentation
from mtshare_ros.runtime.pointcloud import depth_to_points
from mtshare_ros.runtime.predictor import Prediction
from mtshare_ros.runtime.upsample import at_input_resolution

RAW_OUTPUTS = ("segmentation", "depth", "normals")
COLOUR_OUTPUTS = ("segmentation/color", "depth/color", "normals/color")
OUTPUT_NAMES = RAW_OUTPUTS + COLOUR_OUTPUTS + ("points", "scaled_camera_info")
"""Every output, by its topic name relative to the node's namespace."""


def assemble_outputs(
    pred: Prediction, num_classes: int, wanted: Collection[str], camera: CameraModel | None,
    rgb: np.ndarray | None = None,
) -> dict[str, np.ndarray | CameraModel]:
    """The outputs of ``pred``: the raw maps of every task that ran, colours and points only when ``wanted``,
    and the camera model scaled to the outputs when a ``camera`` is known (the caller passes only one that
    ``camera.camera_problem`` accepts). The point cloud needs depth and that camera model. ``rgb``: the camera
    image, when the outputs are wanted at its resolution (``output_size: input``; ``upsample.py``)."""
    if rgb is not None:
        pred = at_input_resolution(pred, rgb)
    out: dict[str, np.ndarray | CameraModel] = {}
    colour = {"segmentation": lambda a: colorize_segmentation(a, num_classes), "depth": colorize_depth,
              "normals": colorize_normals}
    for name in RAW_OUTPUTS:
        array = getattr(pred, name)
        if array is None:
            continue
        out[name] = array
        if f"{name}/color" in wanted:
            out[f"{name}/color"] = colour[name](array)
    if camera is None:
        return out
    scaled = out["scaled_camera_info"] = scale_camera(camera, pred.size, pred.scale)
    if pred.depth is not None and "points" in wanted:
        labels = pred.segmentation if pred.segmentation is not None else np.zeros(pred.size, np.uint8)
        out["points"] = depth_to_points(pred.depth, scaled.k, pred.image, labels)
    return out
