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


SI_LAMBDA = 0.85
"""Weight of the mean term in the scale-invariant log loss (Eigen et al. 2014; 0.85 as in BTS / AdaBins)."""


def depth_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 on log depth plus the scale-invariant log term, over valid pixels.

    The L1 term fixes the metric scale (it is what abs-rel and delta measure). Alone it learns slowly:
    while an image's scale is off, every pixel's error has the same sign and its sign-only gradient says
    nothing about the image's structure. The scale-invariant term, per image
    ``sum(d^2) - lambda * sum(d)^2 / n`` with ``d = log pred - log target``, rewards the structure directly.
    ``pred`` (B, 1, H, W) metres (positive), ``target`` (B, H, W) metres, 0 where invalid.
    """
    valid = target > MIN_VALID_DEPTH
    diff = (torch.log(pred.float()[:, 0].clamp_min(1e-6)) - torch.log(target.clamp_min(MIN_VALID_DEPTH))) * valid
    n = valid.flatten(1).sum(1).clamp_min(1)
    s1, s2 = diff.flatten(1).sum(1), (diff**2).flatten(1).sum(1)
    return diff.abs().sum() + (s2 - SI_LAMBDA * s1**2 / n).sum(), valid.sum()


def normals_valid(target: torch.Tensor) -> torch.Tensor:
    """Pixels with a ground-truth normal (the contract marks the others all-zero)."""
    return target.norm(dim=1) > 0.5


def normals_loss(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """1 - cosine between unit vectors over valid pixels (``pred``, ``target``: (B, 3, H, W))."""
    valid = normals_valid(target)
    cos = (F.normalize(pred.float(), dim=1) * target).sum(dim=1)
    return ((1.0 - cos) * valid).sum(), valid.sum()


LOSSES = {"segmentation": segmentation_loss, "depth": depth_loss, "normals": normals_loss}


def as_target(task: str, output: torch.Tensor) -> torch.Tensor:
    """A model's output in the form of the task's ground truth (class ids; depth (B, H, W) metres; unit
    normals), so that it can be a training target (distillation)."""
    if task == "segmentation":
        return output.argmax(1)
    if task == "depth":
        return output[:, 0]
    return output


def task_loss(task: str, pred: torch.Tensor, sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of ``task`` against its ground truth in ``sample`` (which must hold the task's key)."""
    if task not in sample:
        raise KeyError(f"the dataset provides no {task!r} ground truth (sample keys: {sorted(sample)})")
    return LOSSES[task](pred, sample[task])
