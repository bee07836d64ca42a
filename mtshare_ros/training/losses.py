"""Per-task training losses, returned as (sum, count) so that callers choose the normaliser.

Returning the un-normalised sum and the number of contributing pixels lets data-parallel training
divide by the *global* count: N processes then compute exactly the gradient of one process with the
whole batch, even when the processes hold different numbers of valid pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtshare_ros.classes import IGNORE_INDEX

MIN_VALID_DEPTH = 1e-3
"""Depth at or below this (metres) is treated as invalid; the sample contract uses 0."""


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over labelled pixels; ``IGNORE_INDEX`` pixels contribute nothing."""
    loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, (target != IGNORE_INDEX).sum()


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 on log depth over valid pixels: relative error, the quantity abs-rel and delta measure.

    ``pred`` (B, 1, H, W) metres (positive), ``target`` (B, H, W) metres, 0 where invalid.
    """
    valid = target > MIN_VALID_DEPTH
    pred = pred.float()[:, 0]
    diff = torch.log(pred.clamp_min(1e-6)) - torch.log(target.clamp_min(MIN_VALID_DEPTH))
    return (diff.abs() * valid).sum(), valid.sum()


def normals_valid(target: torch.Tensor) -> torch.Tensor:
    """Pixels with a ground-truth normal (the contract marks the others all-zero)."""
    return target.norm(dim=1) > 0.5


def normals_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1 - cosine between unit vectors over valid pixels (``pred``, ``target``: (B, 3, H, W))."""
    valid = normals_valid(target)
    cos = (F.normalize(pred.float(), dim=1) * target).sum(dim=1)
    return ((1.0 - cos) * valid).sum(), valid.sum()


LOSSES = {"segmentation": segmentation_loss, "depth": depth_loss, "normals": normals_loss}


def task_loss(task: str, pred: torch.Tensor, sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of ``task`` against its ground truth in ``sample`` (which must hold the task's key)."""
    if task not in sample:
        raise KeyError(f"the dataset provides no {task!r} ground truth (sample keys: {sorted(sample)})")
    return LOSSES[task](pred, sample[task])
