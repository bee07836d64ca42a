"""Outputs at the camera's resolution (``output_size: input``), so that they overlay the camera image and its
camera_info directly, as depth_image_proc and RViz users expect.

Segmentation is resized nearest (class ids do not average). Depth and normals are resized edge-aware: bilinear
where the four low-resolution neighbours agree, nearest where they straddle an edge (a depth jump of more than
``EDGE_RATIO`` relative, or normals more than ``EDGE_DEG`` apart), so no pixel is invented between a table and
the wall behind it (no flying pixels in the point cloud).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np
import torch

from mtshare_ros.runtime.predictor import Prediction

EDGE_RATIO = 0.1
EDGE_DEG = 30.0


def _edges_up(low: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Which output pixels fall where a low-resolution 2x2 neighbourhood holds an edge (``low``: (h, w) bool of
    edges between a pixel and its right/lower neighbours)."""
    return cv2.resize(low.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_LINEAR) > 0


def _neighbour_spread(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of each pixel with its right, lower and lower-right neighbours (edge-padded)."""
    p = np.pad(a, ((0, 1), (0, 1)) + ((0, 0),) * (a.ndim - 2), mode="edge")
    return p[:-1, 1:], p[1:, :-1], p[1:, 1:]


def upsample_segmentation(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def upsample_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) metres with NaN -> (H, W), bilinear inside surfaces, nearest across depth edges and next to NaN."""
    filled = np.nan_to_num(depth, nan=0.0)
    right, down, diag = _neighbour_spread(filled)
    lo = np.minimum.reduce([filled, right, down, diag])
    hi = np.maximum.reduce([filled, right, down, diag])
    edge = (hi - lo > EDGE_RATIO * np.maximum(lo, 1e-6)) | ~np.isfinite(depth) | (lo <= 0)
    near = cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    smooth = cv2.resize(filled, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.where(_edges_up(edge, size), near, smooth).astype(np.float32)


def upsample_normals(normals: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) unit vectors -> (H, W, 3): bilinear and renormalised inside surfaces, nearest across creases."""
    cos_edge = np.cos(np.radians(EDGE_DEG))
    right, down, diag = _neighbour_spread(normals)
    agree = np.minimum.reduce([(normals * o).sum(-1) for o in (right, down, diag)])
    near = cv2.resize(normals, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    smooth = cv2.resize(normals, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    smooth /= np.maximum(np.linalg.norm(smooth, axis=-1, keepdims=True), 1e-6)
    return np.where(_edges_up(agree < cos_edge, size)[..., None], near, smooth).astype(np.float32)


def at_input_resolution(pred: Prediction, rgb: np.ndarray) -> Prediction:
    """``pred`` at the resolution of the camera image ``rgb`` it was made from (which also colours the points).

    Resized with OpenCV on the CPU: each map is copied off the device once, and the result lives on the CPU
    (its colours and points are then made there)."""
    size = rgb.shape[:2]

    def up(t: torch.Tensor | None, resize: Callable[[np.ndarray, tuple[int, int]], np.ndarray]) -> torch.Tensor | None:
        return None if t is None else torch.from_numpy(resize(t.cpu().numpy(), size))

    return replace(
        pred,
        size=size,
        scale=(1.0, 1.0),
        image=torch.from_numpy(np.ascontiguousarray(rgb)),
        segmentation=up(pred.segmentation, upsample_segmentation),
        depth=up(pred.depth, upsample_depth),
        normals=up(pred.normals, upsample_normals),
    )
