"""Plots of a run over the bag's time line: latency and compute per frame (``timeline.png``), and each metric
per frame (``metrics.png``). matplotlib draws off-screen (Agg), so no display is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtshare_ros.replay.evaluation import FrameRecord
from mtshare_ros.training.metrics import HEADLINE


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _seconds(records: list[FrameRecord]) -> list[float]:
    t0 = records[0].log_ns if records else 0
    return [(r.log_ns - t0) * 1e-9 for r in records]


def timeline(records: list[FrameRecord], path: Path, title: str) -> Path | None:
    """Latency per frame with its p50 / p95, dropped and rejected frames marked; executed GMACs per frame
    against the independent models' with keyframes marked; recomputed token fractions per task."""
    if not records:
        return None
    plt = _pyplot()
    t = _seconds(records)
    ok = [(x, r) for x, r in zip(t, records, strict=True) if r.status == "ok"]
    with_stats = [(x, r.stats) for x, r in ok if "gmacs_executed" in r.stats]
    recomputed = sorted({k for _, s in with_stats for k in s if k.startswith("recomputed_")})
    rows = 1 + bool(with_stats) + bool(recomputed)
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.6 * rows + 0.6), sharex=True, squeeze=False)
    ax = axes[0][0]
    lat = [(x, r.latency_ms) for x, r in ok if r.latency_ms is not None]
    if lat:
        xs, ys = zip(*lat, strict=True)
        ax.plot(xs, ys, ".-", lw=0.8, ms=3, label="latency")
        for q, style in ((50, "--"), (95, ":")):
            v = float(np.percentile(ys, q))
            ax.axhline(v, color="grey", ls=style, lw=0.8, label=f"p{q} {v:.0f} ms")
    for status, colour in (("dropped", "red"), ("rejected", "orange")):
        xs = [x for x, r in zip(t, records, strict=True) if r.status == status]
        if xs:
            ax.plot(xs, [0] * len(xs), "x", color=colour, label=f"{status} ({len(xs)})")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    if with_stats:
        ax = axes[1][0]
        xs = [x for x, _ in with_stats]
        ax.plot(xs, [s["gmacs_executed"] for _, s in with_stats], ".-", lw=0.8, ms=3, label="executed")
        ax.plot(xs, [s.get("gmacs_independent", float("nan")) for _, s in with_stats], "--", lw=0.8,
                label="independent models")
        keys = [x for x, s in with_stats if s.get("temporal") and s.get("keyframe")]
        for i, x in enumerate(keys):
            ax.axvline(x, color="green", lw=0.6, alpha=0.5, label="keyframe" if i == 0 else None)
        ax.set_ylabel("GMACs / frame")
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    if recomputed:
        ax = axes[rows - 1][0]
        for key in recomputed:
            pts = [(x, s[key]) for x, s in with_stats if key in s]
            ax.plot(*zip(*pts, strict=True), ".-", lw=0.8, ms=3, label=key.removeprefix("recomputed_"))
        ax.set_ylabel("tokens recomputed")
        ax.set_ylim(0, 1.05)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[rows - 1][0].set_xlabel("bag time (s)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def metrics_plot(records: list[FrameRecord], path: Path, title: str) -> Path | None:
    """Each headline metric of each scored task per frame, one small plot per metric."""
    t = _seconds(records)
    series = []
    for task, names in HEADLINE.items():
        for name in names:
            pts = [(x, r.metrics[task][name]) for x, r in zip(t, records, strict=True)
                   if task in r.metrics and name in r.metrics[task]]
            if pts:
                series.append((f"{task} {name}", pts))
    if not series:
        return None
    plt = _pyplot()
    cols = min(4, len(series))
    rows = (len(series) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows + 0.5), squeeze=False)
    for ax in axes.flat[len(series):]:
        ax.axis("off")
    for ax, (name, pts) in zip(axes.flat, series, strict=False):
        ax.plot(*zip(*pts, strict=True), ".-", lw=0.8, ms=3)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_xlabel("bag time (s)", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
