"""A fourth task from this one file, registered through the task registry: per-pixel image intensity.

Its ground truth is the grey level of the (augmented) input, computed by the task itself (``target_from_image``),
so any dataset trains it. Test-only: ``test_task_registry.py`` names this module in ``MTSHARE_TASK_MODULES`` and
runs it through training, the engine, a node process and replay.
"""

from __future__ import annotations

import numpy as np
import torch

from mtshare_ros.tasks import TaskSpec, register_task
from mtshare_ros.tasks.resize import nearest

NAME = "intensity"


class IntensityMetrics:
    """Mean absolute error of the intensity, pooled over pixels."""

    def __init__(self, num_classes: int = 0) -> None:
        self.state = torch.zeros(2, dtype=torch.float64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = pred[:, 0] if pred.dim() == 4 else pred
        self.state += torch.stack([(pred.double() - target.double()).abs().sum(), torch.tensor(float(pred.numel()))])

    def compute(self) -> dict[str, float]:
        err, n = self.state.tolist()
        return {"mae": err / n if n else float("nan"), "pixels": int(n)}


def _loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (pred.float()[:, 0] - target).abs().sum(), torch.tensor(target.numel(), device=target.device)


def _colour(m: torch.Tensor, out: torch.Tensor | None = None, num_classes: int = 0, scale=None) -> torch.Tensor:
    grey = (m.clamp(0, 1) * 255).round().to(torch.uint8)
    rgb = grey[..., None].expand(*grey.shape, 3)
    return rgb.contiguous() if out is None else out.copy_(rgb)


SPEC = register_task(TaskSpec(
    name=NAME, channels=1, encoding="32FC1", activate=torch.sigmoid,
    to_map=lambda output, settings: output[0].float().contiguous(),
    loss=_loss, as_target=lambda output: output[:, 0], metrics=IntensityMetrics, headline=("mae",),
    colour=_colour, upsample=nearest, decode_gt=lambda arr, encoding: arr.astype(np.float32),
    eval_pair=lambda pred, gt: (torch.from_numpy(pred)[None], torch.from_numpy(gt)[None]),
    gt_encodings=("32FC1",), target_from_image=lambda image: image.mean(1),
), replace=True)
