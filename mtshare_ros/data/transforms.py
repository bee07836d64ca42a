"""Resizing and augmentation for dense multi-task samples that keep every target geometrically correct.

Samples here are dicts of numpy arrays in HWC layout: ``image`` uint8 (H, W, 3), ``segmentation`` int
(H, W), ``depth`` float32 metres (H, W, 0 = invalid), ``normals`` float32 (H, W, 3) optical frame.
- Segmentation and depth are resized with nearest neighbour: no invented classes, no depths blended
  across object boundaries, invalid pixels stay invalid; depth values are never rescaled (zooming
  is a focal-length change, which leaves metric depth along the optical axis unchanged).
- Normals are resized with nearest neighbour and stay unit length; under a horizontal flip the x
  component changes sign (the camera's right becomes its left), y and z are kept.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from mtshare_ros.tasks import task_names


def hflip(sample: dict) -> dict:
    """Mirror left-right; normals' x component negates."""
    out = dict(sample)
    for key in ("image", "segmentation", "depth", "normals"):
        if key in out:
            out[key] = np.ascontiguousarray(out[key][:, ::-1])
    if "normals" in out:
        out["normals"] = out["normals"] * np.array([-1.0, 1.0, 1.0], dtype=np.float32)
    return out


def resize(sample: dict, size: tuple[int, int]) -> dict:
    """Resize every map to ``size`` = (H, W)."""
    h, w = size
    out = dict(sample)
    src_h, src_w = sample["image"].shape[:2]
    if (src_h, src_w) == (h, w):
        return out
    shrink = h < src_h and w < src_w
    out["image"] = cv2.resize(sample["image"], (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    for key in task_names():
        if key in sample:
            arr = sample[key]
            integer = np.issubdtype(arr.dtype, np.integer)  # class ids: cv2 has no int64 resize
            out[key] = cv2.resize(arr.astype(np.int32) if integer else arr, (w, h), interpolation=cv2.INTER_NEAREST)
            if integer:
                out[key] = out[key].astype(arr.dtype)
    if "focal" in sample:  # a resized image has its focal length scaled with it
        out["focal"] = float(sample["focal"]) * w / src_w
    return out


def random_scale_crop(sample: dict, size: tuple[int, int], rng: np.random.Generator,
                      scale: tuple[float, float] = (1.0, 1.5)) -> dict:
    """Zoom in by a random factor around a random point and crop ``size`` (a longer-focal-length view)."""
    h, w = size
    s = float(rng.uniform(*scale))
    big = resize(sample, (int(round(h * s)), int(round(w * s))))
    y0 = int(rng.integers(0, big["image"].shape[0] - h + 1))
    x0 = int(rng.integers(0, big["image"].shape[1] - w + 1))
    return {k: (v[y0:y0 + h, x0:x0 + w] if isinstance(v, np.ndarray) else v) for k, v in big.items()}


def colour_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Brightness, contrast, saturation and a small hue shift (photometric only: labels unchanged)."""
    img = image.astype(np.float32) / 255.0
    img = img * float(rng.uniform(1 - strength, 1 + strength))
    mean = img.mean()
    img = (img - mean) * float(rng.uniform(1 - strength, 1 + strength)) + mean
    grey = img.mean(axis=2, keepdims=True)
    img = (img - grey) * float(rng.uniform(1 - strength, 1 + strength)) + grey
    hsv = cv2.cvtColor(np.clip(img, 0, 1), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + float(rng.uniform(-10, 10))) % 360.0
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def augment(sample: dict, size: tuple[int, int], rng: np.random.Generator) -> dict:
    """Training augmentation: random zoom-crop, horizontal flip, colour jitter; output has ``size``."""
    out = random_scale_crop(resize(sample, size), size, rng)
    if rng.uniform() < 0.5:
        out = hflip(out)
    out["image"] = colour_jitter(out["image"], rng)
    return out


def to_tensors(sample: dict) -> dict:
    """HWC numpy sample -> the torch sample contract (image (3,H,W) in [0,1], normals (3,H,W), ...)."""
    out: dict = {"image": torch.from_numpy(np.ascontiguousarray(sample["image"].transpose(2, 0, 1))).float() / 255.0}
    if "segmentation" in sample:
        out["segmentation"] = torch.from_numpy(np.ascontiguousarray(sample["segmentation"])).long()
    if "depth" in sample:
        out["depth"] = torch.from_numpy(np.ascontiguousarray(sample["depth"], dtype=np.float32))
    if "normals" in sample:
        n = np.ascontiguousarray(sample["normals"].transpose(2, 0, 1), dtype=np.float32)
        out["normals"] = torch.from_numpy(n)
    if "focal" in sample:
        out["focal"] = torch.tensor(float(sample["focal"]), dtype=torch.float32)
    out["name"] = sample.get("name", "")
    return out


