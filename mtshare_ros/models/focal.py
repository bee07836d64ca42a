"""Metric depth on any camera: the model predicts depth as a camera of a canonical focal length would see it.

A monocular image fixes depth only up to the focal length: the same picture taken with twice the focal length
shows a scene twice as far away. A model trained over many fields of view that is never told the focal length
has to guess it. Instead a model with ``ModelConfig.canonical_focal`` is trained on depth rescaled to a canonical
focal length (``canonical_depth``: depth * f_canonical / f_camera) and its output is rescaled back with the
camera's focal length at run time (``metric_depth``: depth_canonical * f_camera / f_canonical). Both focal
lengths are in pixels at the model's input resolution (``focal_at_input``). A checkpoint without
``canonical_focal`` predicts metric depth directly (as before this scheme) and nothing is rescaled.

This module is the one place of the scheme: training targets, evaluation, the predictor, ``mtshare replay`` and
``mtshare eval`` all go through it.
"""

from __future__ import annotations

import torch


def focal_at_input(fx: float, camera_width: float, input_width: float) -> float:
    """The camera's horizontal focal length ``fx`` (pixels of an image ``camera_width`` wide) in pixels of the
    model's input (``input_width`` wide): resizing an image scales its focal length with it."""
    if fx <= 0 or camera_width <= 0 or input_width <= 0:
        raise ValueError(f"focal_at_input: fx {fx}, widths {camera_width}, {input_width} must be positive")
    return float(fx) * float(input_width) / float(camera_width)


def depth_scale(canonical_focal: float | None, focal: float | torch.Tensor | None) -> float | torch.Tensor:
    """Factor from the model's output depth to metric depth for a camera of focal length ``focal`` (pixels at the
    model's input; a tensor gives one factor per image). 1 for a model without a canonical focal length, and for
    ``focal`` None (the camera's focal length unknown: the training data's nominal one, which is the canonical)."""
    if canonical_focal is None or focal is None:
        return 1.0
    return focal / float(canonical_focal)


Focal = float | torch.Tensor | None


def metric_depth(depth: torch.Tensor, canonical_focal: float | None, focal: Focal) -> torch.Tensor:
    """Model output ``depth`` ((B, ...) or one map) as metric depth for a camera of focal length ``focal``; a
    tensor ``focal`` holds one value per image of the batch."""
    s = depth_scale(canonical_focal, focal)
    if isinstance(s, torch.Tensor):
        s = s.to(depth.device, depth.dtype).view(-1, *([1] * (depth.dim() - 1)))
    return depth * s


def canonical_depth(depth: torch.Tensor, canonical_focal: float | None, focal: Focal) -> torch.Tensor:
    """Metric ``depth`` as a model with ``canonical_focal`` is trained to predict it (inverse of ``metric_depth``;
    invalid pixels, 0, stay 0)."""
    s = depth_scale(canonical_focal, focal)
    if isinstance(s, torch.Tensor):
        s = s.to(depth.device, depth.dtype).view(-1, *([1] * (depth.dim() - 1)))
    return depth / s
