"""The shared multi-task engine: the base task runs densely, sub-tasks recompute only changed tokens.

Per encoder block ``l`` and sub-task ``s`` (the sub-tasks' residual streams are stacked along a leading task
dimension, so every step below runs once for all of them):

1. The base task runs the block on all tokens and keeps its input ``x_b``, output ``y_b`` and its
   attention keys/values ``K_b, V_b``.
2. Each token is scored by how much its activation differs from the base's: its block input
   (``|x_s - x_b| / |x_b|``), and what the sub-task's own weights would change in its QKV and first-MLP
   activations (``|dW h_s| / |W h_b|``, see ``block_ops.token_scores``; without this term a token whose input
   equals the base's, as every token does at the first layer a sub-task owns, could never diverge).
   Tokens above the task's threshold (all tokens at threshold 0, which skips the scoring), at most
   ``ceil(max_token_fraction * N)`` of them, largest first, form the set ``S``; the others form ``U``.
3. The rows of ``S`` are gathered and run through the sub-task's block: its LayerNorms, QKV, attention,
   projection and MLP, with the weights ``W_base + dW`` (the compressed delta applied to the weights
   once, cached outside training; see ``block_ops.block_params``). All sub-tasks select the same number of rows
   (the largest need, the others padded with rows that are computed and thrown away), so their rows go
   through each layer as one batched product.
4. Each token of ``U`` keeps its own residual stream and takes the base task's update for this block:
   ``y_s = x_s + (y_b - x_b)``. The results of ``S`` are scattered over it.

What is exact and what is approximate:

* Rows of ``S`` are exact given the block's inputs: their queries attend to all N keys of the sub-task.
* Keys and values of ``S`` tokens are the sub-task's own (computed from its rows). Keys and values of
  ``U`` tokens are taken from the base task's cache ``K_b, V_b``: as if those tokens' input and
  weights (norm1, qkv) equalled the base's. This is the one approximation inside attention.
* Outputs of ``U`` tokens are approximate in the same sense: the base's attention and MLP updates stand
  in for the sub-task's, including any ``dW`` (no correction is applied for ``U`` tokens: an exact
  ``dW`` correction would need the sub-task's attention and MLP on those tokens, which is the work
  being skipped). The activation delta already carried by a ``U`` token is kept, not lost.
* With threshold 0 and ``max_token_fraction = 1`` every token is in ``S`` and the engine computes the
  dense sub-task model ``W_base + dW`` exactly (up to float rounding; tested to 1e-4 in fp32).
* Embedding, final LayerNorm and heads run on all tokens for every task; sub-task heads of one layout
  run together as grouped convolutions (``sharing/heads.py``), with the same outputs. Between keyframes of
  temporal sharing the heads run only around the tokens that changed (``sharing/partial_heads.py``).
* A sub-task with ``start_layer`` L > 0 shares the embedding and blocks 0..L-1 with the base outright
  (it stores nothing for them): it takes the base's activations at block L, exactly, at no cost.

A run returns an ``EngineRun`` (``run.py``): the outputs and, per block, which sub-tasks ran how many rows.
Executed multiply-adds are counted from that record, beside the compute (``cost.py``); the block computations
themselves are in ``block_ops.py``.

Which tokens a sub-task recomputes in a block is decided in one place, ``_select``: today by comparing with
the base task; the temporal cache will add a selection by comparing with the previous frame.

On CUDA, ``sync_free=True`` (the default there) computes a fixed budget of rows per layer, so the loop
never reads a value back to the host; the threshold then decides which of those rows are used, not how
many run. The per-task token counts are device tensors turned into numbers once, after the loop
(``run.summarize``).

``mode="fixed"`` (the fixed-budget mode) is the same loop with every threshold 0 and ``sync_free``: each block
recomputes exactly ``k = ceil(max_token_fraction * N)`` tokens per sub-task, the top-k by score, all of them used.
Every tensor shape is then a function of the input size alone and nothing reads back to the host: what ONNX
export, TensorRT and CUDA graphs need. It runs per frame (temporal sharing is refused: its selections would
need a fixed form of their own).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mtshare_ros.models.vit import DenseViT, resize_pos_embed
from mtshare_ros.sharing import block_ops, cost, motion
from mtshare_ros.sharing.heads import GroupedHeads, can_group
from mtshare_ros.sharing.partial_heads import HeadGroup, run_heads
from mtshare_ros.sharing.run import EngineRun, LayerRun, RunStats, summarize
from mtshare_ros.sharing.subtask import SubTaskDelta
from mtshare_ros.sharing.temporal import LayerCache, TemporalCache, TemporalSettings
from mtshare_ros.sharing.tokens import (
    Selection,
    delta_score,
    rows_needed,
    scatter_rows,
    select_tokens,
    selection_mask,
    stack_selections,
    token_budget,
)


def _check_base(base: DenseViT) -> None:
    """The engine re-implements timm's pre-norm block; refuse variants it would compute wrongly."""
    if base.cfg.stem == "patch" and not isinstance(base.encoder.patch_embed.norm, nn.Identity):
        raise ValueError("shared engine: patch embedding with a norm layer is not supported")
    for i, blk in enumerate(base.encoder.blocks):
        attn = blk.attn
        extra = [n for n in ("q_norm", "k_norm", "norm") if not isinstance(getattr(attn, n), nn.Identity)]
        if extra or getattr(attn, "gate", None) is not None or not isinstance(blk.mlp.norm, nn.Identity):
            raise ValueError(f"shared engine: block {i} uses attention/MLP features it does not implement: {extra}")
        if blk.norm1.eps != blk.norm2.eps:  # the token scores normalise a block's input once for both
            raise ValueError(f"shared engine: block {i} has LayerNorms of different eps")


