"""Outputs at the camera's resolution (``output_size: input``), so that they overlay the camera image and its
camera_info directly, as depth_image_proc and RViz users expect.

Each task resizes its own map (``TaskSpec.upsample``): segmentation nearest (class ids do not average), depth and
normals edge-aware (``tasks/resize.py``: bilinear where the four low-resolution neighbours agree, nearest where they
straddle an edge, a depth jump of more than ``EDGE_RATIO`` relative or normals more than ``EDGE_DEG`` apart), so no
pixel is invented between a table and the wall behind it (no flying pixels in the point cloud).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from mtshare_ros.runtime.predictor import Prediction
from mtshare_ros.tasks import task_spec
from mtshare_ros.tasks.depth import EDGE_RATIO, upsample_depth
from mtshare_ros.tasks.normals import EDGE_DEG, upsample_normals
from mtshare_ros.tasks.segmentation import upsample_segmentation

__all__ = ["EDGE_DEG", "EDGE_RATIO", "at_input_resolution", "upsample_depth", "upsample_normals",
           "upsample_segmentation"]

def at_input_resolution(pred: Prediction, rgb: np.ndarray) -> Prediction:
    """``pred`` at the resolution of the camera image ``rgb`` it was made from (which also colours the points).

    Resized with OpenCV on the CPU: each map is copied off the device once, and the result lives on the CPU
    (its colours and points are then made there)."""
    size = rgb.shape[:2]
    maps = {task: torch.from_numpy(task_spec(task).upsample(m.cpu().numpy(), size)) for task, m in pred.maps.items()}
    return replace(pred, size=size, scale=(1.0, 1.0), image=torch.from_numpy(np.ascontiguousarray(rgb)), maps=maps)
