"""Reporting for the model-quality benchmark (bench/models.py): the goals of issue 16 judged on the measured
metrics, the generalisation ratios, and the Markdown written next to the JSON.

Apart from the measuring so that the goals can be read and changed in one place, and so that a report can be
re-rendered from a result's JSON alone (``python bench/models_report.py bench/results/models.json``): everything
here takes the plain dicts bench/models.py writes and runs no model.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from environment import environment_line

TASKS = ("segmentation", "depth", "normals")
TEST, GENERALISATION = "test", "generalisation"
"""The split names the generalisation ratios are taken between (``--splits NAME=ROOT``)."""
VARIANT_NAMES = {
    "independent": "independent models (3 single-task ViTs, dense)",
    "multitask": "multi-task model (1 encoder, 3 heads)",
    "engine": "shared engine at the node's defaults",
}
METRICS = {
    "segmentation": ("mIoU", "pixel_acc"),
    "depth": ("abs_rel", "abs_rel_aligned", "rmse", "delta1"),
    "normals": ("mean_deg", "median_deg", "within_11.25", "within_22.5", "within_30"),
}
"""Every metric reported per task (``mtshare_ros.training.evaluate.evaluate`` returns them), goal metrics first."""
HIGHER_IS_BETTER = {"mIoU", "pixel_acc", "delta1", "within_11.25", "within_22.5", "within_30"}


@dataclass(frozen=True)
class Goal:
    """One quality bar of issue 16, judged on every variant and split."""

    task: str
    metric: str
    target: float

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    @property
    def label(self) -> str:
        return f"{self.task} {self.metric} {'>=' if self.higher_is_better else '<='} {self.target:g}"

    def met(self, value: float) -> bool | None:
        """True / False; None when the value is not a number (no valid pixels: not measured, never met)."""
        if value is None or math.isnan(value):
            return None
        return value >= self.target if self.higher_is_better else value <= self.target


GOALS = (
    Goal("segmentation", "mIoU", 0.55),
    Goal("depth", "abs_rel", 0.20),
    Goal("depth", "abs_rel_aligned", 0.12),
    Goal("normals", "mean_deg", 18.0),
)
FPS_GOAL = 10.0
"""All three tasks through the shared engine, frames per second ..."""
FPS_CONDITIONS = {"size": [240, 320], "threads": 2}
"""... measured under these conditions (a rate at another size or thread count is reported, not judged)."""
GENERALISATION_LIMIT = 1.3
"""No goal metric on the generalisation split worse than this factor of its test-split value."""


def goals_text() -> str:
    """The goals in words, for ``--help``."""
    h, w = FPS_CONDITIONS["size"]
    return (
        "goals (issue 16), on every variant and split: " + ", ".join(g.label for g in GOALS)
        + f"; the shared engine: all three tasks >= {FPS_GOAL:g} fps at {h}x{w} on {FPS_CONDITIONS['threads']} "
        f"threads; generalisation: no goal metric worse than {GENERALISATION_LIMIT:g}x its test-split value"
    )


def worse_factor(metric: str, test: float, gen: float) -> float:
    """How many times worse ``gen`` is than ``test`` (1 = equal, > 1 worse): gen/test for errors, test/gen for
    scores where higher is better (mIoU, accuracies), so that one limit reads the same for both."""
    num, den = (test, gen) if metric in HIGHER_IS_BETTER else (gen, test)
    if den == 0:
        return math.inf if num > 0 else 1.0
    return num / den


# ---------------------------------------------------------------- judging
def goal_rows(results: dict[str, dict[str, Any]], timing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Every quality goal on every variant and split, and the engine's frame-rate goal, each with the measured
    value and whether it is met (None: not measurable under the goal's conditions)."""
    rows = []
    for variant, per_split in results.items():
        for split, res in per_split.items():
            for g in GOALS:
                value = res["metrics"][g.task][g.metric]
                rows.append({"goal": g.label, "variant": variant, "split": split, "task": g.task,
                             "metric": g.metric, "target": g.target, "value": value, "met": g.met(value)})
    if timing is not None and "engine" in timing["fps"]:
        fps = timing["fps"]["engine"]
        judged = all(timing[k] == v for k, v in FPS_CONDITIONS.items())
        h, w = FPS_CONDITIONS["size"]
        rows.append({"goal": f"all three tasks >= {FPS_GOAL:g} fps ({h}x{w}, {FPS_CONDITIONS['threads']} threads)",
                     "variant": "engine", "split": None, "task": None, "metric": "fps", "target": FPS_GOAL,
                     "value": fps, "met": (fps >= FPS_GOAL) if judged else None})
    return rows