def _check_subtask(base: DenseViT, name: str, st: SubTaskDelta) -> None:
    """Refuse a sub-task stored under another task's name, the base task itself, or another architecture."""
    if name != st.task:
        raise ValueError(f"sub-task stored under {name!r} is for task {st.task!r}")
    if name == base.task:
        raise ValueError(f"sub-task {name!r} is the base task itself")
    if st.cfg != base.cfg:
        raise ValueError(f"sub-task {name!r} has another architecture than the base: {st.cfg} vs {base.cfg}")
    if st.start_layer == 0 and base.cfg.stem != "patch":  # _embed_sub applies deltas to the patch convolution
        raise ValueError(f"sub-task {name!r} starts at block 0 with its own embedding, which the engine computes "
                         f"for the patch stem only, not model.stem {base.cfg.stem!r}: train it with start_layer >= 1 "
                         "(the stem and the first blocks are then the base task's)")


MODES = ("threshold", "fixed")
"""Token selection modes: ``threshold`` (tokens above a relative-change threshold, capped) or ``fixed`` (exactly
the cap's ``k`` tokens per block and sub-task, top-k by change: shapes fixed for an input size)."""


def fixed_budget_args(mode: str, thresholds: dict[str, float] | float, sync_free: bool | None,
                      temporal: TemporalSettings | None) -> tuple[dict[str, float] | float, bool | None]:
    """The ``(thresholds, sync_free)`` a run of ``mode`` uses: unchanged in ``threshold`` mode; 0 and True in
    ``fixed`` mode (threshold 0 selects top-k of the budget, all valid; sync-free sizes every product to the
    budget), which refuses temporal sharing."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "threshold":
        return thresholds, sync_free
    if temporal is not None and temporal.enabled:
        raise ValueError("the fixed-budget mode runs per frame: temporal sharing must be off")
    return 0.0, True


def _thresholds(thresholds: dict[str, float] | float, sub_names: list[str]) -> dict[str, float]:
    """One value for all sub-tasks, or one per sub-task (every one given: a missing one is a caller's bug)."""
    if isinstance(thresholds, (int, float)):
        return {t: float(thresholds) for t in sub_names}
    missing = [t for t in sub_names if t not in thresholds]
    if missing:
        raise ValueError(f"no threshold for sub-task(s) {missing}; got {sorted(thresholds)}")
    return {t: float(thresholds[t]) for t in sub_names}


@dataclass
class _TemporalStep:
    """A frame of a stream with temporal sharing on: its cache, settings, whether it is a keyframe, token budget."""

    cache: TemporalCache
    settings: TemporalSettings
    keyframe: bool
    budget: int
    first_change: torch.Tensor | None = None  # block 0's input against its references (B, N), for the scene cut
    residual: list[torch.Tensor] = field(default_factory=list)  # per base block: the reused tokens' mean change
    base_changed: list[torch.Tensor] = field(default_factory=list)  # per base block: its recomputed tokens (B, N)
    # per block with sub-tasks stacked: their names and the tokens whose reference moved (T, B, N)
    sub_moved: dict[int, tuple[tuple[str, ...], torch.Tensor]] = field(default_factory=dict)

    def changed(self, tasks: list[str], last: int) -> dict[str, torch.Tensor]:
        """Per task the tokens (B, N) whose features can differ from their last head run: recomputed (the base
        task; a sub-task in the blocks it shares with it) or with a moved reference (a sub-task's own blocks) in
        any block up to ``last``, the last feature layer."""
        out = {}
        for t in tasks:
            masks = [self.sub_moved[li][1][self.sub_moved[li][0].index(t)]
                     if li in self.sub_moved and t in self.sub_moved[li][0] else self.base_changed[li]
                     for li in range(last + 1)]
            out[t] = torch.stack(masks).any(0)
        return out


@dataclass
class _Motion:
    """A frame's motion step (``_motion_step``): the stream's signature, whether the frame may continue it, the
    whole tokens the references move by now, the pixels the frame moves by to meet them, and its grey frame."""

    signature: tuple
    continuing: bool
    tokens: tuple[int, int] = (0, 0)
    pixels: tuple[int, int] = (0, 0)
    out_of_view: bool = False
    grey: torch.Tensor | None = None


class SharedMultiTaskModel(nn.Module):
    """Base task (dense ``DenseViT``) plus sub-tasks stored as deltas against it.

    ``forward(image, thresholds, max_token_fraction)`` returns ``(outputs, RunStats)``; ``run`` returns the
    ``EngineRun`` record without reading anything back from the device. Outputs per task follow ``DenseViT``
    (segmentation logits, depth in metres, unit normals).
    """

    def __init__(self, base: DenseViT, subtasks: dict[str, SubTaskDelta]) -> None:
        super().__init__()
        _check_base(base)
        for name, st in subtasks.items():
            _check_subtask(base, name, st)
        self.base = base
        self.subtasks = nn.ModuleDict(subtasks)
        self._fused: dict[tuple, Any] = {}  # weights with the deltas applied, scoring factors, grouped heads
        self._head_counts: dict[tuple, int] = {}  # one frame's head multiply-adds per (task, input shape)

    @property
    def cfg(self):
        return self.base.cfg

    @property
    def tasks(self) -> list[str]:
        return [self.base.task, *self.subtasks.keys()]

    @classmethod
    def from_dense(
        cls, base_model: DenseViT, sub_models: dict[str, DenseViT], delta: str = "lowrank", **compress_args: Any
    ) -> SharedMultiTaskModel:
        """Build from independent dense models: ``dW = W_sub - W_base`` compressed as ``delta``
        (``lowrank`` with ``rank``, ``sparse`` with ``density``, ``rows`` with ``row_fraction``, ``dense``)."""
        subs = {t: SubTaskDelta.from_dense(base_model, m, delta, **compress_args) for t, m in sub_models.items()}
        return cls(base_model, subs)

    # ------------------------------------------------------------------ caches
    def _cached(self, key: tuple, build: Any) -> Any:
        """``build()``, kept for the next frame when nothing is training (no gradients, eval mode)."""
        if self.training or torch.is_grad_enabled():
            return build()
        if key not in self._fused:
            self._fused[key] = build()
        return self._fused[key]

    def clear_caches(self) -> None:
        """Drop the fused weights and head groupings built for earlier frames (rebuilt when next needed): a
        temporal keyframe runs the sub-tasks from block 0 and fuses weights no per-frame run uses."""
        self._fused.clear()
        self._head_counts.clear()

    def set_subtask(self, st: SubTaskDelta) -> None:
        """Add or replace the sub-task ``st.task`` (it must fit the base, as in ``__init__``)."""
        _check_subtask(self.base, st.task, st)
        self.clear_caches()
        self.subtasks[st.task] = st

    def train(self, mode: bool = True) -> SharedMultiTaskModel:
        self.clear_caches()  # weights are about to change
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # .to(), .half(), .cuda(): the cache would be stale
        self.clear_caches()
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self.clear_caches()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ pieces of a run
    def _pos(self, pos: torch.Tensor, grid: tuple[int, int], offset: tuple[int, int] | None) -> torch.Tensor:
        """The encoder's positional-embedding rule (crop at ``offset`` or resample) for another table."""
        gh, gw = self.base.encoder.grid_size
        if offset is not None:
            oy, ox = offset
            return pos.reshape(1, gh, gw, -1)[:, oy : oy + grid[0], ox : ox + grid[1]].reshape(1, grid[0] * grid[1], -1)
        return resize_pos_embed(pos, grid, (gh, gw))

    def _embed_sub(self, x: torch.Tensor, tok_b: torch.Tensor, grid, offset, st: SubTaskDelta) -> torch.Tensor:
        """Sub-task tokens: ``tok_b`` plus the embedding deltas (or the fused embedding for fused deltas)."""
        pe = self.base.encoder.patch_embed.proj
        d = st.delta("patch_embed.proj.weight")
        bias = st.vector("patch_embed.proj.bias") if st.has_vector("patch_embed.proj.bias") else None
        pos_d = st.delta("pos_embed")
        if d.fused:
            w = pe.weight + d.dense().view(pe.weight.shape).to(pe.weight)
            tok = F.conv2d(x, w, bias, stride=pe.stride).flatten(2).transpose(1, 2).contiguous()
            tok = tok + self._pos(self.base.encoder.pos_embed, grid, offset)
        else:
            tok = tok_b
            if bias is not None:
                tok = tok + (bias - pe.bias)
            patches = F.unfold(x, pe.kernel_size, stride=pe.stride).transpose(1, 2)
            extra = d.apply(patches.to(tok.dtype))
            if extra is not None:
                tok = tok + extra
        if pos_d.kind != "zero":
            dp = pos_d.dense().to(tok).reshape(self.base.encoder.pos_embed.shape)
            tok = tok + self._pos(dp, grid, offset)
        return tok

    def _select(
        self, li: int, score: torch.Tensor, names: list[str], thr: dict[str, float], budget: int, sync_free: bool,
        eligible: torch.Tensor | None = None,
    ) -> Selection:
        """The tokens each stacked stream recomputes in block ``li``: above its threshold (among ``eligible``
        ones, (T, B, N), when given), at most ``budget``, largest first; one row count for all of them, so that
        they share the block's products (padding rows are computed and counted). The one place a selection is
        made, whether its scores compare with the base task or with the previous frames."""
        el = [None] * len(names) if eligible is None else list(eligible)
        k = max(rows_needed(score[i], thr[t], budget, sync_free, el[i]) for i, t in enumerate(names))
        return stack_selections([select_tokens(score[i].detach(), thr[t], budget, sync_free, k, el[i])
                                 for i, t in enumerate(names)])

    def _head_groups(self, sub_names: list[str]) -> list[HeadGroup]:
        """The heads as they run: the base task's; the sub-tasks' as one grouped network where they have one layout
        (``sharing/heads.py``), else each its own."""
        base = self.base
        groups = [HeadGroup(base.task, (base.task,), lambda f, g, x, norm: [base.head(f[0], g, x, norm)])]
        heads = [self.subtasks[t].head for t in sub_names]
        if can_group(heads):
            grouped = self._cached(("heads", tuple(sub_names)), lambda: GroupedHeads(heads))
            groups.append(HeadGroup("+".join(sub_names), tuple(sub_names), grouped.forward))
        else:
            groups += [HeadGroup(t, (t,), lambda f, g, x, norm, h=h: [h(f[0], g, x, norm)])
                       for t, h in zip(sub_names, heads, strict=True)]
        return groups

    def _heads(self, feats: dict[str, list[torch.Tensor]], grid: tuple[int, int], x: torch.Tensor,
               sub_names: list[str], step: _TemporalStep | None = None, sync_free: bool = False,
               changed: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, int] | None]:
        """Every task's head output, and per task the tokens its head computed (None: every head on the full map).
        With temporal sharing and ``partial_heads`` the heads run only around ``changed`` tokens between
        keyframes (``sharing/partial_heads.py``; keyframes run them in full and refill their cache)."""
        groups = self._head_groups(sub_names)
        if step is not None and step.settings.partial_heads and not sync_free:
            return run_heads(groups, feats, grid, x, step.cache.heads, None if step.keyframe else changed,
                             step.settings.partial_heads_area,
                             step.settings.partial_heads_threshold)
        if step is not None:
            step.cache.heads.clear()  # not kept up to date: nothing may reuse it later
        outputs: dict[str, torch.Tensor] = {}
        for g in groups:
            outputs.update(zip(g.tasks, g.forward([feats[t] for t in g.tasks], grid, x, None), strict=True))
        return outputs, None

    def head_macs(self, run: EngineRun) -> dict[str, int]:
        """One frame's head multiply-adds per task of ``run`` (counted once per task and input shape; the counts
        of the shape before are dropped when the stream's size changes, so that they do not pile up)."""
        heads = {self.base.task: self.base.head, **{t: self.subtasks[t].head for t in run.subtasks}}
        if any(shape != run.image_shape[1:] for _, shape in self._head_counts):
            self._head_counts.clear()
        out = {}
        for t, head in heads.items():
            key = (t, run.image_shape[1:])
            if key not in self._head_counts:
                self._head_counts[key] = cost.head_macs(
                    head, len(self.cfg.feature_layers), run.grid, self.cfg.embed_dim, run.image_shape[-2:]
                )
            out[t] = self._head_counts[key]
        return out

    # ------------------------------------------------------------------ running
    def forward(
        self,
        x: torch.Tensor,
        thresholds: dict[str, float] | float = 0.0,
        max_token_fraction: float = 1.0,
        tasks: list[str] | tuple[str, ...] | None = None,
        sync_free: bool | None = None,
        offset: tuple[int, int] | None = None,
        temporal: TemporalSettings | None = None,
        cache: TemporalCache | None = None,
        shift: tuple[float, float] | None = None,
        mode: str = "threshold",
    ) -> tuple[dict[str, torch.Tensor], RunStats]:
        """Run the base task and the sub-tasks ``tasks`` (default: all) on ImageNet-normalised images; returns the
        outputs and their ``RunStats`` (``run`` has the arguments)."""
        result = self.run(x, thresholds, max_token_fraction, tasks, sync_free, offset, temporal=temporal, cache=cache,
                          shift=shift, mode=mode)
        stats = self.summarize(result)
        if cache is not None and result.temporal:
            cache.add_deferred(stats.deferred_fraction)
        return result.outputs, stats

    def summarize(self, result: EngineRun) -> RunStats:
        """Numbers of a run (one device read: the recomputed-token counts)."""
        return summarize(self, result, self.head_macs(result))

    def run(
        self,
        x: torch.Tensor,
        thresholds: dict[str, float] | float = 0.0,
        max_token_fraction: float = 1.0,
        tasks: list[str] | tuple[str, ...] | None = None,
        sync_free: bool | None = None,
        offset: tuple[int, int] | None = None,
        keep_scores: bool = False,
        temporal: TemporalSettings | None = None,
        cache: TemporalCache | None = None,
        shift: tuple[float, float] | None = None,
        mode: str = "threshold",
    ) -> EngineRun:
        """The engine's layer loop. ``thresholds``: per sub-task (or one value for all) relative token-change
        threshold against the base task; 0 recomputes every token. ``max_token_fraction``: cap on recomputed
        tokens per layer and frame. ``sync_free``: fixed row budget without host syncs (default: True on CUDA);
        nothing in the loop then waits for the device. ``offset``: patch offset of a training crop, as in
        ``DenseViT.forward``. ``keep_scores`` keeps every block's token scores, with gradients, in the result.
        ``temporal`` (enabled) with the stream's ``cache``: reuse earlier frames between keyframes
        (``sharing/temporal.py``); one frame per call. ``shift``: the image motion (dy, dx) in pixels since the
        stream's previous frame when known from elsewhere (TF); else, with ``temporal.motion == "image"``, it is
        estimated from the images (``sharing/motion.py``). ``mode="fixed"``: the fixed-budget mode (module
        docstring; ``thresholds`` and ``sync_free`` are then ignored)."""
        thresholds, sync_free = fixed_budget_args(mode, thresholds, sync_free, temporal)
        sub_names = list(self.subtasks) if tasks is None else [t for t in tasks if t != self.base.task]
        unknown = [t for t in sub_names if t not in self.subtasks]
        if unknown:
            raise ValueError(f"unknown sub-task(s) {unknown}; this shared model has {list(self.subtasks)}")
        thr = _thresholds(thresholds, sub_names)
        if sync_free is None:
            sync_free = x.device.type == "cuda"
        enc = self.base.encoder
        depth = len(enc.blocks)
        base_task = self.base.task

        start = {t: self.subtasks[t].start_layer for t in sub_names}
        moved = self._motion_step(x, sub_names, offset, temporal, cache, shift)
        frame = x  # the camera's frame; ``x`` becomes it moved onto the references' pixel grid (motion.py)
        if moved is not None and moved.pixels != (0, 0):
            x = motion.translate(x, (-moved.pixels[0], -moved.pixels[1]))
        tok_b, grid = enc.embed(x) if offset is None else enc.embed(x, offset)
        tok_b = tok_b.contiguous()  # the stem's (B, N, C) is a transposed view: row ops want rows
        b, n, _ = tok_b.shape
        budget = token_budget(n, max_token_fraction)
        step = self._temporal_step(x, tok_b, tuple(grid), sub_names, start, offset, temporal, cache, moved)
        if step is not None and step.keyframe and x is not frame:  # a keyframe runs the frame as it came
            x = frame
            tok_b = enc.embed(x)[0].contiguous()
        unmove = None if step is None or step.keyframe or x is frame else moved.pixels
        names = [t for t in sub_names if start[t] == 0]  # the sub-tasks whose blocks run, stacked in xs
        result = EngineRun({}, base_task, sub_names, b, n, tuple(grid), tuple(x.shape), thr, max_token_fraction,
                           sync_free, embedded=list(names), scores={t: [] for t in sub_names} if keep_scores else None,
                           temporal=step is not None and not step.keyframe, keyframe=step is not None and step.keyframe)
        xs = torch.stack([self._embed_sub(x, tok_b, grid, offset, self.subtasks[t]) for t in names]) if names else None

        names_at, now = [], list(names)  # the sub-tasks whose blocks run in each block (some join later)
        for li in range(depth):
            now += [t for t in sub_names if start[t] == li and li > 0]
            names_at.append(tuple(now))
        scored_at = [any(thr[t] > 0 or budget < n or keep_scores for t in names_at[li]) for li in range(depth)]
        layers = [LayerRun(names_at[li], base_rows=b * n) for li in range(depth)]
        base: list[tuple] = []  # per block: the base task's input, output, QKV activations and token norms

        def base_block(li: int, blk: nn.Module, x_b: torch.Tensor) -> torch.Tensor:
            """The base task's block ``li`` as the encoder walk runs it, keeping what the sub-tasks reuse."""
            qkv_b = None
            if result.temporal:
                y_b, norms = self._temporal_base_layer(li, blk, x_b, step, sync_free, layers[li])
            else:
                y_b, qkv_b, norms = block_ops.base_block(blk, x_b, want_norms=scored_at[li] or step is not None)
                if step is not None:
                    step.cache.base.append(LayerCache(x_b[None], y_b[None], qkv_b, (base_task,), norms))
            base.append((x_b, y_b, qkv_b, norms))
            return y_b

        # the base task: the encoder's one walk (models/vit.py), each block run by ``base_block``
        walk = enc.forward_intermediates(x, offset, block=base_block, tokens=tok_b)
        feats: dict[str, list[torch.Tensor]] = {t: [] for t in sub_names}
        feats[base_task] = walk.features
        fi = 0  # index of the next feature layer
        for li, blk in enumerate(enc.blocks):
            x_b, y_b, qkv_b, norms = base[li]
            joining = [t for t in sub_names if start[t] == li and li > 0]
            if joining:  # identical to the base up to here (shared layers): its activations are theirs
                new = x_b.unsqueeze(0).expand(len(joining), -1, -1, -1)
                xs = new.contiguous() if xs is None else torch.cat([xs, new])
                names += joining
            layer, scored = layers[li], scored_at[li]
            if names:
                subs = [self.subtasks[t] for t in names]
                params = self._cached((li, tuple(names)), partial(block_ops.block_params, li, blk, subs))
                if scored:
                    factors = self._cached((li, "scores", tuple(names)), partial(block_ops.score_factors, li, subs))
                    score = block_ops.token_scores(li, blk, subs, factors, xs, x_b, norms, len(joining) == len(names))
                else:
                    score = x_b.new_zeros(len(names), b, n, dtype=torch.float32)
                if result.temporal:
                    xs = self._temporal_sub_layer(li, blk, params, names, xs, x_b, y_b, score, thr, budget, step,
                                                  sync_free, layer)
                else:
                    sel = self._select(li, score, names, thr, budget, sync_free)
                    keep_kv = step is not None or sel.k > 0
                    kv = qkv_b.repeat(len(names), 1, 1) if keep_kv else qkv_b
                    rows = block_ops.rows_block(blk, params, y_b - x_b, kv, xs, sel)
                    if step is not None:  # a keyframe: every token's reference is what it computed now
                        step.cache.sub.append(LayerCache(xs, rows.out, rows.kv, tuple(names)))
                    xs = rows.out
                    layer.rows, layer.recomputed = b * sel.k, sel.valid.reshape(len(names), -1).sum(1)
                    if keep_scores:
                        for i, t in enumerate(names):
                            result.scores[t].append(score[i])
                layer.scored = scored
            elif step is not None and not result.temporal:
                step.cache.sub.append(None)
            result.layers.append(layer)
            if li in self.cfg.feature_layers:
                last = li == depth - 1
                for t in sub_names:
                    if t not in names:  # a shared layer: the base's feature is this task's
                        feats[t].append(feats[base_task][fi])
                        continue
                    xt = xs[names.index(t)]
                    own = block_ops.own_layer_norm(xt, self.subtasks[t], "norm", enc.norm.eps) if last else xt
                    feats[t].append(own)
                fi += 1
        changed = step.changed(result.tasks, max(self.cfg.feature_layers)) if result.temporal else None
        result.outputs, result.head_tokens = self._heads(feats, grid, x, sub_names, step, sync_free, changed)
        if unmove is not None:  # the outputs back onto the camera's pixels
            result.outputs = {t: motion.translate(o, unmove) for t, o in result.outputs.items()}
        if step is not None:
            step.cache.stale = None  # every stale token was recomputed in every block (the keyframe test saw to it)
            if step.residual:
                step.cache.drift = float(torch.stack(step.residual).mean())
        return result

    # ------------------------------------------------------------------ temporal sharing
    def _motion_step(self, x: torch.Tensor, sub_names: list[str], offset, temporal: TemporalSettings | None,
                     cache: TemporalCache | None, shift: tuple[float, float] | None) -> _Motion | None:
        """With temporal sharing and motion compensation on, the image motion since the previous frame (given, or
        estimated from the images), added to the stream's: the whole tokens the references move by now and the
        pixels the frame moves by to meet them (``motion.py``). None when the stream does not continue."""
        if temporal is None or not temporal.enabled or cache is None:
            return None
        signature = self._signature(x, sub_names, offset)
        if temporal.motion == "off":
            return _Motion(signature, cache.signature == signature and bool(cache.base))
        t0 = time.perf_counter()
        g = motion.grey(x)
        state = cache.motion
        moved = _Motion(signature, cache.signature == signature and bool(cache.base), grey=g)
        if moved.continuing and state.prev is not None:
            if shift is not None:
                state.source, state.last_response = "given", 1.0
            else:
                dy, dx, state.last_response = motion.estimate_shift(state.prev, g)
                shift, state.source = (dy, dx), "image"
            moved.tokens = state.advance(shift, self.cfg.patch_size)
            p = self.cfg.patch_size
            moved.out_of_view = motion.shift_too_large((x.shape[-2] // p, x.shape[-1] // p), moved.tokens)
            moved.pixels = (0, 0) if moved.out_of_view else state.pixels(p)
        state.prev = g
        state.last_ms = (time.perf_counter() - t0) * 1e3
        return moved

    def _signature(self, x: torch.Tensor, sub_names: list[str], offset) -> tuple:
        """What a stream's frames must share for one to reuse another's buffers."""
        return (tuple(x.shape), tuple(sub_names), x.device, x.dtype, offset, id(self))

    def _temporal_step(
        self, x: torch.Tensor, tok_b: torch.Tensor, grid: tuple[int, int], sub_names: list[str],
        start: dict[str, int], offset, temporal: TemporalSettings | None, cache: TemporalCache | None,
        moved: _Motion | None,
    ) -> _TemporalStep | None:
        """This frame's temporal mode: None (per-frame inference), a keyframe, or a frame between keyframes.
        ``moved``: the motion step (``_motion_step``); the references are realigned by its whole tokens first, and
        ``tok_b`` is the embedding of the frame moved by its pixels."""
        if moved is None:
            return None
        budget = token_budget(tok_b.shape[1], temporal.max_token_fraction)
        continuing = moved.continuing and not moved.out_of_view
        if continuing and moved.tokens != (0, 0):
            pos_b = self._pos(self.base.encoder.pos_embed, grid, offset)
            cache.realign(grid, moved.tokens, pos_b, self._sub_pos_tables(sub_names, start, grid, offset,
                                                                           len(cache.sub)),
                          keep_heads=temporal.partial_heads_shift)
        first = None
        if continuing:
            first = delta_score(tok_b, cache.base[0].inp[0])
            if cache.stale is not None:
                first = first.masked_fill(cache.stale, float("inf"))
        if moved.out_of_view:
            keyframe = True
            cache.note_keyframe("out_of_view")
        else:  # a new stream or another signature is the first thing is_keyframe tells (first is None then)
            keyframe = cache.is_keyframe(moved.signature, temporal, first, budget)
        cache.begin(moved.signature, keyframe)
        if keyframe and moved.grey is not None:
            cache.motion.restart(moved.grey)
        return _TemporalStep(cache, temporal, keyframe, budget, first)

    def _sub_pos_tables(self, sub_names: list[str], start: dict[str, int], grid, offset,
                        blocks: int) -> list[torch.Tensor | None]:
        """Per block, the position tables (S, 1, N, C) of the sub-tasks stacked there (their own embedding's
        table with its delta for those that start at block 0; the base's for those that join later)."""
        pos_b = self._pos(self.base.encoder.pos_embed, grid, offset)
        own = {}
        for t in sub_names:
            d = self.subtasks[t].delta("pos_embed") if start[t] == 0 else None
            own[t] = pos_b if d is None or d.kind == "zero" else pos_b + self._pos(
                d.dense().to(pos_b).reshape(self.base.encoder.pos_embed.shape), grid, offset)
        out: list[torch.Tensor | None] = []
        names = [t for t in sub_names if start[t] == 0]
        for li in range(blocks):
            names = names + [t for t in sub_names if start[t] == li and li > 0]
            out.append(torch.stack([own[t] for t in names]) if names else None)
        return out

    def _temporal_base_layer(
        self, li: int, blk: nn.Module, x_b: torch.Tensor, step: _TemporalStep, sync_free: bool, layer: LayerRun
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Block ``li`` of the base task between keyframes: tokens whose input moved beyond the threshold since
        they were last computed are recomputed (``_select``), the others take ``x + (out - inp)``. Returns the
        block output and the per-token activation norms (cached ones for tokens not recomputed)."""
        ref = step.cache.base[li]
        # block 0's change was scored for the scene-cut test already
        if li == 0:
            score = step.first_change
        else:
            score = delta_score(x_b, ref.inp[0])
            if step.cache.stale is not None:
                score = score.masked_fill(step.cache.stale, float("inf"))
        score = score.unsqueeze(0)
        base = self.base.task
        sel = self._select(li, score, [base], {base: step.settings.threshold}, step.budget, sync_free)
        if sel.full:  # every token: the dense block, exactly as per-frame inference
            y_b, qkv_b, norms = block_ops.base_block(blk, x_b, want_norms=True)
            step.cache.base[li] = LayerCache(x_b[None], y_b[None], qkv_b, ref.names, norms)
        else:
            params = self._cached(("base", li), partial(block_ops.base_params, blk))
            rows = block_ops.rows_block(blk, params, ref.out - ref.inp, ref.qkv, x_b[None], sel)
            self._update_refs(ref, rows.kv, sel, rows.rows_in, rows.rows_out)
            if rows.fc1_norm is not None:
                fc1 = scatter_rows(ref.norms[1].unsqueeze(-1), sel, rows.fc1_norm.unsqueeze(-1)).squeeze(-1)
                ref.norms = (rows.kv.float().norm(dim=-1), fc1)
            y_b, norms = rows.out[0], ref.norms
        reused = ~selection_mask(sel, x_b.shape[1]).reshape(score.shape)
        step.base_changed.append(~reused[0])
        step.residual.append(torch.where(reused, score, score.new_zeros(())).mean())
        layer.base_rows, layer.base_recomputed = x_b.shape[0] * sel.k, sel.valid.sum().reshape(1)
        layer.base_above = (score > step.settings.threshold).sum().reshape(1)
        return y_b, norms

    def _temporal_sub_layer(
        self, li: int, blk: nn.Module, params: dict, names: list[str], xs: torch.Tensor, x_b: torch.Tensor,
        y_b: torch.Tensor, share_score: torch.Tensor, thr: dict[str, float], budget: int, step: _TemporalStep,
        sync_free: bool, layer: LayerRun,
    ) -> torch.Tensor:
        """Block ``li`` of the stacked sub-tasks between keyframes. A token whose input has not moved beyond the
        temporal threshold since its reference keeps its cached update; a token that moved is computed as
        per-frame task sharing computes it: its own delta where it differs from the base task beyond the sharing
        threshold (``share_score``), else the base task's current update and keys and values. (Recomputing every
        moved token with its delta instead measured worse: the shipped sub-tasks' heads were trained on features
        that follow the base task's wherever task sharing reuses them.)"""
        ref = step.cache.sub[li]
        if ref is None or ref.names != tuple(names):
            raise RuntimeError(f"temporal cache of block {li} holds {ref and ref.names}, not {names}: reset the cache")
        t_n, b, n, c = xs.shape
        t_thr = {t: step.settings.threshold for t in names}
        moved_score = delta_score(xs, ref.inp)
        if step.cache.stale is not None:
            moved_score = moved_score.masked_fill(step.cache.stale, float("inf"))
        moved = selection_mask(self._select(li, moved_score, names, t_thr, step.budget, sync_free), n)
        moved = moved.reshape(t_n, b, n)
        step.sub_moved[li] = (tuple(names), moved)
        sel = self._select(li, share_score, names, thr, budget, sync_free, eligible=moved)
        m = moved.unsqueeze(-1)
        upd = torch.where(m, (y_b - x_b).unsqueeze(0), ref.out - ref.inp)
        base_kv = step.cache.base[li].qkv.repeat(t_n, 1, 1)
        kv = torch.where(m.reshape(t_n * b, n, 1), base_kv, ref.qkv)
        rows = block_ops.rows_block(blk, params, upd, kv, xs, sel)
        ref.inp, ref.out, ref.qkv = torch.where(m, xs, ref.inp), torch.where(m, rows.out, ref.out), rows.kv
        layer.rows, layer.recomputed = b * sel.k, sel.valid.reshape(t_n, -1).sum(1)
        layer.refreshed = moved.reshape(t_n, -1).sum(1)
        layer.above = (moved_score > step.settings.threshold).reshape(t_n, -1).sum(1)
        return rows.out

    @staticmethod
    def _update_refs(ref: LayerCache, kv: torch.Tensor, sel: Selection, xr, yr) -> None:
        """Recomputed tokens take their new input and output as references; the others keep theirs."""
        ref.qkv = kv
        if xr is None:
            return
        s, b, n, c = ref.inp.shape
        ref.inp = scatter_rows(ref.inp.reshape(s * b, n, c), sel, xr.reshape(s * b, sel.k, c)).reshape(s, b, n, c)
        ref.out = scatter_rows(ref.out.reshape(s * b, n, c), sel, yr).reshape(s, b, n, c)
