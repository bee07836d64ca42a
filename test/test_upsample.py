"""Outputs at the camera's resolution: nearest labels, edge-aware depth and normals (no values invented across
an edge), unit normals."""

import numpy as np
import torch

from mtshare_ros.runtime.predictor import Prediction
from mtshare_ros.runtime.upsample import at_input_resolution, upsample_depth, upsample_normals


def test_depth_keeps_its_edges_and_interpolates_surfaces():
    depth = np.tile(np.linspace(1.0, 1.2, 8, dtype=np.float32), (6, 1))  # a smooth slanted wall
    depth[:, 4:] += 2.0  # ... and a jump of 2 m: another surface behind
    depth[0, 0] = np.nan
    up = upsample_depth(depth, (24, 32))
    assert up.shape == (24, 32) and up.dtype == np.float32
    near, far = depth[:, :4][np.isfinite(depth[:, :4])], depth[:, 4:]
    finite = up[np.isfinite(up)]
    between = (finite > near.max() + 1e-4) & (finite < far.min() - 1e-4)
    assert not between.any(), "a depth between the two surfaces was invented at the edge"
    inside = up[12, 4:10]  # within the first surface: smooth, not staircase
    assert len(np.unique(np.round(inside, 5))) > 3
    assert np.isnan(up[0, 0])  # invalid stays invalid


def test_normals_stay_unit_and_creases_stay_sharp():
    n = np.zeros((4, 6, 3), np.float32)
    n[:, :3] = (0, 0, -1)
    n[:, 3:] = (1, 0, 0)  # a 90 degree crease
    up = upsample_normals(n, (16, 24))
    assert np.allclose(np.linalg.norm(up, axis=-1), 1.0, atol=1e-5)
    angles = np.degrees(np.arccos(np.clip(up @ np.array([0, 0, -1.0]), -1, 1)))
    assert set(np.round(np.unique(angles))) <= {0.0, 90.0}


def test_a_prediction_at_the_input_resolution():
    pred = Prediction(size=(6, 8), scale=(0.25, 0.25), image=torch.zeros((6, 8, 3), dtype=torch.uint8),
                      maps={"segmentation": torch.arange(48, dtype=torch.uint8).reshape(6, 8) % 5,
                            "depth": torch.ones((6, 8)), "normals": torch.tensor([0.0, 0, -1]).repeat(6, 8, 1)})
    rgb = np.full((24, 32, 3), 7, np.uint8)
    full = at_input_resolution(pred, rgb)
    assert full.size == (24, 32) and full.scale == (1.0, 1.0)
    assert np.shares_memory(full.image.numpy(), rgb)  # the camera image itself colours the points
    seg, depth = full.maps["segmentation"], full.maps["depth"]
    assert seg.shape == (24, 32) and set(seg.unique().tolist()) <= set(range(5))
    assert depth.shape == (24, 32) and full.maps["normals"].shape == (24, 32, 3)
    assert depth.device.type == "cpu" and depth.dtype == torch.float32
