"""What a frame is processed with: the tasks, the valid depth range, the task-sharing and temporal-sharing
settings, as one immutable value.

The node resolves its parameters into a ``FrameSettings`` once per change and hands the whole value to the
worker, which reads it once per frame: a frame is never processed with half of an update (a task list
replaced while the predictor reads it). The defaults here are the package's defaults; the node's parameter
table and ``config/mtshare.yaml`` take them from here (a test checks the file); the temporal defaults are
``sharing/temporal.py``'s, beside the engine that reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from mtshare_ros.sharing.engine import MODES
from mtshare_ros.sharing.temporal import TemporalSettings
from mtshare_ros.tasks import BASE_TASK, BUILTIN_TASKS

__all__ = ["ALL_TASKS", "MODES", "SUB_TASKS", "FrameSettings", "SharingSettings", "TemporalSettings"]

ALL_TASKS = BUILTIN_TASKS
"""The default task list (the built-in tasks); ``tasks.task_names()`` has every registered one."""
SUB_TASKS = tuple(t for t in ALL_TASKS if t != BASE_TASK)


@dataclass(frozen=True)
class SharingSettings:
    """How sub-tasks reuse the base task: a relative token-change threshold (with optional per-task values) and
    a cap on recomputed tokens per layer.

    The threshold 0.05 is the one the shipped sub-tasks were trained at (sharing step 3, with a token cap of
    0.3); the cap of 0.1 measured faster and as accurate on the held-out split
    (``bench/results/task_sharing.md``). ``task_thresholds`` holds only tasks with their own value; the others
    take ``threshold`` (resolved in ``thresholds``, the one place that fallback is made).

    ``mode``: ``threshold`` (tokens above the threshold, at most the cap) or ``fixed`` (exactly the cap's
    ``ceil(max_token_fraction * N)`` tokens per layer, top-k by change, thresholds ignored: shapes fixed for an
    input size, what the ONNX backends run; per frame only, see ``sharing/engine.py``).
    """

    enabled: bool = True
    mode: str = "threshold"
    threshold: float = 0.05
    max_token_fraction: float = 0.1
    task_thresholds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def thresholds(self, tasks: tuple[str, ...] | list[str]) -> dict[str, float]:
        """The threshold of each of ``tasks``: its own value, else ``threshold``."""
        return {t: float(self.task_thresholds.get(t, self.threshold)) for t in tasks}


@dataclass(frozen=True)
class FrameSettings:
    """Everything that may change between frames. Depth outside ``[min_depth, max_depth]`` metres is reported
    invalid (NaN, REP 118). ``max_width`` caps the inference (and output) width: the model sees a fixed number of
    rows and a width that keeps the aspect ratio, so a very wide strip would otherwise cost without bound.
    ``output_size``: ``inference`` publishes the model's resolution (cheapest), ``input`` the camera's.
    ``motion_frame``: with temporal motion compensation, the fixed frame (e.g. ``odom``) the camera's pose is looked
    up in for the image motion (``runtime/tf_motion.py``); '' estimates it from the images."""

    tasks: tuple[str, ...] = ALL_TASKS
    min_depth: float = 0.05
    max_depth: float = 20.0
    max_width: int = 640
    output_size: str = "inference"  # or "input": outputs at the camera's resolution (runtime/upsample.py)
    sharing: SharingSettings = field(default_factory=SharingSettings)
    temporal: TemporalSettings = field(default_factory=TemporalSettings)
    motion_frame: str = ""
