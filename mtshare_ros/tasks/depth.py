"""Metric depth, a sub-task: log-metres out of the head, metres (32FC1, NaN invalid, REP 118) on the topic."""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from mtshare_ros.tasks.colour import colorize_depth
from mtshare_ros.tasks.resize import edges_up, neighbour_spread
from mtshare_ros.tasks.spec import TaskSpec, register_task

NAME = "depth"

MIN_VALID_DEPTH = 1e-3
"""Depth at or below this (metres) is treated as invalid; the sample contract uses 0."""

SI_LAMBDA = 0.85
"""Weight of the mean term in the scale-invariant log loss (Eigen et al. 2014; 0.85 as in BTS / AdaBins)."""

DEPTH_SCALE = {"32FC1": 1.0, "16UC1": 0.001, "mono16": 0.001}
"""Depth ground-truth encodings and their unit in metres (REP 118: 32FC1 metres, 16UC1 millimetres)."""

EDGE_RATIO = 0.1
"""A relative depth jump beyond which upsampling does not blend neighbours."""
ERR_MAX = 0.5


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


class DepthMetrics:
    """RMSE (m), abs-rel and delta<1.25 over pixels with valid ground truth (> 0), and the scale-aligned abs-rel.

    ``abs_rel_aligned`` scales each image's prediction by ``median(target) / median(prediction)`` first: it
    separates a wrong metric scale (which one number per image fixes) from wrong structure (which it does not),
    and is the usual score of models that only predict relative depth.
    """

    def __init__(self, num_classes: int = 0) -> None:
        self.state = torch.zeros(5, dtype=torch.float64)  # sq err, abs rel, delta hits, count, aligned abs rel

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: (B, 1, H, W) or (B, H, W) metres; ``target``: (B, H, W) metres, 0 where invalid."""
        pred = pred[:, 0] if pred.dim() == 4 else pred
        valid = target > MIN_VALID_DEPTH
        p, t = pred[valid].double().clamp_min(1e-6), target[valid].double()
        ratio = torch.maximum(p / t, t / p)
        aligned = p.new_zeros(())
        counts = valid.flatten(1).sum(1).tolist()  # the masked pixels come image by image, in batch order
        for pv, tv in zip(p.split(counts), t.split(counts), strict=True):
            if pv.numel():
                aligned = aligned + ((pv * (tv.median() / pv.median()) - tv).abs() / tv).sum()
        self.state += torch.stack(
            [((p - t) ** 2).sum(), ((p - t).abs() / t).sum(), (ratio < 1.25).sum().double(), torch.tensor(p.numel()),
             aligned]
        ).cpu()

    def compute(self) -> dict[str, float]:
        sq, rel, hits, n, aligned = self.state.tolist()
        if n == 0:
            nan = float("nan")
            return {"rmse": nan, "abs_rel": nan, "delta1": nan, "abs_rel_aligned": nan, "pixels": 0}
        return {"rmse": math.sqrt(sq / n), "abs_rel": rel / n, "delta1": hits / n, "abs_rel_aligned": aligned / n,
                "pixels": int(n)}


def in_range(depth: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """``depth`` with NaN outside [low, high] (invalid, REP 118), on its device. On the CPU through numpy: torch
    runs an elementwise op of a frame's size on all its threads, and on a busy CPU that parallel region waits for
    a second core (measured 1.3x slower on one thread, up to 100x on two while another process loads them)."""
    if depth.device.type == "cpu":
        d = depth.numpy()
        return torch.from_numpy(np.where((d >= low) & (d <= high), d, np.float32(np.nan)))
    return torch.where((depth >= low) & (depth <= high), depth, torch.nan)


def upsample_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) metres with NaN -> (H, W), bilinear inside surfaces, nearest across depth edges and next to NaN."""
    filled = np.nan_to_num(depth, nan=0.0)
    right, down, diag = neighbour_spread(filled)
    lo = np.minimum.reduce([filled, right, down, diag])
    hi = np.maximum.reduce([filled, right, down, diag])
    edge = (hi - lo > EDGE_RATIO * np.maximum(lo, 1e-6)) | ~np.isfinite(depth) | (lo <= 0)
    near = cv2.resize(depth, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    smooth = cv2.resize(filled, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return np.where(edges_up(edge, size), near, smooth).astype(np.float32)


def decode_depth(arr: np.ndarray, encoding: str) -> np.ndarray:
    """32FC1 metres or 16UC1 / mono16 millimetres -> float32 metres, 0 where invalid (NaN, negative)."""
    depth = arr.astype(np.float32) * np.float32(DEPTH_SCALE[encoding])
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def _eval_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    target = np.where(np.isfinite(pred), gt, 0.0).astype(np.float32)
    return torch.from_numpy(np.nan_to_num(pred, nan=0.0))[None], torch.from_numpy(target)[None]


def heat(values: np.ndarray, vmax: float, valid: np.ndarray) -> np.ndarray:
    """Errors as an inferno picture, grey where there is no ground truth."""
    index = np.clip(np.nan_to_num(values, nan=0.0) / vmax * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(index, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = (96, 96, 96)
    return rgb


def _error_picture(pred: np.ndarray, gt: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    valid = (gt > 0) & np.isfinite(pred)
    return heat(np.abs(np.nan_to_num(pred) - gt) / np.maximum(gt, 1e-6), ERR_MAX, valid)


def _colour(depth: torch.Tensor, out: torch.Tensor | None = None, num_classes: int = 0, scale=None) -> torch.Tensor:
    return colorize_depth(depth.float(), scale, out)


SPEC = register_task(TaskSpec(
    name=NAME, order=1, channels=1, encoding="32FC1",
    activate=lambda x: torch.exp(x.clamp(-6.0, 6.0)),  # predicted log-metres: positive, scale-aware
    to_map=lambda output, settings: in_range(output[0].float(), settings.min_depth, settings.max_depth),
    loss=depth_loss, as_target=lambda output: output[:, 0], metrics=DepthMetrics,
    headline=("rmse", "abs_rel", "delta1", "abs_rel_aligned"), colour=_colour, upsample=upsample_depth,
    decode_gt=decode_depth, eval_pair=_eval_pair, gt_encodings=tuple(DEPTH_SCALE), coverage=True,
    error_picture=_error_picture, error_title=f"depth abs-rel error 0-{ERR_MAX:g}",
), replace=True)
