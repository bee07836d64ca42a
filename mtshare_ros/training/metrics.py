"""Standard dense-prediction metrics as accumulators that can be merged across processes.

Every accumulator keeps only sums (a confusion matrix, error sums, an angle histogram) in one float64
tensor ``state``, so that distributed evaluation is one ``all_reduce`` of that tensor. Depth and
normals errors are pooled over all valid pixels of the split (not averaged per image). Each task's
accumulator is its ``TaskSpec.metrics`` (``mtshare_ros/tasks/``); the built-in ones are re-exported here.
"""

from __future__ import annotations

from typing import Any

from mtshare_ros.tasks import BUILTIN_TASKS, task_spec
from mtshare_ros.tasks.depth import DepthMetrics
from mtshare_ros.tasks.normals import ANGLE_BIN_DEG, NormalsMetrics
from mtshare_ros.tasks.segmentation import SegmentationMetrics

__all__ = ["ANGLE_BIN_DEG", "HEADLINE", "DepthMetrics", "NormalsMetrics", "SegmentationMetrics", "build_metrics",
           "headline"]

Metrics = Any
"""An accumulator: ``update(pred, target)``, ``compute()``, a float64 ``state``."""


def build_metrics(task: str, num_classes: int) -> Metrics:
    """The accumulator for ``task``."""
    return task_spec(task).metrics(num_classes)


def headline(task: str) -> tuple[str, ...]:
    """The numbers ``task`` reports in logs and tables."""
    return task_spec(task).headline


HEADLINE = {t: task_spec(t).headline for t in BUILTIN_TASKS}
"""The numbers each built-in task reports (tables with a column per task); ``headline(task)`` for any task."""
