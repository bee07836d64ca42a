"""A replay's report: ``metrics.json`` (everything, per frame too), ``frames.csv`` (per frame, for a
spreadsheet), ``report.md`` (what a person reads, with the plots and the montage), and for several bags a
summary table (``summary.md`` / ``summary.json``)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from mtshare_ros.replay.evaluation import FrameRecord
from mtshare_ros.sharing.temporal import format_reasons
from mtshare_ros.training.metrics import headline

HEADLINE_ONE = {"segmentation": "mIoU", "depth": "abs_rel", "normals": "mean_deg"}


def clean(value: Any) -> Any:
    """JSON without NaN (strict parsers refuse it): NaN and inf become null; containers recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def frame_rows(records: list[FrameRecord]) -> list[dict[str, Any]]:
    """One flat row per frame: index, times, status, latency, compute numbers and per-frame metrics."""
    t0 = records[0].log_ns if records else 0
    rows = []
    for r in records:
        row: dict[str, Any] = {"index": r.index, "stamp_ns": r.stamp_ns, "bag_time_s": round((r.log_ns - t0) * 1e-9, 6),
                               "status": r.status, "latency_ms": r.latency_ms}
        row.update(r.stats)
        for task, values in r.metrics.items():
            row.update({f"{task}.{k}": v for k, v in values.items()})
        if r.note:
            row["note"] = r.note
        rows.append(row)
    return rows


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(clean(data), indent=1) + "\n")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(result: dict) -> str:
    """report.md of one bag's replay (``result``: what metrics.json holds)."""
    s, files = result["summary"], result.get("files", {})
    mode = result["mode"] if result["mode"] == "offline" else (
        f"live at rate {result['rate']:g} into {result['node_namespace']}"
        f"{' (node started by replay)' if result.get('started_node') else ''}")
    lines = [f"# Replay of `{Path(result['bag']).name}`", "",
             f"- bag: `{result['bag']}`, {s['frames']} frames on `{result['topics']['image']}`; mode: {mode}",
             f"- model: {result['model']}; device: {result.get('device', '-')}"]
    lines += [f"- {note}" for note in result["topics"]["notes"]]
    changed = result.get("parameters_changed") or {}
    lines.append("- parameters changed from the node's defaults: " +
                 (", ".join(f"`{k}: {v}`" for k, v in changed.items()) if changed else "none"))
    if s.get("stream_breaks"):
        lines.append(f"- stream breaks (temporal cache reset): {len(s['stream_breaks'])}: "
                     + "; ".join(s["stream_breaks"][:5]))
    lat = s["latency_ms"]
    lines += ["", "## Rate and latency", "",
              "| frames | processed | dropped | rejected | fps | latency p50 (ms) | latency p95 (ms) |",
              "|---|---|---|---|---|---|---|",
              f"| {s['frames']} | {s['processed']} | {s['dropped']} | {s['rejected']} | {_f(s['fps'], 2)} | "
              f"{_f(lat['p50'], 1)} | {_f(lat['p95'], 1)} |", ""]
    lines.append("Offline: latency is decode + inference + outputs per frame (the node's worker before publishing); "
                 "fps counts the whole replay, bag reading and writing included." if result["mode"] == "offline" else
                 "Live: latency is from publishing a frame to receiving its last raw output; dropped frames got no "
                 "output (the node's latest-frame policy under real timing).")
    c = s.get("compute")
    if c:
        rec = ", ".join(f"{t} {_f(v)}" for t, v in c.get("recomputed_fraction", {}).items()) or "-"
        lines += ["", "## Compute per frame", "",
                  "| GMACs executed | GMACs independent models | saved | keyframe rate | tokens recomputed |",
                  "|---|---|---|---|---|",
                  f"| {_f(c.get('gmacs_executed_per_frame'))} | {_f(c.get('gmacs_independent_per_frame'))} | "
                  f"{_f(c.get('macs_saved_fraction'))} | {_f(c.get('keyframe_rate'))} | {rec} |", "",
                  f"Task sharing {'on' if c.get('sharing') else 'off'}, temporal sharing "
                  f"{'on' if c.get('temporal') else 'off'}" + (f"; from {c['source']}." if c.get("source") else ".")]
        if c.get("keyframe_reasons"):
            lines += ["", f"Keyframes by reason: {format_reasons(c['keyframe_reasons'])} (`temporal.*` parameters: "
                      "scene_cut_fraction, max_drift, keyframe_interval, max_deferred)."]
    lines += ["", "## Accuracy against ground truth", ""]
    if result["metrics"]:
        lines += ["Same definitions as `mtshare eval` (pooled over every valid pixel of every scored frame).", "",
                  "| task | frames | " + " | ".join(["metric", "value"]) + " |", "|---|---|---|---|"]
        for task, m in result["metrics"].items():
            for key in (*headline(task), "coverage"):  # coverage: tasks whose map may be NaN (depth)
                if key in m:
                    lines.append(f"| {task} | {m.get('frames', '-')} | {key} | {_f(m[key], 4)} |")
    else:
        lines.append("No ground truth in this bag (see the topic notes above).")
    lines += ["", "## Pictures", ""]
    for key, title in (("timeline", "latency and compute per frame"), ("metrics_plot", "metrics per frame"),
                       ("montage", "sample frames")):
        if key in files:
            lines += [f"![{title}]({Path(files[key]).name})", ""]
    if "video" in files:
        lines += [f"Video of every frame: [{Path(files['video']).name}]({Path(files['video']).name})", ""]
    if "bag" in files:
        bag = Path(files["bag"]).name
        ext = "mcap" if result["output_storage"] == "mcap" else "db3"
        lines += ["## Play it back", "", f"`{bag}/` holds the input camera topics and every result topic under "
                  f"`{result['output_namespace']}`, stamped like the inputs: `ros2 bag play {bag}` next to RViz, "
                  f"or open `{bag}/{bag}.{ext}` in Foxglove.", ""]
    return "\n".join(lines)


