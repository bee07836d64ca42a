"""Sensor effects for training: make a clean render look like a frame from a real camera.

The renderer gives noise-free, perfectly focused, linear-looking pinhole images; a real camera adds exposure and
white-balance errors, a tone curve, vignetting, motion and defocus blur, sensor noise and JPEG compression.
``apply_sensor_effects`` draws each effect per image (with its probability and a random strength) on a batch of
[0, 1] RGB images (B, 3, H, W). Only the image changes: every effect is photometric or a blur small against the
labels' structure, so the targets stay as they are.

Random numbers come from ``torch.Generator`` seeded with (seed, step) for the whole global batch, each process
taking its rows (as ``trainer.batch_augment``): the same seed gives the same images, for any number of processes.
Configured by the ``sensor`` section of a training config (``training/config.py``); off by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

EFFECTS = ("exposure", "white_balance", "gamma", "vignetting", "motion_blur", "defocus", "noise", "jpeg")


@dataclass(frozen=True)
class SensorEffects:
    """Probability of each effect per image and the range of its strength."""

    enabled: bool = False
    exposure: float = 0.8  # probability; gain drawn log-uniformly in [1/exposure_range, exposure_range]
    exposure_range: float = 1.8
    white_balance: float = 0.7  # per-channel gains of red and blue in [1 - wb_range, 1 + wb_range]
    wb_range: float = 0.15
    gamma: float = 0.5  # tone curve x ** g with g in [1/gamma_range, gamma_range]
    gamma_range: float = 1.4
    vignetting: float = 0.5  # corner darkening up to vignetting_max
    vignetting_max: float = 0.45
    motion_blur: float = 0.3  # a line kernel of up to motion_max pixels at a random angle
    motion_max: int = 9
    defocus: float = 0.3  # Gaussian blur, sigma up to defocus_max pixels
    defocus_max: float = 1.5
    noise: float = 0.8  # shot noise (variance proportional to the signal) plus read noise
    noise_max: float = 0.03  # standard deviation at full signal
    jpeg: float = 0.5  # JPEG at a quality in [jpeg_min, 95]
    jpeg_min: int = 40

    @classmethod
    def from_config(cls, section: dict[str, Any]) -> SensorEffects:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"unknown sensor effect setting(s) {unknown}; known: {sorted(known)}")
        out = cls(**section)
        for name in EFFECTS:
            p = getattr(out, name)
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"sensor.{name} is a probability, got {p!r}")
        return out


def _kernel_motion(length: int, angle: float) -> torch.Tensor:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    for t in np.linspace(-c, c, 4 * length):
        k[int(round(c + t * math.sin(angle))), int(round(c + t * math.cos(angle)))] = 1.0
    return torch.from_numpy(k / k.sum())


def _kernel_gauss(sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def _blur(img: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """One image (3, H, W) convolved with ``kernel`` per channel (reflected borders)."""
    k = kernel.to(img.device, img.dtype)
    ph, pw = k.shape[0] // 2, k.shape[1] // 2
    x = F.pad(img[None], (pw, pw, ph, ph), mode="reflect")
    return F.conv2d(x, k.expand(3, 1, *k.shape), groups=3)[0]


def _jpeg(img: torch.Tensor, quality: int) -> torch.Tensor:
    rgb = (img.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        return img
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).to(img.device, img.dtype) / 255.0


def apply_sensor_effects(
    image: torch.Tensor, fx: SensorEffects, seed: int, step: int, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """``image`` (B, 3, H, W) in [0, 1] with sensor effects drawn per image from (seed, step); same shape and
    dtype, in [0, 1]. Unchanged when ``fx.enabled`` is false."""
    if not fx.enabled:
        return image
    b, _, h, w = image.shape
    g = torch.Generator().manual_seed(seed * 104_729 + 3 * step + 2)
    n_draw = 2 * len(EFFECTS) + 4
    draws = torch.rand(b * world_size, n_draw, generator=g)[rank::world_size]
    noise_seeds = torch.randint(0, 2**31 - 1, (b * world_size,), generator=g)[rank::world_size]
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    r2 = ((xx**2 + yy**2) / 2.0).to(image.device, image.dtype)
    out = []
    for i in range(b):
        img = image[i].clone()
        d = draws[i].tolist()
        on = {name: d[k] < float(getattr(fx, name)) for k, name in enumerate(EFFECTS)}
        u = d[len(EFFECTS):]  # strengths
        # the scene light reaching the lens: blur first (optics, motion), then the sensor, then the processing
        if on["motion_blur"] and fx.motion_max >= 3:
            length = 3 + 2 * int(u[0] * (fx.motion_max - 2) / 2)  # odd: centred, size kept
            img = _blur(img, _kernel_motion(length, u[1] * math.pi))
        if on["defocus"]:
            img = _blur(img, _kernel_gauss(0.3 + u[2] * (fx.defocus_max - 0.3)))
        if on["vignetting"]:
            img = img * (1.0 - u[3] * fx.vignetting_max * r2)
        if on["exposure"]:
            img = img * math.exp((2 * u[4] - 1) * math.log(fx.exposure_range))
        if on["white_balance"]:
            gains = torch.tensor([1 + (2 * u[5] - 1) * fx.wb_range, 1.0, 1 + (2 * u[6] - 1) * fx.wb_range])
            img = img * gains.to(img.device, img.dtype).view(3, 1, 1)
        if on["noise"]:
            ng = torch.Generator().manual_seed(int(noise_seeds[i]))
            sigma = u[7] * fx.noise_max
            z = torch.randn(img.shape, generator=ng).to(img.device, img.dtype)
            img = img + z * torch.sqrt(sigma**2 * img.clamp(0, 1) + (0.25 * sigma) ** 2)
        img = img.clamp(0.0, 1.0)
        if on["gamma"]:
            img = img ** math.exp((2 * u[8] - 1) * math.log(fx.gamma_range))
        if on["jpeg"]:
            img = _jpeg(img, fx.jpeg_min + int(u[9] * (95 - fx.jpeg_min)))
        out.append(img.clamp(0.0, 1.0))
    return torch.stack(out)
