"""The real-sequence part of the temporal benchmark: a hand-held Kinect v1 sequence, made into a bag as the
camera's driver records it, replayed offline through the node's frame path (``mtshare replay``'s machinery) with
temporal sharing off, on with motion compensation and on without.

Frames 0..N-1 (N <= 600) of a 7-Scenes-layout folder (``data/rgbd_frames.py``) go into a Kinect-driver-style
bag (``data/bag.py`` ``KINECT_LAYOUT``: /camera/rgb/image_raw bgr8, camera_info with K,
/camera/depth_registered/image_raw 16UC1 millimetres) in a temporary folder that is deleted afterwards: the
frames' licence forbids redistribution, and nothing derived from their pixels is kept, only metrics. Frames
600-999 of that sequence are reserved for an independent check and are refused.

Each variant is one ``replay.offline.run_offline`` pass over the bag with its own predictor (so no state
carries over): the replay finds the camera topics by itself, the sensor depth is its ground truth (0 invalid,
left out; 7-Scenes's depth is not registered exactly to colour, a few pixels at edges: fine for pooled
metrics). The result bag that ``mtshare replay`` writes is not needed here and is not written. Wall time is the
median over frames of the model call (``inference_ms``, as the rendered part times it) and, beside it, the
node's frame latency (decode + inference + every output). The variants run one after another, not interleaved
frame by frame as in the rendered part: time them with nothing else running.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from mtshare_ros.data.bag import KINECT_LAYOUT, write_camera_bag
from mtshare_ros.data.rgbd_frames import read_rgbd_sequence
from mtshare_ros.replay.frames import open_reader
from mtshare_ros.replay.offline import run_offline
from mtshare_ros.replay.params import resolve
from mtshare_ros.replay.sink import Sink
from mtshare_ros.replay.topics import choose_topics, survey
from mtshare_ros.runtime.settings import TemporalSettings

from environment import environment_line, environment_record

MAX_FRAMES = 600  # frames 600-999 of the 7-Scenes sequence are reserved: never used here
FPS = 30.0  # Kinect v1
BASE = "segmentation"
REFERENCE = "per frame, task sharing (node default)"
VARIANTS = {
    REFERENCE: {"temporal.enabled": False},
    "task + temporal": {"temporal.enabled": True, "temporal.motion": "image"},
    "task + temporal, no motion compensation": {"temporal.enabled": True, "temporal.motion": "off"},
}
GOALS = {"macs_ratio": 0.5, "depth_rel": 0.02}
DEPTH_METRICS = ("abs_rel", "abs_rel_aligned")


class DiscardedResults:
    """Where ``run_offline`` puts the result bag: nowhere (the benchmark keeps metrics only)."""

    def copy(self, source_conn, log_ns: int, raw: bytes) -> None:
        pass

    def write_messages(self, messages: dict[str, object], log_ns: int) -> None:
        pass


def node_parameters(checkpoint: str, temporal: TemporalSettings) -> dict[str, Any]:
    """The node's parameters (``--param``) that every variant shares: the rendered part's temporal settings."""
    return {"checkpoint": checkpoint, "device": "cpu", "temporal.threshold": temporal.threshold,
            "temporal.max_token_fraction": temporal.max_token_fraction,
            "temporal.keyframe_interval": temporal.keyframe_interval, "temporal.max_drift": temporal.max_drift,
            "temporal.scene_cut_fraction": temporal.scene_cut_fraction,
            "temporal.partial_heads": temporal.partial_heads}


def frames_problem(frames: int) -> str:
    """'' when frames 0..``frames``-1 may be used, else why not."""
    if 1 <= frames <= MAX_FRAMES:
        return ""
    return f"--real-frames must be in 1..{MAX_FRAMES} (frames 600-999 of the sequence are reserved), got {frames}"


def skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


def measure_real(root: Path, frames: int, checkpoint: str, temporal: TemporalSettings, progress: bool = True,
                 command: str = "") -> dict[str, Any]:
    """Write frames 0..``frames``-1 of ``root`` as a Kinect bag, replay it through every variant, summarise."""
    from mtshare_ros.runtime.predictor import Predictor
    from mtshare_ros.sharing.loader import describe_checkpoint

    if frames_problem(frames):
        raise ValueError(frames_problem(frames))
    t0 = time.monotonic()
    common = node_parameters(checkpoint, temporal)
    out: dict[str, Any] = {"root": str(root), "frames": [0, frames - 1], "fps": FPS, "reference": REFERENCE,
                           "bag": {"layout": "Kinect v1 driver (openni2, depth_registration)",
                                   "image": KINECT_LAYOUT.image, "camera_info": KINECT_LAYOUT.info,
                                   "depth": KINECT_LAYOUT.depth, "depth_encoding": KINECT_LAYOUT.depth_encoding},
                           "parameters": common, "variants": {}}
    with tempfile.TemporaryDirectory(prefix="mtshare-temporal-real-") as tmp:
        bag = Path(tmp) / "kinect"
        seq = read_rgbd_sequence(root, 0, frames, FPS)
        write_camera_bag(bag, tqdm(seq, total=frames, desc="kinect bag", unit="frame", disable=not progress,
                                   file=sys.stderr), layout=KINECT_LAYOUT)
        reader = open_reader(bag)
        try:
            topics = choose_topics(survey(reader, bag), bag, gt={"depth": KINECT_LAYOUT.depth})
            if topics.image != KINECT_LAYOUT.image or topics.info != KINECT_LAYOUT.info:
                raise RuntimeError(f"replay picked {topics.image} / {topics.info} in a Kinect bag: {topics.notes}")
            out["topics_found"] = topics.notes
            for name, own in VARIANTS.items():
                # as --param NAME=VALUE; JSON is YAML, so "off" stays a string
                values, _ = resolve(None, [f"{k}={json.dumps(v)}" for k, v in {**common, **own}.items()])
                predictor = Predictor(values["checkpoint"], values["device"], values["backend"])
                sink = Sink(Path(tmp) / "sink", topics, len(predictor.class_names), FPS, samples=1, video_name=None)
                summary = run_offline(reader, bag, topics, predictor, values, sink, DiscardedResults(),
                                      progress=progress, desc=name)
                out["variants"][name] = summarize_variant(own, sink, summary)
        finally:
            reader.close()
    add_ratios(out["variants"])
    out["goals"] = goals(out["variants"])
    out.update(model=describe_checkpoint(checkpoint) if checkpoint == "default" else checkpoint,
               environment=environment_record(), command=command, seconds=round(time.monotonic() - t0, 1),
               finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return out


def summarize_variant(own: dict[str, Any], sink: Sink, summary: dict[str, Any]) -> dict[str, Any]:
    """One variant's numbers from the replay's per-frame records and its depth metrics."""
    ok = [r for r in sink.records if r.status == "ok"]
    stats = [r.stats for r in ok]
    key = [s.get("keyframe", 1.0) > 0 for s in stats]
    between = [s[f"recomputed_{BASE}"] for s, k in zip(stats, key, strict=True)
               if not k and f"recomputed_{BASE}" in s]
    motion = [math.hypot(s["motion_dy_px"], s["motion_dx_px"]) for s in stats[1:] if "motion_dx_px" in s]
    depth = sink.evaluation.compute().get("depth", {})
    return {
        "parameters": own,
        "frames": len(ok),
        "rejected": summary["rejected"],
        "stream_breaks": summary.get("stream_breaks", []),
        "gmacs_per_frame": float(np.mean([s["gmacs_executed"] for s in stats])),
        "inference_ms_median": float(np.median([s["inference_ms"] for s in stats[1:] or stats])),
        "latency_ms_median": float(np.median([r.latency_ms for r in ok[1:] or ok])),
        "keyframe_share": float(np.mean(key)),
        "base_recomputed_non_keyframes": float(np.mean(between)) if between else None,
        # the image motion estimated between consecutive frames (pixels at the inference size); a realignment
        # moves the references by whole 16-pixel tokens once the motion since them adds up to half of one
        "motion_px_median": float(np.median(motion)) if motion and own.get("temporal.motion") != "off" else None,
        "recomputed_fraction": summary.get("compute", {}).get("recomputed_fraction", {}),
        "depth": {k: depth.get(k, math.nan) for k in ("abs_rel", "abs_rel_aligned", "rmse", "delta1", "coverage",
                                                      "pixels", "frames")},
    }


def add_ratios(variants: dict[str, dict[str, Any]]) -> None:
    """Each variant against per-frame task sharing: MACs, wall time, depth errors (relative change)."""
    ref = variants[REFERENCE]
    for v in variants.values():
        v["vs_per_frame"] = {
            "macs": v["gmacs_per_frame"] / ref["gmacs_per_frame"],
            "inference_ms": v["inference_ms_median"] / ref["inference_ms_median"],
            "latency_ms": v["latency_ms_median"] / ref["latency_ms_median"],
            **{f"depth_{m}": v["depth"][m] / ref["depth"][m] - 1.0 for m in DEPTH_METRICS},
        }


def goals(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's goals for the real sequence, per temporal variant: MACs and depth against per frame."""
    rows = []
    for name, v in variants.items():
        if name == REFERENCE:
            continue
        r = v["vs_per_frame"]
        rows.append({"variant": name, "goal": f"MACs <= {GOALS['macs_ratio']}x per frame",
                     "value": round(r["macs"], 3), "met": r["macs"] <= GOALS["macs_ratio"]})
        for m in DEPTH_METRICS:
            label = "depth abs-rel" + (" (scale-aligned)" if m.endswith("aligned") else "")
            rows.append({"variant": name, "goal": f"{label} within {GOALS['depth_rel']:.0%} of per frame",
                         "value": round(r[f"depth_{m}"], 4), "met": r[f"depth_{m}"] <= GOALS["depth_rel"]})
    return rows


