"""Measuring temporal sharing: rendered camera motions through every variant, frame by frame, in order.

Each frame is rendered once and run through every variant in turn (each with its own temporal cache), so the
variants see the same frames and are timed side by side on the same machine state. Per variant and sequence:
executed multiply-adds (counted from what ran), wall time of the model call, accuracy against the renderer's
ground truth, the deviation from per-frame inference of the same model after 30 and after 300 frames, and the
keyframe rate.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.data.motion import render_motion
from mtshare_ros.runtime.settings import SharingSettings, TemporalSettings
from mtshare_ros.sharing.loader import LoadedModels
from mtshare_ros.sharing.temporal import TemporalCache
from mtshare_ros.training.evaluate import normalise
from mtshare_ros.training.metrics import build_metrics

TASKS = ("segmentation", "depth", "normals")
HEADLINE = {"segmentation": "mIoU", "depth": "abs_rel", "normals": "mean_deg"}
DRIFT_WINDOWS = {"30": (20, 30), "300": (290, 300)}
"""Frames over which the drift "after N frames" is averaged: both end where a keyframe every 30 frames is due, so
both windows sit at the same place between keyframes and differ only in how long the stream has run."""


@dataclass(frozen=True)
class Variant:
    """One way to run the three tasks (or the base alone) on a stream."""

    name: str
    tasks: tuple[str, ...]
    sharing: tuple[float, float] | None  # (threshold, max_token_fraction) of task sharing, None: off
    temporal: TemporalSettings | None = None
    reference: str = ""  # the per-frame variant this one is judged against


def variants(temporal: TemporalSettings, sweep: list[TemporalSettings] = ()) -> list[Variant]:
    """Per-frame inference without and with task sharing, each with temporal sharing added, the base task alone,
    task + temporal without motion compensation (``temporal.motion: off``) and with the full heads on every frame
    (``temporal.partial_heads: off``) beside it,
    and task + temporal at the other settings of ``sweep`` (threshold / token cap / keyframe interval)."""
    node = (SharingSettings.threshold, SharingSettings.max_token_fraction)
    ref = "per frame, task sharing (node default)"
    return [
        Variant("base task alone, per frame", ("segmentation",), None),
        Variant("per frame (no task sharing)", TASKS, None),
        Variant("temporal only", TASKS, None, temporal, "per frame (no task sharing)"),
        Variant(ref, TASKS, node),
        Variant("task + temporal", TASKS, node, temporal, ref),
        Variant("task + temporal, no motion compensation", TASKS, node, dataclasses.replace(temporal, motion="off"),
                ref),
        Variant("task + temporal, full heads", TASKS, node, dataclasses.replace(temporal, partial_heads=False), ref),
        *(Variant(f"task + temporal {t.threshold:g} / {t.max_token_fraction:g} / {t.keyframe_interval}", TASKS, node,
                  t, ref) for t in sweep),
    ]


@dataclass
class Tally:
    """What one variant did on one sequence."""

    macs: list[int] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    keyframes: int = 0
    recomputed: dict[str, list[float]] = field(default_factory=lambda: {t: [] for t in TASKS})
    metrics: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, list[float]] = field(default_factory=dict)  # per frame: deviation from the reference

    def add_drift(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.drift.setdefault(k, []).append(v)


def run_variant(loaded: LoadedModels, v: Variant, x: torch.Tensor, cache: TemporalCache):
    """One frame through one variant: (outputs, stats, milliseconds of the model call). Without task sharing the
    engine's sub-tasks are the dense models on every token (``LoadedModels.engine``), as in the node."""
    subtasks = [t for t in v.tasks if t != "segmentation"]
    thr, cap = v.sharing if v.sharing else (0.0, 1.0)
    engine = loaded.engine(sharing=v.sharing is not None)
    t0 = time.perf_counter()
    out, stats = engine(x, thr, cap, tasks=subtasks, temporal=v.temporal, cache=cache)
    return out, stats, (time.perf_counter() - t0) * 1e3