def generalisation_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant and metric, the generalisation split's value against the test split's (``worse_factor``);
    empty without both splits. ``goal_metric`` marks the metrics with a bar, the ones the limit is judged on."""
    goal_metrics = {(g.task, g.metric) for g in GOALS}
    rows = []
    for variant, per_split in results.items():
        if TEST not in per_split or GENERALISATION not in per_split:
            continue
        for task, metrics in METRICS.items():
            for metric in metrics:
                test = per_split[TEST]["metrics"][task][metric]
                gen = per_split[GENERALISATION]["metrics"][task][metric]
                ratio = worse_factor(metric, test, gen)
                rows.append({"variant": variant, "task": task, "metric": metric, "test": test, "generalisation": gen,
                             "worse_factor": ratio, "goal_metric": (task, metric) in goal_metrics,
                             "over_limit": not ratio <= GENERALISATION_LIMIT})  # NaN counts as over
    return rows


def generalisation_goal_rows(ratios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One goal row per variant: its worst goal-metric ratio against ``GENERALISATION_LIMIT``."""
    rows = []
    for variant in dict.fromkeys(r["variant"] for r in ratios):
        mine = [r for r in ratios if r["variant"] == variant and r["goal_metric"]]
        worst = max(mine, key=lambda r: -math.inf if math.isnan(r["worse_factor"]) else r["worse_factor"])
        value = worst["worse_factor"]
        rows.append({"goal": f"generalisation: no goal metric worse than {GENERALISATION_LIMIT:g}x test",
                     "variant": variant, "split": f"{GENERALISATION}/{TEST}", "task": worst["task"],
                     "metric": worst["metric"], "target": GENERALISATION_LIMIT, "value": value,
                     "met": None if math.isnan(value) else value <= GENERALISATION_LIMIT})
    return rows


