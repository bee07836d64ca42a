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

import numpy as np

from mtshare_ros.replay.topics import BagError
from mtshare_ros.tasks import BUILTIN_TASKS, task_names, task_spec
from mtshare_ros.tasks.depth import MIN_VALID_DEPTH
from mtshare_ros.tasks.resize import nearest as resize_nearest

TASKS = BUILTIN_TASKS
"""The built-in tasks (report columns); replay scores every registered task it has outputs and ground truth for."""


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


class Evaluation:
    """Accumulates the metrics of every task that has both an output and ground truth."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.meters: dict[str, object] = {}
        self.frames: dict[str, int] = {}
        # per task with ``coverage``: ground-truth pixels with a valid prediction, all valid ground-truth pixels
        self.coverage: dict[str, list[int]] = {}

    def add(self, outputs: dict[str, np.ndarray], gt: dict[str, np.ndarray], topics: dict[str, str]) -> dict:
        """Score one frame; returns its headline numbers per task (``TaskSpec.headline``)."""
        per_frame: dict[str, dict[str, float]] = {}
        for task in task_names():
            if task not in outputs or task not in gt:
                continue
            spec = task_spec(task)
            pred = outputs[task]
            target = resize_nearest(gt[task], pred.shape[:2])
            if spec.check_gt is not None:
                try:
                    spec.check_gt(target, self.num_classes, topics.get(task, task))
                except ValueError as exc:
                    raise BagError(f"{exc} (the checkpoint has {self.num_classes} classes)") from None
            if spec.coverage:
                valid = target > MIN_VALID_DEPTH
                covered = self.coverage.setdefault(task, [0, 0])
                covered[0] += int((valid & np.isfinite(pred)).sum())
                covered[1] += int(valid.sum())
            meter = spec.metrics(self.num_classes)
            meter.update(*spec.eval_pair(pred, target))
            if task not in self.meters:
                self.meters[task] = spec.metrics(self.num_classes)
                self.frames[task] = 0
            self.meters[task].state += meter.state
            self.frames[task] += 1
            result = meter.compute()
            per_frame[task] = {k: result[k] for k in spec.headline if k in result}
        return per_frame

    def compute(self) -> dict[str, dict]:
        """The overall metrics per task (``mtshare eval``'s numbers), with the frame count and depth coverage."""
        out = {}
        for task, meter in self.meters.items():
            result = meter.compute()
            result["frames"] = self.frames[task]
            if task in self.coverage:
                hit, total = self.coverage[task]
                result["coverage"] = hit / total if total else math.nan
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
        if "motion_tf" in means:  # temporal.motion_frame: the frames whose motion came from TF
            compute["motion_tf_fraction"] = means["motion_tf"]
        compute["recomputed_fraction"] = {k.removeprefix("recomputed_"): v for k, v in means.items()
                                          if k.startswith("recomputed_")}
        out["compute"] = compute
    return out
