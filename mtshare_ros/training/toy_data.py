"""A tiny procedural dataset in the sample contract, for tests and smoke runs of the training loop.

Each sample is a wall above a floor with one coloured box: learnable in a few steps, generated in
microseconds, deterministic per index. It is not a benchmark; the synthetic MuJoCo scenes are.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from mtshare_ros.classes import IGNORE_INDEX, SYNTHETIC_CLASSES


class ToyScenes(Dataset):
    """``length`` samples of size ``size``; ``seed`` selects the sequence."""

    class_names = SYNTHETIC_CLASSES

    def __init__(self, length: int = 32, size: tuple[int, int] = (64, 96), seed: int = 0) -> None:
        self.length, self.size, self.seed = length, tuple(size), seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = torch.Generator().manual_seed(self.seed * 100_003 + index)
        h, w = self.size
        horizon = int(torch.randint(h // 3, 2 * h // 3, (1,), generator=g))
        rows = torch.arange(h).view(h, 1).expand(h, w)
        cols = torch.arange(w).view(1, w).expand(h, w)
        floor = rows >= horizon
        seg = torch.where(floor, 1, 0)
        wall_depth = 2.0 + 3.0 * float(torch.rand(1, generator=g))
        depth = torch.full((h, w), wall_depth)
        depth = torch.where(floor, wall_depth * (horizon / rows.clamp_min(1).float()).clamp(0.3, 1.0), depth)
        normals = torch.zeros(3, h, w)
        normals[2] = torch.where(floor, 0.0, -1.0)
        normals[1] = torch.where(floor, -1.0, 0.0)
        cls = int(torch.randint(6, 12, (1,), generator=g))
        y0, x0 = int(torch.randint(0, h // 2, (1,), generator=g)), int(torch.randint(0, w // 2, (1,), generator=g))
        box = (rows >= y0) & (rows < y0 + h // 3) & (cols >= x0) & (cols < x0 + w // 3)
        seg = torch.where(box, cls, seg)
        depth = torch.where(box, depth * 0.6, depth)
        normals[:, box] = torch.tensor([0.0, 0.0, -1.0]).view(3, 1)
        palette = torch.rand(len(SYNTHETIC_CLASSES), 3, generator=torch.Generator().manual_seed(7))
        image = palette[seg].permute(2, 0, 1) * (1.0 / depth).clamp(0, 1).sqrt()
        image = (image + 0.03 * torch.randn(3, h, w, generator=g)).clamp(0, 1)
        seg[:1] = IGNORE_INDEX  # one unlabelled row, as real loaders have
        depth[:, :1] = 0.0  # one invalid depth column
        normals[:, -1:] = 0.0  # one invalid normals row
        return {"image": image.float(), "segmentation": seg.long(), "depth": depth.float(),
                "normals": normals.float(), "name": f"toy_{self.seed}_{index:05d}"}
