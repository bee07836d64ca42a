"""False-colour images for people (RViz, the demo picture, replay pictures); never used for computation.

The kernels are ``tasks/colour.py``'s; each task's ``TaskSpec.colour`` chooses its own. ``colorize_array`` is the
numpy entry point for pictures made outside the node.
"""

from __future__ import annotations

import numpy as np
import torch

from mtshare_ros.tasks import task_spec
from mtshare_ros.tasks.colour import colorize_depth, colorize_normals, colorize_segmentation

__all__ = ["colorize_array", "colorize_depth", "colorize_normals", "colorize_segmentation"]


def colorize_array(task: str, array: np.ndarray, num_classes: int, max_depth: float | None = None) -> np.ndarray:
    """A task's map as a numpy array -> its colour image as a numpy array, on the CPU: the node's own colours for
    pictures made outside the node (``mtshare demo``, replay's montage and video). ``num_classes`` is used by
    segmentation, ``max_depth`` (the far end of the scale) by depth."""
    try:
        spec = task_spec(task)
    except ValueError:
        raise ValueError(f"no colours for task {task!r}") from None
    return spec.colour(torch.from_numpy(np.ascontiguousarray(array)), num_classes=num_classes, scale=max_depth).numpy()
