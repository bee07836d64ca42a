"""The three sub-task training steps of the method, run through the shared engine itself.

* ``l1`` (step 1): the sub-task starts from the base weights (``dW = 0``) and trains its task loss plus
  an L1 penalty on ``dW`` (``delta: sparse``; group L1 over output rows for ``delta: rows``). For
  ``delta: lowrank`` the structure is the parameterisation itself (``dW = B A``, B = 0 at the start, as
  in LoRA), so no penalty is needed.
* ``pattern`` (step 2): ``dW`` is compressed to its fixed structure (largest entries / rows) and only
  the kept values are fine-tuned.
* ``activation`` (step 3): the sub-task trains *with token skipping on* (its threshold and token cap),
  plus a penalty on the relative activation deltas ``|x_sub - x_base| / |x_base|`` of every layer, so
  that fewer tokens exceed the threshold while the loss holds.
* ``budget`` (step 3 at the deployed budget): the sub-task trains with exactly the tokens the node recomputes
  at its cap (top-k of the token scores per frame and layer, ``k = ceil(max_token_fraction * N)``, threshold 0),
  and the activation penalty falls only on the tokens *outside* the top-k (those the node would leave to the
  base's result). Why: under ``activation`` the penalty falls on every token, so from a base whose heads-only
  output is already good (the multi-task model) the deltas train down to zero and nothing is recomputed; here
  the k recomputed tokens are free to change as much as the loss asks, so they buy accuracy. Which tokens are
  chosen is not differentiable (a top-k gather); the deltas get their gradients through the chosen rows.

The base model is frozen throughout. Every step reads and writes a shared checkpoint
(``mtshare_ros/sharing/checkpoint.py``); step 1 reads the dense checkpoint holding the base task.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.vit import DenseViT
from mtshare_ros.sharing.deltas import DenseDelta, LowRankDelta, ZeroDelta, compress
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.subtask import SubTaskDelta, matrix_view, owned
from mtshare_ros.sharing.tokens import token_budget
from mtshare_ros.training.distributed import DistInfo
from mtshare_ros.training.evaluate import normalise
from mtshare_ros.training.losses import as_target, task_loss
from mtshare_ros.training.trainer import batch_augment

log = logging.getLogger(__name__)

STEPS = ("l1", "pattern", "activation", "budget")


def _fresh_lowrank(name: str, p: torch.Tensor, rank: int, g: torch.Generator) -> LowRankDelta:
    """A rank-``rank`` delta of ``p`` with ``B = 0`` (so ``dW = 0``, as in LoRA) and a random ``A``."""
    out_f, in_f = matrix_view(name, p).shape
    d = LowRankDelta(out_f, in_f, tuple(p.shape), min(rank, out_f, in_f))
    with torch.no_grad():
        d.a.copy_(torch.randn(d.a.shape, generator=g) / math.sqrt(in_f))
    return d


def subtask_from_base(
    base: DenseViT,
    task: str,
    delta: str,
    rank: int,
    seed: int,
    start_layer: int = 0,
    head_channels: int | None = None,
) -> SubTaskDelta:
    """A sub-task equal to the base (``dW = 0``) with trainable deltas of the step-1 structure, a fresh head.

    Only blocks from ``start_layer`` on (and the final norm) get deltas and own vectors; earlier layers
    and the embedding stay the base's (see ``SubTaskDelta``). ``head_channels``: width of the new head.
    """
    g = torch.Generator().manual_seed(seed)
    deltas, vectors = {}, {}
    for name, p in base.encoder.named_parameters():
        if not owned(name, start_layer):
            continue
        if p.ndim < 2:
            vectors[name] = p.detach().clone()
            continue
        if delta == "lowrank":
            deltas[name] = _fresh_lowrank(name, p, rank, g)
        else:
            deltas[name] = DenseDelta(*matrix_view(name, p).shape, tuple(p.shape))
    torch.manual_seed(seed)
    st = SubTaskDelta(task, base.cfg, deltas, vectors, start_layer=start_layer, head_channels=head_channels)
    return st.to(next(base.parameters()).device)


@torch.no_grad()
def grow_subtask(
    st: SubTaskDelta, base: DenseViT, rank: int | None = None, start_layer: int | None = None, seed: int = 0
) -> SubTaskDelta:
    """The trained sub-task ``st`` with more capacity and exactly the same function, to train on.

    Why: a sub-task that fits its training frames worse than its independent model is short of capacity,
    and retraining a larger one from step 1 throws away hours of CPU. ``rank``: every low-rank delta grows
    to this rank (new rows of ``A`` random, new columns of ``B`` zero, so ``B A`` is unchanged).
    ``start_layer``: the blocks from there up to the old start layer join the sub-task with ``dW = 0`` at
    ``rank`` (default: the sub-task's largest) and the base's vectors. The head is kept.
    """
    ranks = [d.rank for d in st.deltas.values() if isinstance(d, LowRankDelta)]
    rank = rank or max(ranks, default=1)
    start = st.start_layer if start_layer is None else int(start_layer)
    if start > st.start_layer:
        raise ValueError(f"start_layer {start}: growing cannot give back owned blocks (sub-task starts at "
                         f"{st.start_layer})")
    if any(rank < r for r in ranks):
        raise ValueError(f"rank {rank}: growing cannot lower the rank of deltas of rank {max(ranks)}")
    g = torch.Generator().manual_seed(seed)
    deltas, vectors = {}, {}
    for name, p in base.encoder.named_parameters():
        if not owned(name, start):
            continue
        if not owned(name, st.start_layer):
            if p.ndim < 2:
                vectors[name] = p.detach().clone()
                continue
            deltas[name] = _fresh_lowrank(name, p, rank, g)
        elif p.ndim < 2:
            vectors[name] = st.vector(name).detach().clone()
        else:
            old = st.delta(name)
            target = min(rank, old.out_features, old.in_features)
            if not isinstance(old, LowRankDelta) or old.rank >= target:
                deltas[name] = copy.deepcopy(old)
                continue
            d = LowRankDelta(old.out_features, old.in_features, old.shape, target)
            extra = target - old.rank
            d.a.copy_(torch.cat([old.a, torch.randn(extra, old.in_features, generator=g) / math.sqrt(old.in_features)]))
            d.b.copy_(torch.cat([old.b, old.b.new_zeros(old.out_features, extra)], dim=1))
            deltas[name] = d
    grown = SubTaskDelta(st.task, st.cfg, deltas, vectors, start_layer=start, head_channels=st.head_channels)
    grown.head.load_state_dict(st.head.state_dict())
    return grown.to(next(st.parameters()).device)


def fix_pattern(st: SubTaskDelta, delta: str, density: float, row_fraction: float) -> SubTaskDelta:
    """Step 2: every dense delta compressed to its fixed structure (lowrank and zero deltas are kept)."""
    for key, d in list(st.deltas.items()):
        if isinstance(d, DenseDelta):
            st.deltas[key] = compress(
                d.dense().detach(), delta, shape=d.shape, density=density, row_fraction=row_fraction
            )
    return st


def delta_penalty(st: SubTaskDelta, delta: str) -> torch.Tensor:
    """Step 1 penalty, averaged per stored weight: L1 on dW (``sparse``) or L2 norm per output row (``rows``)."""
    terms, count = [], 0
    for d in st.deltas.values():
        if isinstance(d, DenseDelta):
            terms.append(d.weight.norm(dim=1).sum() if delta == "rows" else d.weight.abs().sum())
            count += d.weight.shape[0] if delta == "rows" else d.weight.numel()
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum() / count


def penalty_above_budget(scores: list[torch.Tensor], budget: int) -> torch.Tensor:
    """Mean relative activation delta of the tokens outside each frame's top-``budget`` scores, over layers.

    ``scores``: one (B, N) tensor per scored block. The top-``budget`` tokens are those the node recomputes at its
    cap, so their change is what the sub-task is for and is not penalised; the rest fall back to the base's
    activations at deployment, so their change is what the penalty pushes down (the error of falling back).
    """
    terms = []
    for s in scores:
        n = s.shape[1]
        k = min(budget, n)
        if k >= n:
            continue
        keep = torch.ones_like(s, dtype=torch.bool)
        if k > 0:
            keep.scatter_(1, s.detach().topk(k, dim=1).indices, False)
        terms.append(s[keep].mean())
    if not terms:
        return scores[0].new_zeros(()) if scores else torch.zeros(())
    return torch.stack(terms).mean()


def _crop(batch: dict[str, Any], crop: tuple[int, int] | None, patch: int, g: torch.Generator):
    """A random patch-aligned crop of the batch and its patch offset (None: full frames)."""
    image = batch["image"]
    if crop is None:
        return batch, None
    h, w = image.shape[-2:]
    oy = int(torch.randint(0, (h - crop[0]) // patch + 1, (1,), generator=g))
    ox = int(torch.randint(0, (w - crop[1]) // patch + 1, (1,), generator=g))
    ys, xs = slice(oy * patch, oy * patch + crop[0]), slice(ox * patch, ox * patch + crop[1])
    out = {k: (v[..., ys, xs] if torch.is_tensor(v) and v.dim() >= 3 else v) for k, v in batch.items()}
    return out, (oy, ox)


def train_subtask(
    shared: SharedMultiTaskModel,
    task: str,
    step: str,
    batches: Iterator[dict[str, Any]],
    steps: int,
    lr: float = 1e-3,
    penalty_weight: float = 0.0,
    delta: str = "sparse",
    threshold: float = 0.0,
    max_token_fraction: float = 1.0,
    crop: tuple[int, int] | None = None,
    seed: int = 0,
    log_every: int = 10,
    augment: dict[str, Any] | None = None,
    teacher: nn.Module | None = None,
    distill_weight: float = 1.0,
    head_lr: float | None = None,
) -> list[dict[str, float]]:
    """Train ``shared.subtasks[task]`` for ``steps`` optimiser steps of the given method step.

    ``penalty_weight`` weighs the step's penalty (step 1: on ``dW``; step 3: on activation deltas).
    ``augment``: ``{"hflip": bool, "colour": float}``, the in-loop augmentation of the task models' training.
    ``teacher``: a dense model of the task (typically its independent model) whose output is a second target,
    weighted ``distill_weight``, with the task's own loss: the sub-task's metric is judged against that
    model, and its output is a denser, learnable target on every pixel (no invalid ones) and every frame.
    ``head_lr``: learning rate of the sub-task's head (default ``lr``): a head started from a trained model
    (``head_init``) wants a smaller step than fresh deltas. Step ``budget`` ignores ``threshold``: it recomputes
    exactly the top ``max_token_fraction`` of the tokens, as the node does at its cap.
    Returns the logged history (loss, penalty, recomputed fraction).
    """
    if step not in STEPS:
        raise ValueError(f"unknown training step {step!r}; known: {STEPS}")
    device = next(shared.parameters()).device
    for p in shared.base.parameters():
        p.requires_grad_(False)
    st = shared.subtasks[task]
    params = [p for p in st.parameters() if p.requires_grad]
    head_ids = {id(p) for p in st.head.parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in head_ids], "lr": lr},
        {"params": [p for p in params if id(p) in head_ids], "lr": lr if head_lr is None else head_lr},
    ]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / max(1, steps // 20)) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps))
    )
    shared.base.eval()
    st.train()
    g = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    t0 = time.monotonic()
    at_budget = step == "budget"
    gate = step == "activation" or at_budget
    for i in range(steps):
        batch, offset = _crop(next(batches), crop, shared.cfg.patch_size, g)
        image, target = batch["image"].to(device), {task: batch[task].to(device)}
        if augment:
            image, target = batch_augment(
                image, target, i, seed, DistInfo(), bool(augment.get("hflip")), float(augment.get("colour", 0.0))
            )
        x = normalise(image)
        run = shared.run(
            x,
            thresholds=threshold if step == "activation" else 0.0,
            max_token_fraction=max_token_fraction if gate else 1.0,
            tasks=[task],
            offset=offset,
            keep_scores=gate,
        )
        loss_sum, count = task_loss(task, run.outputs[task], target)
        loss = loss_sum / count.clamp_min(1)
        if teacher is not None:
            with torch.no_grad():
                soft = as_target(task, teacher(x, offset))
            soft_sum, soft_count = task_loss(task, run.outputs[task], {task: soft})
            loss = loss + distill_weight * soft_sum / soft_count.clamp_min(1)
        if step == "l1":
            pen = delta_penalty(st, delta)
        elif at_budget and run.scores[task]:
            pen = penalty_above_budget(run.scores[task], token_budget(run.tokens, max_token_fraction))
        elif gate and run.scores[task]:
            pen = torch.stack([s.mean() for s in run.scores[task]]).mean()
        else:
            pen = torch.zeros((), device=device)
        total = loss + penalty_weight * pen
        opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if (i + 1) % log_every == 0 or i == steps - 1:
            rec = float(run.recomputed_fraction(task)) if gate else 1.0
            rec_entry = {
                "step": i + 1,
                "loss": float(loss.detach()),
                "penalty": float(pen.detach()),
                "recomputed_fraction": rec,
                "elapsed_s": round(time.monotonic() - t0, 1),
            }
            history.append(rec_entry)
            log.info(
                "%s %s step %d/%d loss %.4f penalty %.4g recomputed %.3f",
                task,
                step,
                i + 1,
                steps,
                float(loss.detach()),
                float(pen.detach()),
                rec,
            )
    st.eval()
    return history


def delta_sparsity(st: SubTaskDelta, eps: float = 1e-8) -> float:
    """Fraction of dW entries (over all matrices) whose magnitude is below ``eps`` (diagnostic for step 1)."""
    zero = total = 0
    for d in st.deltas.values():
        if isinstance(d, ZeroDelta):
            zero += d.out_features * d.in_features
        else:
            dense = d.dense().detach()
            zero += int((dense.abs() < eps).sum())
        total += d.out_features * d.in_features
    return zero / max(total, 1)


__all__ = [
    "STEPS", "delta_penalty", "delta_sparsity", "fix_pattern", "grow_subtask", "penalty_above_budget",
    "subtask_from_base", "train_subtask",
]
