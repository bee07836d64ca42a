"""What one engine run did, as types: the record the layer loop writes (``EngineRun``), and the numbers made of
it for diagnostics, training logs and benchmarks (``RunStats``).

The record holds device tensors and host integers only, so writing it never waits for the device (the CUDA
sync-free path); ``summarize`` reads the recomputed-token counts back once, after the loop, and counts the
multiply-adds from the record (``cost.py``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from mtshare_ros.sharing import cost


@dataclass
class LayerRun:
    """One block: the sub-tasks whose own rows ran (stacked, in this order), the rows each ran (``frames * k``,
    padding included), whether tokens were scored against the base (task sharing), and the valid recomputed
    tokens per stacked sub-task (a device tensor (T,), None when none ran). Sub-tasks not in ``stacked`` share
    this block with the base. The base task runs ``base_rows`` rows (every token, except between keyframes of
    temporal sharing, where ``base_recomputed`` counts the valid ones). ``above`` / ``base_above``: tokens whose
    change passed the temporal threshold (more than were recomputed when the cap left some out)."""

    stacked: tuple[str, ...] = ()
    rows: int = 0
    scored: bool = False
    recomputed: torch.Tensor | None = None
    base_rows: int = 0
    base_recomputed: torch.Tensor | None = None
    above: torch.Tensor | None = None
    base_above: torch.Tensor | None = None
    refreshed: torch.Tensor | None = None  # sub-tasks between keyframes: tokens whose reference moved (T,)


@dataclass
class EngineRun:
    """The outputs of ``SharedMultiTaskModel.run`` and what ran to make them.

    ``subtasks``: the sub-tasks asked for; ``embedded``: those with their own embedding (start layer 0);
    ``scores`` {task: per block (B, N) relative activation deltas, with gradients}, only when asked for (the
    activation-sparsity training step penalises them).
    """

    outputs: dict[str, torch.Tensor]
    base_task: str
    subtasks: list[str]
    frames: int
    tokens: int
    grid: tuple[int, int]
    image_shape: tuple[int, ...]
    thresholds: dict[str, float]
    max_token_fraction: float
    sync_free: bool
    embedded: list[str] = field(default_factory=list)
    layers: list[LayerRun] = field(default_factory=list)
    scores: dict[str, list[torch.Tensor]] | None = None
    temporal: bool = False  # a frame between keyframes of temporal sharing
    keyframe: bool = False  # a keyframe of temporal sharing (per-frame inference that refills the cache)
    head_tokens: dict[str, int] | None = None  # per task the tokens its head computed (partial heads); None: all

    @property
    def tasks(self) -> list[str]:
        return [self.base_task, *self.subtasks]

    def recomputed_fraction(self, task: str) -> torch.Tensor:
        """Tokens ``task`` recomputed over all blocks / (frames x N x blocks), as a device scalar (no sync)."""
        counts = [layer.recomputed[layer.stacked.index(task)] for layer in self.layers
                  if task in layer.stacked and layer.recomputed is not None]
        total = torch.stack(counts).sum().float() if counts else torch.zeros(())
        return total / (self.frames * self.tokens * len(self.layers))


@dataclass
class TaskLayerStats:
    rows: int  # rows that ran in this block (padding included)
    recomputed: float  # fraction of tokens recomputed
    macs: int  # executed multiply-adds


@dataclass
class RunStats:
    """Numbers for people and logs. ``recomputed_fraction`` {task: tokens recomputed / (N x blocks), base 1.0};
    ``rows_fraction`` the same with padding rows; ``macs`` {task: executed}; ``macs_dense`` {task: what its dense
    single-task model would execute}; ``layers`` per block {task: TaskLayerStats}."""

    tokens: int
    frames: int
    sync_free: bool
    thresholds: dict[str, float]
    max_token_fraction: float
    recomputed_fraction: dict[str, float]
    rows_fraction: dict[str, float]
    macs: dict[str, int]
    macs_total: int
    macs_dense: dict[str, int]
    macs_dense_total: int
    macs_saved_fraction: float
    layers: list[dict[str, TaskLayerStats]]
    temporal: bool = False
    keyframe: bool = False
    deferred_fraction: float = 0.0  # tokens past the temporal threshold left out by the cap / (N x blocks x streams)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summarize(model: Any, run: EngineRun, head_macs: dict[str, int]) -> RunStats:
    """``RunStats`` of ``run`` on ``model`` (a ``SharedMultiTaskModel``); ``head_macs`` {task: one frame's full head},
    of which a partial head run (``run.head_tokens``) executed its share of the tokens.
    One device read: the recomputed-token counts."""
    enc = model.base.encoder
    b, n = run.frames, run.tokens
    c = model.cfg.embed_dim
    depth = len(enc.blocks)
    base = run.base_task
    counts, above, refreshed = _read_counts(run)
    per_layer: list[dict[str, int]] = []
    for li, (blk, layer) in enumerate(zip(enc.blocks, run.layers, strict=True)):
        entry = {base: cost.block_macs(blk, layer.base_rows, n)}
        for t in run.subtasks:
            entry[t] = 0
            if t in layer.stacked:
                entry[t] += cost.block_macs(blk, layer.rows, n) if layer.rows else 0
                entry[t] += cost.score_macs(li, model.subtasks[t], b * n, c) if layer.scored else 0
        per_layer.append(entry)
    # a head's multiply-adds are a fixed multiple of the token area it runs on (every layer's output is)
    heads = head_macs if run.head_tokens is None else {t: head_macs[t] * run.head_tokens[t] // n for t in run.tasks}
    macs = {base: cost.patch_embed_macs(model.base, b * n) + heads[base] * b}
    for t in run.subtasks:
        own_embed = cost.subtask_embed_macs(model.base, model.subtasks[t], b * n) if t in run.embedded else 0
        macs[t] = own_embed + heads[t] * b
    for entry in per_layer:
        for t, m in entry.items():
            macs[t] += m
    layers = []
    for li, layer in enumerate(run.layers):
        row = {base: TaskLayerStats(layer.base_rows, counts[base][li] / (b * n), per_layer[li][base])}
        for t in run.subtasks:
            rows = layer.rows if t in layer.stacked else 0
            row[t] = TaskLayerStats(rows, counts[t][li] / (b * n), per_layer[li][t])
        layers.append(row)
    dense_enc = cost.patch_embed_macs(model.base, b * n) + sum(cost.block_macs(blk, b * n, n) for blk in enc.blocks)
    macs_dense = {t: dense_enc + head_macs[t] * b for t in run.tasks}
    total, dense_total = sum(macs.values()), sum(macs_dense.values())
    deferred = sum(max(0, above[t][li] - refreshed[t][li]) for t in run.tasks for li in range(depth))
    return RunStats(
        tokens=n,
        frames=b,
        sync_free=run.sync_free,
        thresholds=run.thresholds,
        max_token_fraction=run.max_token_fraction,
        recomputed_fraction={t: sum(counts[t]) / (b * n * depth) for t in run.tasks},
        rows_fraction={t: sum(row[t].rows for row in layers) / (b * n * depth) for t in run.tasks},
        macs=macs,
        macs_total=total,
        macs_dense=macs_dense,
        macs_dense_total=dense_total,
        macs_saved_fraction=1.0 - total / dense_total,
        layers=layers,
        temporal=run.temporal,
        keyframe=run.keyframe,
        deferred_fraction=deferred / (b * n * depth * len(run.tasks)),
    )


def _read_counts(run: EngineRun) -> tuple[dict[str, list[int]], dict[str, list[int]], dict[str, list[int]]]:
    """Recomputed tokens, tokens past the temporal threshold and tokens whose reference was refreshed, per task
    and block, read back in one go."""
    depth = len(run.layers)
    base = run.base_task
    pending = []  # (task list, which dict, block, tensor)
    for li, layer in enumerate(run.layers):
        if layer.recomputed is not None:
            pending.append((layer.stacked, "counts", li, layer.recomputed))
        if layer.above is not None:
            pending.append((layer.stacked, "above", li, layer.above))
        if layer.refreshed is not None:
            pending.append((layer.stacked, "refreshed", li, layer.refreshed))
        if layer.base_recomputed is not None:
            pending.append(((base,), "counts", li, layer.base_recomputed))
        if layer.base_above is not None:
            pending.append(((base,), "above", li, layer.base_above))
    values = iter(torch.cat([p[3].reshape(-1) for p in pending]).tolist() if pending else [])  # the one read
    out = {kind: {t: [0] * depth for t in run.tasks} for kind in ("counts", "above", "refreshed")}
    out["counts"][base] = [layer.base_rows for layer in run.layers]  # every row valid unless counted below
    for names, kind, li, _ in pending:
        for t in names:
            out[kind][t][li] = int(next(values))
    for t in run.tasks:  # refreshed: recomputed, or took the base's current update (sub-tasks between keyframes)
        for li, layer in enumerate(run.layers):
            if t == base or layer.refreshed is None:
                out["refreshed"][t][li] = out["counts"][t][li]
            if (layer.base_above if t == base else layer.above) is None:  # no temporal count: nothing deferred
                out["above"][t][li] = out["refreshed"][t][li]
    return out["counts"], out["above"], out["refreshed"]
