"""Metrics of replayed frames against the bag's ground truth, per frame and overall, and the per-frame record
that the report, the plots and the summary are made from.

The accumulators are ``training.metrics.build_metrics``'s, the ones ``mtshare eval`` uses: each frame gets its
own (its per-frame numbers), whose sums are then added to the run's (the overall numbers, pooled over all
pixels exactly as ``mtshare eval`` pools a split). Ground truth is resized to the output size nearest-neighbour,
as the dataset loaders resize it to the model's. Depth the node reports invalid (NaN: outside ``depth.min`` /
``depth.max``) is left out of the depth errors and counted in ``coverage`` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from mtshare_ros.data.transforms import check_segmentation
from mtshare_ros.replay.topics import BagError
from mtshare_ros.training.losses import MIN_VALID_DEPTH
from mtshare_ros.training.metrics import HEADLINE, build_metrics

TASKS = ("segmentation", "depth", "normals")


@dataclass
class FrameRecord:
    """What happened to one frame of the bag. ``status``: ``ok``; ``dropped`` (live: no output came back);
    ``rejected`` (the image did not decode, as the node rejects it)."""

    index: int
    stamp_ns: int
    log_ns: int
    status: str = "ok"
    latency_ms: float | None = None
    stats: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""


def resize_nearest(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``arr`` at ``size`` (h, w), nearest neighbour (no invented classes, depths or normals)."""
    if arr.shape[:2] == tuple(size):
        return arr
    src = arr.astype(np.int32) if arr.dtype == np.uint8 and arr.ndim == 2 else arr
    out = cv2.resize(src, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    return out.astype(arr.dtype)


def _tensors(task: str, pred: np.ndarray, gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if task == "segmentation":
        return torch.from_numpy(pred.astype(np.int64))[None], torch.from_numpy(gt.astype(np.int64))[None]
    if task == "depth":
        target = np.where(np.isfinite(pred), gt, 0.0).astype(np.float32)
        return torch.from_numpy(np.nan_to_num(pred, nan=0.0))[None], torch.from_numpy(target)[None]
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]  # noqa: E731
    return to_t(np.nan_to_num(pred, nan=0.0)), to_t(gt)


class Evaluation:
    """Accumulates the metrics of every task that has both an output and ground truth."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.meters: dict[str, object] = {}
        self.frames: dict[str, int] = {}
        self.depth_pixels = [0, 0]  # ground-truth pixels with a valid prediction, all valid ground-truth pixels

    def add(self, outputs: dict[str, np.ndarray], gt: dict[str, np.ndarray], topics: dict[str, str]) -> dict:
        """Score one frame; returns its headline numbers per task (``HEADLINE``)."""
        per_frame: dict[str, dict[str, float]] = {}
        for task in TASKS:
            if task not in outputs or task not in gt:
                continue
            pred = outputs[task]
            target = resize_nearest(gt[task], pred.shape[:2])
            if task == "segmentation":
                try:
                    check_segmentation(target, self.num_classes, topics.get(task, task))
                except ValueError as exc:
                    raise BagError(f"{exc} (the checkpoint has {self.num_classes} classes)") from None
            if task == "depth":
                valid = target > MIN_VALID_DEPTH
                self.depth_pixels[0] += int((valid & np.isfinite(pred)).sum())
                self.depth_pixels[1] += int(valid.sum())
            meter = build_metrics(task, self.num_classes)
            meter.update(*_tensors(task, pred, target))
            if task not in self.meters:
                self.meters[task] = build_metrics(task, self.num_classes)
                self.frames[task] = 0
            self.meters[task].state += meter.state
            self.frames[task] += 1
            result = meter.compute()
            per_frame[task] = {k: result[k] for k in HEADLINE[task] if k in result}
        return per_frame

    def compute(self) -> dict[str, dict]:
        """The overall metrics per task (``mtshare eval``'s numbers), with the frame count and depth coverage."""
        out = {}
        for task, meter in self.meters.items():
            result = meter.compute()
            result["frames"] = self.frames[task]
            if task == "depth":
                result["coverage"] = self.depth_pixels[0] / self.depth_pixels[1] if self.depth_pixels[1] else math.nan
            out[task] = result
        return out


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summarize(records: list[FrameRecord], wall_s: float) -> dict:
    """Frame counts, latency, rate and compute of a run, from its records (``wall_s``: how long frames took to
    go through, for the rate)."""
    ok = [r for r in records if r.status == "ok"]
    lat = [r.latency_ms for r in ok if r.latency_ms is not None]
    out: dict = {
        "frames": len(records),
        "processed": len(ok),
        "dropped": sum(r.status == "dropped" for r in records),
        "rejected": sum(r.status == "rejected" for r in records),
        "latency_ms": {"p50": _percentile(lat, 50), "p95": _percentile(lat, 95), "mean": _mean(lat),
                       "max": max(lat) if lat else math.nan},
        "fps": len(ok) / wall_s if wall_s > 0 else math.nan,
        "fps_processing": 1e3 / _mean(lat) if lat and _mean(lat) > 0 else math.nan,
        "wall_s": wall_s,
    }
    stats = [r.stats for r in ok if r.stats]
    if stats:
        keys = sorted({k for s in stats for k in s})
        means = {k: _mean([s[k] for s in stats if k in s]) for k in keys}
        compute = {
            "gmacs_executed_per_frame": means.get("gmacs_executed", math.nan),
            "gmacs_independent_per_frame": means.get("gmacs_independent", math.nan),
            "sharing": bool(means.get("sharing", 0.0)),
            "temporal": bool(means.get("temporal", 0.0)),
        }
        if compute["gmacs_independent_per_frame"] > 0:
            compute["macs_saved_fraction"] = 1.0 - compute["gmacs_executed_per_frame"] / compute[
                "gmacs_independent_per_frame"]
        if "keyframe" in means and compute["temporal"]:
            compute["keyframe_rate"] = means["keyframe"]
        compute["recomputed_fraction"] = {k.removeprefix("recomputed_"): v for k, v in means.items()
                                          if k.startswith("recomputed_")}
        out["compute"] = compute
    return out
