"""False-colour images for people (RViz, the demo picture, replay pictures); never used for computation.

Made on the device the maps live on and written into a caller's ``out`` buffer when given
(``runtime/buffers.py`` reuses one per output frame after frame), so that on a GPU only the finished uint8 image
crosses to the host: one copy per output instead of copying the float maps and colouring them on the CPU.
On the CPU, OpenCV makes them (one fused SIMD pass per image); elsewhere torch does, with OpenCV's arithmetic
(``convertScaleAbs``: scale in float32, round half to even, saturate; turbo from ``cv2.COLORMAP_TURBO``; the
scale is numpy's percentile to the bit). Torch on the CPU was measured 3-6x slower than OpenCV with one thread
(an op per pass) and tens of times slower with two threads on a loaded machine, hence the two kernels.
Both are the same image, except where OpenCV fuses the multiply-add of the normals' (n + 1) / 2: a value whose
float32 product lands on a .5 boundary may round the other way, by 1 LSB (``test/test_colorize.py``).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from mtshare_ros.classes import palette


@functools.lru_cache(maxsize=8)
def _palette_lut(num_classes: int, device: torch.device) -> torch.Tensor:
    """The palette as a (256, 3) uint8 table on ``device``: every uint8 id (255 = ignore too) has a colour, so a
    lookup never goes out of range. Cached: made once per device, not per frame."""
    return torch.from_numpy(np.ascontiguousarray(palette(num_classes).reshape(256, 3))).to(device)


@functools.lru_cache(maxsize=4)
def _near_turbo_lut(device: torch.device) -> torch.Tensor:
    """Turbo as a (256, 3) RGB table indexed by nearness: entry i is turbo(255 - i), so 0 m (i = 0) is red."""
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_TURBO).reshape(256, 3)
    return torch.from_numpy(np.ascontiguousarray(bgr[::-1, ::-1])).to(device)


def _output(like: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``out``, or a new (H, W, 3) uint8 image beside ``like`` (H, W, ...)."""
    if out is None:
        out = torch.empty((*like.shape[:2], 3), dtype=torch.uint8, device=like.device)
    return out


