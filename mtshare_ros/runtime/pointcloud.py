"""Back-projection of a depth map into a labelled, coloured point cloud in the camera optical frame."""

from __future__ import annotations

import functools

import numpy as np

POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4")])
"""Layout of one point; ``rgb`` is the PCL convention (0x00RRGGBB bits stored in a float32)."""


@functools.lru_cache(maxsize=4)
def _ray_grid(h: int, w: int, fx: float, fy: float, cx: float, cy: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel x/z and y/z of the viewing rays; cached because size and intrinsics rarely change."""
    rx = ((np.arange(w, dtype=np.float32) - cx) / fx)[None, :].repeat(h, 0)
    ry = ((np.arange(h, dtype=np.float32) - cy) / fy)[:, None].repeat(w, 1)
    return rx, ry


def depth_to_points(depth: np.ndarray, k: np.ndarray, rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Depth (H, W) metres -> organised (H, W) array of ``POINT_DTYPE`` in the optical frame (REP 103).

    Organised like a depth camera's cloud (depth_image_proc does the same): invalid depth (NaN, <= 0)
    gives NaN coordinates, so neighbourhoods stay addressable and nothing is filtered per pixel.
    """
    h, w = depth.shape
    if rgb.shape[:2] != (h, w) or labels.shape != (h, w):
        raise ValueError(f"depth {depth.shape}, rgb {rgb.shape} and labels {labels.shape} must share H, W")
    rx, ry = _ray_grid(h, w, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
    pts = np.empty((h, w), dtype=POINT_DTYPE)
    flat = pts.view(np.float32).reshape(h, w, 5)
    z = flat[..., 2]
    np.copyto(z, depth, casting="same_kind")
    z[~(depth > 0)] = np.nan  # NaN and non-positive depth: no return
    np.multiply(rx, z, out=flat[..., 0])
    np.multiply(ry, z, out=flat[..., 1])
    # rgb as 0x00RRGGBB in little-endian bytes B, G, R, 0, written straight into the field's bytes
    at = POINT_DTYPE.fields["rgb"][1]
    colour = pts.view(np.uint8).reshape(h, w, POINT_DTYPE.itemsize)[..., at : at + 4]
    colour[..., :3] = rgb[..., ::-1]
    colour[..., 3] = 0
    pts.view(np.uint32).reshape(h, w, 5)[..., 4] = labels
    return pts
