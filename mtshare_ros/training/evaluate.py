"""Evaluation of task models on a dataset: metric accumulation, and JSON / Markdown reports."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from mtshare_ros.models.focal import metric_depth
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.run import RunStats
from mtshare_ros.training.distributed import DistInfo, all_reduce_sum
from mtshare_ros.training.metrics import HEADLINE, build_metrics


def normalise(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB (B, 3, H, W) -> ImageNet-normalised model input."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
    return (image - mean) / std


@torch.no_grad()
def evaluate(
    models: Mapping[str, nn.Module],
    batches: Iterable[dict[str, Any]],
    device: torch.device,
    num_classes: int,
    info: DistInfo | None = None,
    amp: bool = False,
    progress: bool = True,
    forward: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None,
    canonical_focal: float | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics per task over ``batches`` (this process's share; results are summed over processes).

    ``canonical_focal``: the models' (``ModelConfig.canonical_focal``); their depth is rescaled to metric with
    each sample's ``focal`` (models/focal.py; samples without one: the nominal focal length, no rescaling).

    ``forward``, when given, produces every task's output in one call (the shared engine) instead of
    one call per model; ``models`` then only names the tasks and is put in eval mode.
    """
    info = info or DistInfo()
    metrics = {task: build_metrics(task, num_classes) for task in models}
    was_training = {task: m.training for task, m in models.items()}
    for m in models.values():
        m.eval()
    for batch in tqdm(batches, desc="eval", disable=not (progress and info.is_main), mininterval=5):
        x = normalise(batch["image"].to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outputs = forward(x) if forward is not None else {task: m(x) for task, m in models.items()}
        for task, out in outputs.items():
            if task == "depth":
                out = metric_depth(out, canonical_focal, batch.get("focal"))
            if task not in batch:
                raise KeyError(f"the dataset provides no {task!r} ground truth (sample keys: {sorted(batch)})")
            metrics[task].update(out.float(), batch[task].to(device))
    for task, m in models.items():
        m.train(was_training[task])
    for acc in metrics.values():
        all_reduce_sum(acc.state, info)
    return {task: acc.compute() for task, acc in metrics.items()}


@dataclass
class EngineEvaluation:
    """What ``evaluate_engine`` measured: ``metrics`` per task as ``evaluate`` returns them, and what the engine
    executed to get them: per task the fraction of tokens recomputed (mean over batches, the base 1.0) and GMACs
    per frame, all tasks' GMACs per frame, and its executed MACs against what the independent models would
    execute on the same frames (the engine's own count, ``sharing/cost.py``)."""

    metrics: dict[str, dict[str, Any]]
    recomputed_fraction: dict[str, float]
    gmacs: dict[str, float]
    gmacs_total: float
    macs_vs_independent: float
    frames: int


def evaluate_engine(
    shared: SharedMultiTaskModel,
    tasks: Sequence[str],
    batches: Iterable[dict[str, Any]],
    device: torch.device,
    num_classes: int,
    thresholds: Mapping[str, float] | float,
    max_token_fraction: float,
    progress: bool = True,
    canonical_focal: float | None = None,
) -> EngineEvaluation:
    """Metrics of the shared engine (base task in full, sub-tasks on the tokens that differ) on ``batches``, with
    the engine's statistics of the same runs. ``tasks``: what is scored (the base task runs whatever is asked,
    since the sub-tasks read it). One function for ``mtshare eval --sharing`` and the model benchmark, so that
    the two cannot measure the engine differently."""
    runs: list[RunStats] = []

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, stats = shared(x, thresholds=thresholds, max_token_fraction=max_token_fraction, tasks=list(tasks))
        runs.append(stats)
        return {t: o for t, o in out.items() if t in tasks}

    # ``evaluate`` only needs the task names here (and puts what it is given in eval mode): the engine runs them
    metrics = evaluate({t: shared for t in tasks}, batches, device, num_classes, progress=progress, forward=forward,
                       canonical_focal=canonical_focal)
    if not runs:
        raise ValueError("evaluate_engine: no batches")
    frames = sum(r.frames for r in runs)
    return EngineEvaluation(
        metrics=metrics,
        recomputed_fraction={
            t: sum(r.recomputed_fraction[t] for r in runs) / len(runs) for t in runs[0].recomputed_fraction
        },
        gmacs={t: sum(r.macs[t] for r in runs) / frames / 1e9 for t in runs[0].macs},
        gmacs_total=sum(r.macs_total for r in runs) / frames / 1e9,
        macs_vs_independent=sum(r.macs_total for r in runs) / sum(r.macs_dense_total for r in runs),
        frames=frames,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def markdown_report(results: dict[str, Any], title: str = "Evaluation") -> str:
    """A Markdown table of the headline metrics per task, plus per-class IoU when present."""
    lines = [f"# {title}", ""]
    for key in ("checkpoint", "dataset", "root", "split", "samples"):
        if key in results:
            lines.append(f"- {key}: `{results[key]}`")
    if "sharing" in results:
        sh = results["sharing"]
        rec = ", ".join(f"{t} {v:.3f}" for t, v in sh["recomputed_fraction"].items())
        lines += [
            f"- shared engine: threshold {sh['threshold']}, max_token_fraction {sh['max_token_fraction']} "
            f"({sh['source']}); tokens recomputed: {rec}; executed MACs {sh['macs_vs_independent']:.3f}x the "
            "independent models'. params_M is what is stored per task, GMACs what ran per frame.",
        ]
    lines.append("")
    for task, res in results["metrics"].items():
        extra = ("params_M", "GMACs", "latency_median_ms")
        cols = [c for c in HEADLINE[task] if c in res] + [c for c in extra if c in res]
        lines += [f"## {task}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(res[c]) for c in cols) + " |", ""]
        if "per_class_IoU" in res and results.get("class_names"):
            lines += ["| class | IoU |", "|---|---|"]
            for name, iou in zip(results["class_names"], res["per_class_IoU"], strict=False):
                lines.append(f"| {name} | {'-' if iou is None else f'{iou:.3f}'} |")
            lines.append("")
    return "\n".join(lines)


def write_reports(results: dict[str, Any], out: str | Path, title: str = "Evaluation") -> tuple[Path, Path]:
    """Write ``out`` (JSON) and the same stem with ``.md``; returns both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown_report(results, title) + "\n")
    return out, md