def _lookup(lut: torch.Tensor, index: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(H, W) indices -> (H, W, 3) rows of ``lut`` written into ``out`` (one gather, no temporary)."""
    h, w = index.shape
    torch.index_select(lut, 0, index.reshape(-1).long(), out=out.view(h * w, 3))
    return out


def _segmentation_torch(labels: torch.Tensor, num_classes: int, out: torch.Tensor) -> torch.Tensor:
    """``colorize_segmentation`` off the CPU: one gather from the palette."""
    return _lookup(_palette_lut(num_classes, labels.device), labels, out)


def _segmentation_opencv(labels: torch.Tensor, num_classes: int, out: torch.Tensor) -> torch.Tensor:
    """``colorize_segmentation`` on the CPU: the palette as an OpenCV user colormap (one table lookup)."""
    cv2.applyColorMap(labels.numpy(), _palette_lut(num_classes, labels.device).numpy()[:, None], dst=out.numpy())
    return out


def colorize_segmentation(labels: torch.Tensor, num_classes: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 RGB with the package palette."""
    kernel = _segmentation_opencv if labels.device.type == "cpu" else _segmentation_torch
    return kernel(labels, num_classes, _output(labels, out))


def _percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``numpy.percentile(values[isfinite(values)], q)`` (its default linear method, bit for bit in float32) as a
    0-d tensor on the device, NaN when no value is finite. Written out because ``torch.quantile`` takes the
    rank in float32 and lands an ulp off numpy's, and without a host sync (indices stay tensors)."""
    finite = torch.isfinite(values)
    ordered = torch.sort(torch.where(finite, values, torch.nan)).values  # NaN sorts last
    last = (finite.sum() - 1).clamp_min(0).view(1)
    rank = last.double() * (q / 100)  # numpy: (n - 1) * q in float64
    below = rank.floor()
    gamma = rank - below
    lo = below.long()
    a, b = ordered.gather(0, lo), ordered.gather(0, torch.minimum(lo + 1, last))
    # numpy's lerp in float32: a + (b - a) t, or b - (b - a)(1 - t) from t = 0.5 on (weights rounded to float32)
    diff = b - a
    value = torch.where(gamma >= 0.5, b - diff * (1 - gamma).float(), a + diff * gamma.float())
    return torch.where(finite.any(), value, torch.nan).view(())


def _depth_torch(depth: torch.Tensor, max_depth: float | None, out: torch.Tensor) -> torch.Tensor:
    """``colorize_depth`` off the CPU: the scale stays a tensor on the device (reading it back would stall a GPU
    once per frame)."""
    if max_depth is None:
        far = _percentile(depth[::4, ::4].reshape(-1), 98)
        far = torch.where(torch.isnan(far), 1.0, far)  # no finite pixel: any scale, all of it is black
    else:
        far = torch.tensor(max_depth, dtype=torch.float64)
    far = far.to(device=depth.device, dtype=torch.float64).clamp_min(1e-6)
    # OpenCV's order: clip in float32, scale by float32(255 / far) (divided in double), round half to even
    index = torch.clamp(depth, max=far.float()).clamp_min_(0.0)  # NaN stays NaN (black below)
    index.mul_((255.0 / far).float()).round_().clamp_(0, 255).nan_to_num_(0.0)
    _lookup(_near_turbo_lut(depth.device), index, out)
    return out.masked_fill_(~torch.isfinite(depth)[..., None], 0)


def _depth_opencv(depth: torch.Tensor, max_depth: float | None, out: torch.Tensor) -> torch.Tensor:
    """``colorize_depth`` on the CPU: clip, scale and round in one OpenCV pass, the table lookup in another."""
    d = depth.numpy()
    if max_depth is None:
        sample = d[::4, ::4]
        sample = sample[np.isfinite(sample)]
        max_depth = float(np.percentile(sample, 98)) if sample.size else 1.0
    max_depth = max(max_depth, 1e-6)
    clipped = np.clip(d, 0.0, max_depth).astype(np.float32, copy=False)  # NaN stays NaN
    index = cv2.convertScaleAbs(clipped, alpha=255.0 / max_depth)  # 0 .. 255, NaN -> masked below
    rgb = cv2.applyColorMap(index, _near_turbo_lut(depth.device).numpy()[:, None], dst=out.numpy())
    rgb[~np.isfinite(d)] = 0
    return out


def colorize_depth(
    depth: torch.Tensor, max_depth: float | None = None, out: torch.Tensor | None = None
) -> torch.Tensor:
    """(H, W) float32 metres with NaN -> (H, W, 3) uint8 RGB (turbo, near = red); invalid pixels are black.

    ``max_depth`` (default: the 98th percentile of the frame's finite values) maps to the far end of the scale.
    The percentile is taken over 1/16 of the pixels (every 4th row and column): as good for a colour scale, and
    10x cheaper.
    """
    kernel = _depth_opencv if depth.device.type == "cpu" else _depth_torch
    return kernel(depth, max_depth, _output(depth, out))


def _normals_torch(normals: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``colorize_normals`` off the CPU: float32 multiply, add, round half to even, saturate (OpenCV's steps)."""
    out.copy_(normals.mul(127.5).add_(127.5).abs_().round_().clamp_(0, 255).nan_to_num_(0.0))
    invalid = ~torch.isfinite(normals[..., 2]) | (normals == 0).all(dim=-1)
    return out.masked_fill_(invalid[..., None], 0)


def _normals_opencv(normals: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``colorize_normals`` on the CPU: one ``convertScaleAbs`` pass, then the invalid pixels."""
    n = normals.numpy()
    rgb = cv2.convertScaleAbs(n, dst=out.numpy(), alpha=127.5, beta=127.5)
    rgb[~np.isfinite(n[..., 2]) | ((n[..., 2] == 0) & (n[..., 0] == 0) & (n[..., 1] == 0))] = 0
    return out


def colorize_normals(normals: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """(H, W, 3) float32 unit normals -> (H, W, 3) uint8 RGB via (n + 1) / 2; NaN or zero normals are black."""
    kernel = _normals_opencv if normals.device.type == "cpu" else _normals_torch
    return kernel(normals, _output(normals, out))