def _num(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(real: dict[str, Any] | None) -> list[str]:
    """The real-sequence section of the report."""
    lines = ["", "## Real sequence (7-Scenes, Kinect v1 bag, `mtshare replay` offline)", ""]
    if real is None or "skipped" in real:
        return [*lines, f"Skipped: {real['skipped'] if real else 'not run'}."]
    first, last = real["frames"]
    lines += [
        f"- frames {first}-{last} of `{real['root']}` at {real['fps']:g} Hz, written as a Kinect-driver-style bag "
        f"({real['bag']['image']}, {real['bag']['camera_info']}, {real['bag']['depth']} "
        f"{real['bag']['depth_encoding']}) in a temporary folder, replayed through the node's frame path; the "
        "sensor depth is the reference (0 = invalid, excluded)",
        f"- model: {real['model']}",
        f"- environment: {environment_line(real['environment'])}",
        f"- command: `{real['command']}` ({real['seconds']:.0f} s, finished {real['finished_utc']})",
        f"- node parameters of every variant: {real['parameters']}",
        "- time: median over frames of the model call (and of the node's frame latency: decode + inference + "
        "outputs); variants run one after another",
        "",
        "| variant | GMACs/frame | vs per frame | ms/frame (model) | vs per frame | latency ms | vs per frame | "
        "keyframes | base tokens recomputed (non-keyframes) | motion px/frame | depth abs-rel | vs per frame | "
        "abs-rel aligned | vs per frame | coverage |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in real["variants"].items():
        r, d = v["vs_per_frame"], v["depth"]
        lines.append(
            f"| {name} | {v['gmacs_per_frame']:.3f} | {r['macs']:.3f}x | {v['inference_ms_median']:.1f} | "
            f"{r['inference_ms']:.2f}x | {v['latency_ms_median']:.1f} | {r['latency_ms']:.2f}x | "
            f"{v['keyframe_share']:.2f} | {_num(v['base_recomputed_non_keyframes'], '.3f')} | "
            f"{_num(v['motion_px_median'], '.2f')} | {_num(d['abs_rel'])} | "
            f"{r['depth_abs_rel']:+.2%} | {_num(d['abs_rel_aligned'])} | {r['depth_abs_rel_aligned']:+.2%} | "
            f"{_num(d['coverage'], '.3f')} |")
    lines += ["", "| variant | goal | measured | met |", "|---|---|---|---|"]
    lines += [f"| {g['variant']} | {g['goal']} | {g['value']} | {'yes' if g['met'] else 'NO'} |"
              for g in real["goals"]]
    return lines
