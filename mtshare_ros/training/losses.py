"""Per-task training losses, returned as (sum, count) so that callers choose the normaliser.

Returning the un-normalised sum and the number of contributing pixels lets data-parallel training
divide by the *global* count: N processes then compute exactly the gradient of one process with the
whole batch, even when the processes hold different numbers of valid pixels. Each task's loss is its
``TaskSpec.loss`` (``mtshare_ros/tasks/``); the built-in ones are re-exported here by name.
"""

from __future__ import annotations

import torch

from mtshare_ros.tasks import task_spec
from mtshare_ros.tasks.depth import MIN_VALID_DEPTH, SI_LAMBDA, depth_loss
from mtshare_ros.tasks.normals import normals_loss, normals_valid
from mtshare_ros.tasks.segmentation import segmentation_loss

__all__ = ["MIN_VALID_DEPTH", "SI_LAMBDA", "as_target", "depth_loss", "normals_loss", "normals_valid",
           "segmentation_loss", "task_loss"]


def as_target(task: str, output: torch.Tensor) -> torch.Tensor:
    """A model's output in the form of the task's ground truth (class ids; depth (B, H, W) metres; unit
    normals), so that it can be a training target (distillation)."""
    return task_spec(task).as_target(output)


def task_loss(task: str, pred: torch.Tensor, sample: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of ``task`` against its ground truth in ``sample`` (which must hold the task's key)."""
    if task not in sample:
        raise KeyError(f"the dataset provides no {task!r} ground truth (sample keys: {sorted(sample)})")
    return task_spec(task).loss(pred, sample[task])
