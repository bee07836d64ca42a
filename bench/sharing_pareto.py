"""The Pareto plot of task sharing: executed MACs against each sub-task's error, one panel per sub-task.

Why a plot: one threshold:cap setting is one point; whether sharing earns its place is whether the engine's
points (the sweep of ``--shared-settings`` over a trained shared checkpoint) lie below and left of the
alternatives a user would pick instead: the independent models, the multi-task model and the sub-tasks' heads
with nothing recomputed. The node's default is marked so that one can see whether it sits on the front.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# headline error per sub-task, lower is better (bench/sharing_measure.py's ``headline``)
ERROR_LABEL = {"depth": "depth RMSE (m)", "normals": "normals mean angle (deg)"}


def _point(row: dict[str, Any], task: str) -> tuple[float, float] | None:
    value = dict(row.get("headline", {})).get(task)
    return None if value is None else (float(row["gmacs"]), float(value))


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both MACs and error (lower is better on both), by MACs."""
    front, best = [], float("inf")
    for x, y in sorted(points):
        if y < best:
            front.append((x, y))
            best = y
    return front


def write_pareto_png(rows: list[dict[str, Any]], path: Path, tasks: tuple[str, ...] = ("depth", "normals")) -> Path:
    """Plot the engine's sweep (trained shared checkpoint, ``delta: checkpoint``) and the baselines to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        sweep = [(r, p) for r in rows if r.get("delta") == "checkpoint" and (p := _point(r, task))]
        sweep = [(r, p) for r, p in sweep if r.get("role") != "baseline_nothing_recomputed"]
        if sweep:
            xs, ys = zip(*sorted(p for _, p in sweep), strict=True)
            ax.plot(xs, ys, "o", color="tab:blue", label="engine (threshold:cap sweep)")
            fx, fy = zip(*pareto_front([p for _, p in sweep]), strict=True)
            ax.plot(fx, fy, "-", color="tab:blue", alpha=0.5)
            for r, (x, y) in sweep:
                ax.annotate(f"{r['threshold']:g}:{r['max_token_fraction']:g}", (x, y), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
        marks = {
            "independent": ("s", "tab:red", "independent x3"),
            "multitask": ("D", "tab:green", "multi-task (1 encoder, 3 heads)"),
            "baseline_nothing_recomputed": ("v", "tab:gray", "heads only (nothing recomputed)"),
            "node_default": ("*", "tab:orange", "node default"),
        }
        for r in rows:
            key = r.get("role") if r.get("role") in marks else r.get("kind")
            if key not in marks or (key == "node_default" and r.get("delta") != "checkpoint"):
                continue
            p = _point(r, task)
            if p is None:
                continue
            marker, colour, label = marks[key]
            ax.plot(*p, marker, color=colour, markersize=12 if key == "node_default" else 8, label=label)
        ax.set_xlabel("executed GMACs per frame (all three tasks)")
        ax.set_ylabel(ERROR_LABEL.get(task, f"{task} error"))
        ax.set_title(f"{task}: MACs against error (lower left is better)")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        seen = dict(zip(labels, handles, strict=True))
        ax.legend(seen.values(), seen.keys(), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
