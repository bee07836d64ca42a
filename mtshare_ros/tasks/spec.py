"""What a task is, in one value: ``TaskSpec``, and the registry every layer looks tasks up in.

A task used to be spelled out in a dozen modules (its output channels in the model, its loss, its metrics, how the
predictor turns the head's output into a published map, its ROS encoding, its colours, how it is upsampled for
``output_size: input``, how replay decodes its ground truth); adding one meant editing them all, and a missed one
failed silently. Now a task is one ``TaskSpec``, registered once (``register_task``); the model, training, the
predictor, the outputs, the node and replay ask the registry (``task_spec``, ``task_names``). The built-in tasks
are ``tasks/segmentation.py``, ``tasks/depth.py`` and ``tasks/normals.py``; another is one more such file, named in
``MTSHARE_TASK_MODULES`` (comma-separated importable modules, imported on the registry's first use, in this
process and in every node process started from it: the environment is inherited) or imported before use.

This package sits at the bottom of the layers (``models/`` and everything above import it; it imports only
``classes.py``, torch, numpy and OpenCV).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["TASK_MODULES_ENV", "TaskSpec", "register_task", "task_names", "task_spec", "unregister_task"]

TASK_MODULES_ENV = "MTSHARE_TASK_MODULES"
"""Environment variable naming modules that register more tasks (``pkg.my_task,other.task``)."""


def _same(x: Any) -> Any:
    return x


def _flip_plain(t: torch.Tensor) -> torch.Tensor:
    return t.flip(-1)


@dataclass(frozen=True)
class TaskSpec:
    """Everything the package does differently for one task.

    Shapes: the model's output is (B, C, H, W); a *map* is what the node publishes for one frame, (h, w) or
    (h, w, c), on the predictor's device; ground truth follows the dataset contract of the task (class ids (B, H, W),
    depth (B, H, W) metres, normals (B, 3, H, W), ...).
    """

    name: str
    channels: int | None
    """Output channels of the head; ``None`` means the checkpoint's number of classes."""
    encoding: str
    """ROS image encoding of the published map (mono8, 32FC1, 32FC3, ...)."""
    activate: Callable[[torch.Tensor], torch.Tensor]
    """The head's raw output, upsampled to the input size -> the model's output (a depth's exp, a unit vector)."""
    to_map: Callable[[torch.Tensor, Any], torch.Tensor]
    """One frame's model output (C, H, W) and the frame's settings (``min_depth``, ``max_depth``) -> the published
    map, contiguous, on the same device."""
    loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    """(model output, ground truth) -> (sum, count) over contributing pixels (callers choose the normaliser)."""
    as_target: Callable[[torch.Tensor], torch.Tensor]
    """A model's output in the form of the ground truth (distillation targets)."""
    metrics: Callable[[int], Any]
    """``num_classes`` -> an accumulator with ``update(pred, target)``, ``compute()`` and a float64 ``state``."""
    headline: tuple[str, ...]
    """The numbers of ``compute()`` reported in logs and tables; the first is the one-number summary."""
    colour: Callable[..., torch.Tensor]
    """``colour(map, out=None, num_classes=..., scale=None)`` -> (h, w, 3) uint8 RGB on the map's device (``out``:
    a buffer to write into; ``scale``: the far end of a colour scale, where the task has one)."""
    upsample: Callable[[np.ndarray, tuple[int, int]], np.ndarray]
    """A host map -> the same map at (H, W) (``output_size: input``)."""
    decode_gt: Callable[[np.ndarray, str], np.ndarray]
    """A decoded ground-truth image array and its encoding -> ground truth in the dataset loaders' convention."""
    eval_pair: Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
    """A published map and its ground truth (same size, host) -> (pred, target) for ``metrics().update``."""
    gt_encodings: tuple[str, ...] = ()
    """Encodings a ground-truth topic of this task may have (replay checks them)."""
    flip_target: Callable[[torch.Tensor], torch.Tensor] = _flip_plain
    """Ground truth (B, ...) mirrored left-right (training's flip augmentation; normals also negate x)."""
    target_from_image: Callable[[torch.Tensor], torch.Tensor] | None = None
    """For a task whose ground truth is computed from the image itself: (B, 3, H, W) in [0, 1] -> target. Training
    computes it after augmentation when the dataset provides no such key."""
    check_gt: Callable[[np.ndarray, int, str], None] | None = None
    """Raises ValueError when a ground-truth map is not valid for ``num_classes`` (named by ``where``)."""
    coverage: bool = False
    """The published map is NaN where the node reports no value (depth out of range): replay leaves those pixels
    out of the errors and reports the fraction it covers."""
    error_picture: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None
    """(map, ground truth, rgb) -> an RGB picture of the error (replay's montage), when the task draws one."""
    error_title: str = ""
    order: int = 100
    """Where the task comes in ``task_names()`` (the built-ins 0, 1, 2; then registration order)."""
    extra: dict = field(default_factory=dict)

    def out_channels(self, num_classes: int) -> int:
        return self.channels if self.channels is not None else num_classes


_REGISTRY: dict[str, TaskSpec] = {}
_plugins_loaded = False


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add ``spec`` to the registry (``replace``: overwrite a task of the same name, e.g. a module reloaded)."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"task {spec.name!r} is registered already")
    if not spec.name or "/" in spec.name or not spec.name.replace("_", "").isalnum():
        raise ValueError(f"task name {spec.name!r}: letters, digits and underscores only (it names topics)")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_task(name: str) -> None:
    """Remove a task (tests that register a toy one clean up after themselves)."""
    _REGISTRY.pop(name, None)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in filter(None, (m.strip() for m in os.environ.get(TASK_MODULES_ENV, "").split(","))):
        importlib.import_module(module)


def task_names() -> tuple[str, ...]:
    """Every registered task, built-in first, in registration order."""
    _load_plugins()
    names = list(_REGISTRY)
    return tuple(sorted(names, key=lambda n: (_REGISTRY[n].order, names.index(n))))


def task_spec(name: str) -> TaskSpec:
    """The spec of task ``name``; an unknown name is refused with the known ones."""
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known: {sorted(_REGISTRY)}") from None


def identity(x: Any) -> Any:
    """The activation / target conversion of a task that needs none."""
    return _same(x)