# ---------------------------------------------------------------- Markdown
def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def _met(v: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not judged"}[v]


def markdown(r: dict[str, Any]) -> str:
    """The report: settings, the goal table, the metrics per split, the generalisation ratios, speed, notes."""
    s = r["settings"]
    h, w = s["size"]
    L = [
        "# Model quality (issue 16)",
        "",
        f"- command: `{r['command']}`",
        f"- environment: {environment_line(r.get('environment'))}",
        f"- evaluation: {h}x{w}, batch {s['batch_size']}, CPU, {r['environment']['torch_threads']} torch threads; "
        f"{s['evaluation_s']:.0f} s of evaluation, {s['wall_s']:.0f} s in all",
        f"- node defaults (sharing): {json.dumps(s['node_sharing'])}; temporal sharing "
        f"{'on' if s['node_temporal_enabled'] else 'off'} in the node by default"
        + (" (not applied here: the split frames are separate views)" if s["node_temporal_enabled"] else ""),
        "",
        "| variant | what | source |",
        "|---|---|---|",
    ]
    L += [f"| {k} | {VARIANT_NAMES[k]} | {v['source']} |" for k, v in r["variants"].items()]
    L += ["", "| split | root | frames |", "|---|---|---|"]
    L += [f"| {k} | `{v['root']}` ({v['split']}) | {v['samples']} of {v['available']} |"
          for k, v in r["splits"].items()]
    L += ["", "## Goals", "", "| goal | variant | split | measured | target | |", "|---|---|---|---|---|---|"]
    for g in r["goals"]:
        worst = g["split"] and "/" in g["split"]  # a generalisation row: name the worst metric
        value = _num(g["value"]) + (f" ({g['task']} {g['metric']})" if worst else "")
        L.append(f"| {g['goal']} | {g['variant']} | {g['split'] or '-'} | {value} | {g['target']:g} | "
                 f"{_met(g['met'])} |")
    for split in r["splits"]:
        L += ["", f"## Metrics: {split} split", ""]
        cols = [(t, m) for t in TASKS for m in METRICS[t]]
        L.append("| variant | " + " | ".join(m for _, m in cols) + " | GMACs / frame (3 tasks) |")
        L.append("|---|" + "---|" * (len(cols) + 1))
        for variant, per_split in r["results"].items():
            res = per_split[split]
            vals = " | ".join(_num(res["metrics"][t][m]) for t, m in cols)
            L.append(f"| {variant} | {vals} | {_num(res['gmacs_total'], 2)} |")
        engine, ind = (r["results"].get(k, {}).get(split) for k in ("engine", "independent"))
        if engine and ind:
            rec = ", ".join(f"{t} {v:.3f}" for t, v in engine["recomputed_fraction"].items())
            ratio = engine["gmacs_total"] / ind["gmacs_total"]
            L += ["", f"Engine: tokens recomputed {rec}; executed MACs {ratio:.3f}x "
                  "the independent models'."]
    if r["generalisation"]:
        L += ["", f"## Generalisation: how many times worse than on the test split (limit {GENERALISATION_LIMIT:g}x "
              "on the goal metrics, **bold**; > 1 is worse, test/gen for scores, gen/test for errors)", ""]
        metrics = [(t, m) for t in TASKS for m in METRICS[t]]
        L.append("| variant | " + " | ".join(f"**{m}**" if any(g.metric == m for g in GOALS) else m
                                               for _, m in metrics) + " |")
        L.append("|---|" + "---|" * len(metrics))
        for variant in r["results"]:
            cells = {(x["task"], x["metric"]): x for x in r["generalisation"] if x["variant"] == variant}
            if cells:
                L.append(f"| {variant} | " + " | ".join(
                    _num(cells[k]["worse_factor"], 2) + (" (over)" if cells[k]["over_limit"] else "")
                    for k in metrics) + " |")
    if r.get("real"):
        L += [""] + real_markdown(r["real"])
    t = r.get("timing")
    if t:
        L += ["", f"## Speed: all three tasks, {t['size'][0]}x{t['size'][1]}, {t['threads']} torch threads, "
              f"batch 1, median of {t['frames']} interleaved frames after {t['warmup']}", "",
              "| forward | median ms | p90 ms | fps | time vs base task alone | GMACs / frame |",
              "|---|---|---|---|---|---|"]
        for k in t["median_ms"]:
            L.append(f"| {k} | {_num(t['median_ms'][k], 1)} | {_num(t['p90_ms'][k], 1)} | {_num(t['fps'][k], 1)} | "
                     f"{_num(t['vs_base'][k], 2)}x | {_num(t['gmacs'].get(k), 2)} |")
        L += ["", f"Load average (1 min) before / after timing: {t['loadavg'][0]} / {t['loadavg'][1]}. "
              "`base` is the engine's base task alone (one dense model), timed in the same rounds as the others: "
              "a loaded machine shows as ratios unlike an idle run's, and such times are not results."]
    if r.get("notes"):
        L += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(L) + "\n"


REAL_GOALS = (("depth", "abs_rel_aligned", 0.15), ("depth", "abs_rel", 0.20), ("normals", "mean_deg", 25.0))
"""Issue 24's bars on real frames 0-599 of 7-Scenes: scale-aligned and raw (metric) abs-rel, normals (deg)."""


def real_markdown(real: dict[str, Any]) -> list[str]:
    """The real-frame section: every variant's depth and normals beside the two baselines, and issue 24's bars."""
    first, last = real["frames"]
    L = [f"## Real frames: `{real['root']}`, frames {first}-{last}, every {real['every']} ({real['samples']} "
         f"frames, fx {real['focal_px']:g} px)", "",
         "Normals from the smoothed ground-truth depth (5x5 median, neighbours 3 px apart, jumps over 3% masked). "
         "Depth of a model with a canonical focal length is made metric with the frames' focal length. Bars "
         "(issue 24): " + ", ".join(f"{m} <= {v:g}" for _, m, v in REAL_GOALS) + ".", "",
         "| variant | canonical focal | depth abs-rel | abs-rel aligned | delta1 | RMSE m | normals mean deg | "
         "median deg | < 30 deg |", "|---|---|---|---|---|---|---|---|---|"]
    for key, v in real["variants"].items():
        d, n = v["metrics"]["depth"], v["metrics"]["normals"]
        L.append(f"| {key} | {v['canonical_focal'] or '-'} | {_num(d['abs_rel'])} | {_num(d['abs_rel_aligned'])} | "
                 f"{_num(d['delta1'])} | {_num(d['rmse'])} | {_num(n['mean_deg'], 1)} | "
                 f"{_num(n['median_deg'], 1)} | {_num(n.get('within_30'), 3)} |")
    b = real["baselines"]
    d, n = b["constant_median_depth"], b["facing_camera_normals"]
    L.append(f"| constant depth at the true median / all normals facing the camera | - | {_num(d['abs_rel'])} | "
             f"{_num(d['abs_rel_aligned'])} | {_num(d['delta1'])} | {_num(d['rmse'])} | {_num(n['mean_deg'], 1)} "
             f"| {_num(n['median_deg'], 1)} | {_num(n.get('within_30'), 3)} |")
    return L


def main(argv: list[str]) -> int:
    """Re-render the Markdown of a result's JSON (beside it)."""
    if len(argv) != 1:
        print("usage: python bench/models_report.py RESULT.json", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.with_suffix(".md").write_text(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