def summary_table(rows: list[dict]) -> str:
    """summary.md for several bags: one row each, failed bags with their reason."""
    lines = ["# Replay summary", "",
             "| bag | status | frames | processed | dropped | fps | latency p50 / p95 (ms) | GMACs/frame | seg mIoU | "
             "depth abs_rel | normals mean deg |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row["status"] != "ok":
            lines.append(f"| {row['bag']} | failed: {row['error']} | | | | | | | | | |")
            continue
        s, m = row["summary"], row["metrics"]
        acc = [_f(m.get(t, {}).get(k), 4) for t, k in HEADLINE_ONE.items()]
        gmacs = (s.get("compute") or {}).get("gmacs_executed_per_frame")
        lines.append(f"| [{row['bag']}]({row['report']}) | ok | {s['frames']} | {s['processed']} | {s['dropped']} | "
                     f"{_f(s['fps'], 2)} | {_f(s['latency_ms']['p50'], 1)} / {_f(s['latency_ms']['p95'], 1)} | "
                     f"{_f(gmacs)} | " + " | ".join(acc) + " |")
    return "\n".join(lines) + "\n"


def summary_line(name: str, s: dict, metrics: dict) -> str:
    """The one line a person reads at the end of a bag's replay."""
    acc = ", ".join(f"{task} {key} {metrics[task][key]:.3f}" for task, key in HEADLINE_ONE.items()
                    if task in metrics and isinstance(metrics[task].get(key), float))
    extra = f", {s['dropped']} dropped" if s["dropped"] else ""
    extra += f", {s['rejected']} rejected" if s["rejected"] else ""
    return (f"{name}: {s['processed']}/{s['frames']} frames{extra}, {_f(s['fps'], 2)} fps, latency p50 "
            f"{_f(s['latency_ms']['p50'], 0)} ms p95 {_f(s['latency_ms']['p95'], 0)} ms"
            + (f"; {acc}" if acc else "; no ground truth"))
