"""Executed multiply-adds of an engine run, counted beside the compute from what ran.

The layer loop records which sub-tasks ran how many rows in each block and whether tokens were scored
(``run.LayerRun``); the counts follow from those row counts and the model's structure: a linear layer is
``rows * in * out``, attention ``2 * rows * N * C`` (scores and weighted values over all N keys), a convolution
``output elements * fan-in``. Padding rows are computed, so they count. Element-wise work (LayerNorm, GELU,
softmax, gather/scatter) is not counted. Keeping this out of the compute means the loop can change (the
temporal cache, other selections) without a counter threaded through it, and the count can be checked against
an operator-level count of what actually ran (``test/test_sharing_engine.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.vit import DenseViT, shared_encoder_of
from mtshare_ros.sharing.block_ops import SCORED_LAYERS
from mtshare_ros.sharing.deltas import LowRankDelta
from mtshare_ros.sharing.subtask import SubTaskDelta


def block_macs(blk: nn.Module, rows: int, n: int) -> int:
    """Multiply-adds of a dense block on ``rows`` query rows with ``n`` keys."""
    lin = sum(m.weight.numel() for m in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2))
    return rows * lin + 2 * rows * n * blk.attn.num_heads * blk.attn.head_dim


def embed_macs(base: DenseViT, tokens: int) -> int:
    """The stem on ``tokens`` patches (batch included): the patch embedding's convolution, or the MobileNetV2
    stem's convolutions. For inputs of whole patches each stem layer's output is the input size over its stride,
    so its count is exactly proportional to the tokens: counted for one patch from the layers' shapes and
    strides (not by running the stem: a count made inside a measured run would add to what it measures)."""
    if base.cfg.stem == "patch":
        return tokens * base.encoder.patch_embed.proj.weight.numel()
    stem = base.encoder.stem
    side, per_patch = base.cfg.patch_size, 0
    for _, conv in stem.convs():  # in the order they run
        side //= conv.stride[0]
        per_patch += side * side * conv.weight.numel()  # output pixels x out channels x fan-in
    return tokens * (per_patch + stem.proj.weight.numel())  # the projection on the one output pixel


def subtask_embed_macs(base: DenseViT, st: SubTaskDelta, tokens: int) -> int:
    """A sub-task's own embedding (start layer 0): the fused convolution, or the additive patch delta on the
    unfolded patches, plus rebuilding a low-rank positional delta."""
    d = st.delta("patch_embed.proj.weight")
    macs = embed_macs(base, tokens) if d.fused else d.apply_macs(tokens)
    pos = st.delta("pos_embed")
    return macs + (pos.dense_macs() if pos.kind != "zero" else 0)


def score_macs(li: int, st: SubTaskDelta, tokens: int, channels: int) -> int:
    """Scoring ``tokens`` tokens of block ``li`` for one sub-task (``block_ops.token_scores``): for low-rank QKV
    and MLP deltas ``z = A h``, ``z^T (B^T B) z`` and its sum per part; for other additive deltas their product."""
    ds = [st.delta(f"blocks.{li}.{name}.weight") for name, _ in SCORED_LAYERS]
    if all(isinstance(d, LowRankDelta) for d in ds):
        r = sum(d.rank for d in ds)
        return tokens * r * (channels + r + 2)
    return sum(d.apply_macs(tokens) for d in ds if not d.fused and d.kind != "zero")


def module_macs(module: nn.Module, run: Any) -> int:
    """Run ``run()`` and count the multiply-adds of every convolution and linear layer of ``module`` from their
    output shapes (forward hooks)."""
    count = [0]

    def hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            count[0] += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            count[0] += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return count[0]


def head_macs(
    head: nn.Module, n_features: int, grid: tuple[int, int], channels: int, image_size: tuple[int, int]
) -> int:
    """Multiply-adds of a dense head for one frame of ``image_size`` (heads of one layout run grouped in the
    engine with the same count per task, ``sharing/heads.py``). Counted once by running the head on zeros of that
    shape: the count depends on the shapes only."""
    param = next(head.parameters())
    feats = [param.new_zeros(1, grid[0] * grid[1], channels) for _ in range(n_features)]
    frame = param.new_zeros(1, 3, *image_size)
    with torch.no_grad():
        return module_macs(head, lambda: head(feats, grid, frame))


def encoder_macs(model: DenseViT, image_size: tuple[int, int], frames: int = 1) -> int:
    """Multiply-adds of a dense model's encoder (stem and blocks) on ``frames`` images."""
    p = model.cfg.patch_size
    n = (image_size[0] // p) * (image_size[1] // p)
    return embed_macs(model, frames * n) + sum(block_macs(blk, frames * n, n) for blk in model.encoder.blocks)


def dense_model_macs(model: DenseViT, image_size: tuple[int, int], frames: int = 1) -> int:
    """Multiply-adds of a dense single-task model on ``frames`` images of ``image_size``, with the same rules
    as the engine's count: what an independent model (or the base task alone) executes per frame."""
    cfg = model.cfg
    p = cfg.patch_size
    grid = (image_size[0] // p, image_size[1] // p)
    head = head_macs(model.head, len(cfg.feature_layers), grid, cfg.embed_dim, image_size)
    return encoder_macs(model, image_size, frames) + frames * head


def multitask_model_macs(models: Mapping[str, DenseViT], image_size: tuple[int, int], frames: int = 1) -> int:
    """Multiply-adds of a multi-task model (task models holding one encoder object, ``models.vit.run_tasks``): the
    encoder once and every task's head, by the same rules, so that it compares with the engine and the
    independent models like with like. Models with separate encoders are counted as independent models."""
    first = next(iter(models.values()))
    if shared_encoder_of(models) is None:
        return sum(dense_model_macs(m, image_size, frames) for m in models.values())
    heads = sum(dense_model_macs(m, image_size, frames) - encoder_macs(m, image_size, frames) for m in models.values())
    return encoder_macs(first, image_size, frames) + heads