def deviation(out: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    """How far a variant's outputs are from its per-frame reference: segmentation labels that differ (fraction),
    depth mean relative difference, normals mean angle (deg)."""
    dev = {}
    if "segmentation" in out:
        dev["segmentation"] = float((out["segmentation"].argmax(1) != ref["segmentation"].argmax(1)).float().mean())
    if "depth" in out:
        dev["depth"] = float(((out["depth"] - ref["depth"]).abs() / ref["depth"].abs().clamp_min(1e-3)).mean())
    if "normals" in out:
        cos = (out["normals"] * ref["normals"]).sum(1).clamp(-1, 1)
        dev["normals"] = float(torch.rad2deg(torch.acos(cos)).mean())
    return dev


def measure_sequence(
    loaded: LoadedModels, vs: list[Variant], seed: int, kind: str, fps: float, frames: int, size: tuple,
    progress: Any = None,
) -> dict[str, Tally]:
    """Render ``frames`` frames of motion ``kind`` and run every variant on each, in order."""
    tallies = {v.name: Tally() for v in vs}
    meters = {v.name: {t: build_metrics(t, len(SYNTHETIC_CLASSES)) for t in v.tasks} for v in vs}
    caches = {v.name: TemporalCache() for v in vs}
    for k, frame in enumerate(render_motion(seed, kind, frames, fps, *size)):
        image = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float() / 255.0
        x = normalise(image)
        outs = {}
        # the first model call after rendering runs slower (cold caches, idle threads): which variant goes first
        # rotates from frame to frame, so no variant carries it
        order = vs[k % len(vs):] + vs[:k % len(vs)]
        for v in order:
            with torch.inference_mode():
                out, stats, ms = run_variant(loaded, v, x, caches[v.name])
            outs[v.name] = out
            tally = tallies[v.name]
            tally.macs.append(stats.macs_total)
            tally.ms.append(ms)
            tally.keyframes += int(stats.keyframe or v.temporal is None)
            for t in v.tasks:
                tally.recomputed[t].append(stats.recomputed_fraction[t])
            _update_meters(meters[v.name], out, frame)
        for v in vs:
            if v.reference:
                tallies[v.name].add_drift(deviation(outs[v.name], outs[v.reference]))
        if progress is not None:
            progress.update(1)
    for v in vs:
        tallies[v.name].metrics = {t: m.compute() for t, m in meters[v.name].items()}
    return tallies


def _update_meters(meters: dict[str, Any], out: dict[str, torch.Tensor], frame) -> None:
    if "segmentation" in meters:
        meters["segmentation"].update(out["segmentation"], torch.from_numpy(frame.segmentation.astype(np.int64))[None])
    if "depth" in meters:
        meters["depth"].update(out["depth"], torch.from_numpy(frame.depth)[None])
    if "normals" in meters:
        meters["normals"].update(out["normals"], torch.from_numpy(frame.normals).permute(2, 0, 1)[None])


ALONE_FRAMES = 90
"""Frames of each sequence that ``time_alone`` times every main variant on."""
ALONE_VARIANTS = ("per frame (no task sharing)", "temporal only", "per frame, task sharing (node default)",
                  "task + temporal", "task + temporal, no motion compensation")
"""The variants timed alone: each way a node runs the three tasks, with the reference it is judged against."""


def time_alone(loaded: LoadedModels, vs: list[Variant], seed: int, kind: str, fps: float, size: tuple,
               frames: int = ALONE_FRAMES, repeats: int = 2) -> dict[str, float]:
    """Median ms of the model call per frame of each variant in ``ALONE_VARIANTS`` run alone over the first
    ``frames`` frames, as a node runs it (its own weights, buffers and caches warm from its previous frame), the
    best of ``repeats`` passes. ``measure_sequence`` runs every variant on each frame in turn, which evicts each
    one's caches for the next and so charges temporal sharing, whose buffers are the larger, more than a node
    pays; both timings are reported."""
    xs = [normalise(torch.from_numpy(f.rgb).permute(2, 0, 1)[None].float() / 255.0)
          for f in render_motion(seed, kind, frames, fps, *size)]
    chosen = [v for v in vs if v.name in ALONE_VARIANTS]
    best: dict[str, float] = {}
    for _ in range(repeats):
        for v in chosen:
            cache, ms = TemporalCache(), []
            with torch.inference_mode():
                for x in xs:
                    ms.append(run_variant(loaded, v, x, cache)[2])
            med = float(np.median(ms[5:] or ms))  # after the stream's first frames (a keyframe, cold caches)
            best[v.name] = min(best.get(v.name, med), med)
    return best


def summarize_tally(tally: Tally, frames: int) -> dict[str, Any]:
    """The numbers of one variant on one sequence (timing: median and mean over frames after the first)."""
    ms = tally.ms[1:] or tally.ms
    drift = {}
    for label, (lo, hi) in DRIFT_WINDOWS.items():
        if hi <= frames:
            drift[label] = {t: float(np.mean(vals[lo:hi])) for t, vals in tally.drift.items()}
    return {
        "gmacs_per_frame": float(np.mean(tally.macs)) / 1e9,
        "ms_median": float(np.median(ms)),
        "ms_mean": float(np.mean(ms)),
        "keyframe_rate": tally.keyframes / max(1, len(tally.macs)),
        "recomputed_fraction": {t: float(np.mean(v)) for t, v in tally.recomputed.items() if v},
        "metrics": tally.metrics,
        "headline": {t: tally.metrics[t][HEADLINE[t]] for t in tally.metrics},
        "drift": drift,
        "drift_per_frame": {t: [round(v, 5) for v in vals] for t, vals in tally.drift.items()},
    }
