"""Back-projection of a depth map into a labelled, coloured point cloud in the camera optical frame.

The cloud is built on the device the depth lives on, directly in the bytes of the PointCloud2 the node publishes
(``POINT_DTYPE``: 20 bytes a point), so a GPU hands the host one finished buffer (one copy) instead of the depth,
the image and the labels to assemble there. On the CPU numpy and OpenCV build it (each field one vectorised pass;
torch's ops were slower there: ``runtime/colorize.py`` says why), elsewhere torch does; the bytes are the same.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("label", "<u4")])
"""Layout of one point; ``rgb`` is the PCL convention (0x00RRGGBB bits stored in a float32)."""

POINT_FLOATS = POINT_DTYPE.itemsize // 4
"""Fields of a point, all 4 bytes wide: a cloud is a (H, W, 5) float32 tensor whose bytes are the message's."""

_RGB_BYTE = POINT_DTYPE.fields["rgb"][1]


@functools.lru_cache(maxsize=1)
def _ray_grid(h: int, w: int, fx: float, fy: float, cx: float, cy: float, device: torch.device) -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Per-pixel x/z and y/z (H, W) of the viewing rays on ``device``; cached because size and intrinsics rarely
    change, for the current ones only (one camera stream: a grid of an earlier size is never used again, and at the
    camera's resolution one is 8 bytes a pixel, 16 MiB for 1920x1080). Whole images, not broadcast rows: numpy
    multiplies them 20% faster. Divided on the CPU in float32 then moved, so every device gets the same bits (CUDA
    divides by a scalar through its reciprocal)."""
    rx = (torch.arange(w, dtype=torch.float32) - cx) / fx
    ry = (torch.arange(h, dtype=torch.float32) - cy) / fy
    return rx[None, :].expand(h, w).contiguous().to(device), ry[:, None].expand(h, w).contiguous().to(device)


def depth_to_points(
    depth: torch.Tensor, k: np.ndarray, rgb: torch.Tensor, labels: torch.Tensor | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Depth (H, W) metres -> organised cloud in the optical frame (REP 103) as a (H, W, 5) float32 tensor laid
    out as ``POINT_DTYPE`` (``as_points`` views its host copy as records), written into ``out`` when given.

    Organised like a depth camera's cloud (depth_image_proc does the same): invalid depth (NaN, <= 0) gives NaN
    coordinates, so neighbourhoods stay addressable and nothing is filtered per pixel. ``rgb``: (H, W, 3) uint8;
    ``labels``: (H, W) class ids, or None for label 0 (no segmentation ran).
    """
    h, w = depth.shape
    if rgb.shape[:2] != (h, w) or (labels is not None and labels.shape != (h, w)):
        shape = None if labels is None else tuple(labels.shape)
        raise ValueError(f"depth {tuple(depth.shape)}, rgb {tuple(rgb.shape)} and labels {shape} must share H, W")
    rx, ry = _ray_grid(h, w, float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), depth.device)
    if out is None:
        out = torch.empty((h, w, POINT_FLOATS), dtype=torch.float32, device=depth.device)
    kernel = _points_numpy if depth.device.type == "cpu" else _points_torch
    kernel(depth, rx, ry, rgb, labels, out)
    return out


def _points_torch(depth: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, rgb: torch.Tensor,
                  labels: torch.Tensor | None, out: torch.Tensor) -> None:
    """``depth_to_points`` off the CPU, field by field into ``out``'s bytes."""
    invalid = ~(depth > 0)  # NaN and non-positive depth: no return
    z = out[..., 2]
    z.copy_(depth).masked_fill_(invalid, torch.nan)
    # the fill after the product: NaN * r is 0x7FFFFFFF on CUDA but keeps the NaN's bits (numpy's) on x86
    torch.mul(rx, z, out=out[..., 0]).masked_fill_(invalid, torch.nan)
    torch.mul(ry, z, out=out[..., 1]).masked_fill_(invalid, torch.nan)
    # rgb as 0x00RRGGBB in little-endian bytes B, G, R, 0, written straight into the field's bytes
    colour = out.view(torch.uint8)[..., _RGB_BYTE : _RGB_BYTE + 4]
    for byte, channel in enumerate((2, 1, 0)):
        colour[..., byte].copy_(rgb[..., channel])
    colour[..., 3].zero_()
    label = out.view(torch.int32)[..., 4]  # uint32 on the wire; ids < 256 have the same bytes
    if labels is None:
        label.zero_()
    else:
        label.copy_(labels)


def _points_numpy(depth: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor, rgb: torch.Tensor,
                  labels: torch.Tensor | None, out: torch.Tensor) -> None:
    """``depth_to_points`` on the CPU, field by field into ``out``'s bytes."""
    d, flat = depth.numpy(), out.numpy()
    z = flat[..., 2]
    np.copyto(z, d, casting="same_kind")
    z[~(d > 0)] = np.nan  # NaN and non-positive depth: no return
    np.multiply(rx.numpy(), z, out=flat[..., 0])
    np.multiply(ry.numpy(), z, out=flat[..., 1])
    # rgb as 0x00RRGGBB: OpenCV's BGRA bytes as little-endian words, alpha cleared, one 4-byte store a point
    # (numpy's three strided byte stores into 20-byte records took twice as long as all of this kernel)
    words = flat.view(np.uint32)
    bgra = cv2.cvtColor(rgb.numpy(), cv2.COLOR_RGB2BGRA).view(np.uint32)[..., 0]
    np.bitwise_and(bgra, np.uint32(0x00FFFFFF), out=words[..., _RGB_BYTE // 4])
    words[..., 4] = 0 if labels is None else labels.numpy()


def as_points(buffer: np.ndarray) -> np.ndarray:
    """The host copy of a ``depth_to_points`` buffer, (H, W, 5) float32, as the (H, W) ``POINT_DTYPE`` records it
    holds (a view: no copy)."""
    return buffer.view(POINT_DTYPE)[..., 0]
