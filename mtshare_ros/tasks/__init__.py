"""The task registry (``spec.py``) and the built-in tasks, one file each: segmentation (the base task), depth and
normals. ``task_spec(name)`` / ``task_names()`` are how every layer asks what a task is."""

from mtshare_ros.tasks import depth, normals, segmentation  # noqa: F401  (they register themselves)
from mtshare_ros.tasks.spec import (
    TASK_MODULES_ENV,
    TaskSpec,
    register_task,
    task_names,
    task_spec,
    unregister_task,
)

BUILTIN_TASKS = ("segmentation", "depth", "normals")
BASE_TASK = "segmentation"
"""The task that runs in full; the others are its sub-tasks (the method's choice: segmentation's features are the
most general of the three)."""


def sub_tasks() -> tuple[str, ...]:
    """Every registered task but the base task."""
    return tuple(t for t in task_names() if t != BASE_TASK)


__all__ = ["BASE_TASK", "BUILTIN_TASKS", "TASK_MODULES_ENV", "TaskSpec", "register_task", "sub_tasks", "task_names",
           "task_spec", "unregister_task"]
