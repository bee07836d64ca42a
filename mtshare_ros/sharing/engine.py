"""The shared multi-task engine: the base task runs densely, sub-tasks recompute only changed tokens.

Per encoder block ``l`` and sub-task ``s``:

1. The base task runs the block on all tokens and keeps its input ``x_b``, output ``y_b`` and its
   attention keys/values ``K_b, V_b``.
2. Each token is scored by how much its activation differs from the base's: its block input
   (``|x_s - x_b| / |x_b|``), and what the sub-task's own weights would change in its QKV and first-MLP
   activations (``|dW h_s| / |W h_b|``, see ``_weight_score``; without this term a token whose input
   equals the base's, as every token does at the first layer a sub-task owns, could never diverge).
   Tokens above the task's threshold (all tokens at threshold 0, which skips the scoring), at most
   ``ceil(max_token_fraction * N)`` of them, largest first, form the set ``S``; the others form ``U``.
3. The rows of ``S`` are gathered and run through the sub-task's block: its LayerNorms, QKV, attention,
   projection and MLP, with the weights ``W_base + dW``. The products with ``W_base`` run once on the
   concatenated rows of all sub-tasks; each task then adds its own delta term (low-rank / row deltas)
   or, for fused deltas, runs its rows through ``W_base + dW`` alone.
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
* Embedding, final LayerNorm and heads run on all tokens for every task.
* A sub-task with ``start_layer`` L > 0 shares the embedding and blocks 0..L-1 with the base outright
  (it stores nothing for them): it takes the base's activations at block L, exactly, at no cost.

Executed multiply-adds are counted from the row counts that actually went through each product (padding
rows included), attention as ``2 * rows * N * C``, heads from their convolution output shapes. Element-wise
work (LayerNorm, GELU, softmax, gather/scatter) is not counted.

On CUDA, ``sync_free=True`` (the default there) computes a fixed budget of rows per layer, so the loop
never reads a value back to the host; the threshold then decides which of those rows are used, not how
many run. The per-task token fractions are device tensors turned into numbers once, after the loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from torch import nn

from mtshare_ros.models.vit import DenseViT
from mtshare_ros.sharing.deltas import LowRankDelta
from mtshare_ros.sharing.subtask import SubTaskDelta
from mtshare_ros.sharing.tokens import (
    Selection,
    delta_score,
    gather_selected,
    scatter_heads,
    scatter_rows,
    select_tokens,
    token_budget,
)


class _Counter:
    """Executed multiply-adds per task and per layer (host-side ints: no device sync)."""

    def __init__(self, tasks: list[str], depth: int) -> None:
        self.total = {t: 0 for t in tasks}
        self.layers = [{t: 0 for t in tasks} for _ in range(depth + 2)]  # embed, blocks..., heads

    def add(self, task: str, layer: int, macs: int) -> None:
        self.total[task] += int(macs)
        self.layers[layer][task] += int(macs)


def _head_macs(head: nn.Module, run) -> tuple[Any, int]:
    """Run ``run()`` and count the multiply-adds of every conv / linear layer of ``head`` from output shapes."""
    count = [0]

    def hook(mod: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        if isinstance(mod, nn.Conv2d):
            count[0] += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        else:
            count[0] += out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in head.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        result = run()
    finally:
        for h in handles:
            h.remove()
    return result, count[0]


def _check_base(base: DenseViT) -> None:
    """The engine re-implements timm's pre-norm block; refuse variants it would compute wrongly."""
    if not isinstance(base.encoder.patch_embed.norm, nn.Identity):
        raise ValueError("shared engine: patch embedding with a norm layer is not supported")
    for i, blk in enumerate(base.encoder.blocks):
        attn = blk.attn
        extra = [n for n in ("q_norm", "k_norm", "norm") if not isinstance(getattr(attn, n), nn.Identity)]
        if extra or getattr(attn, "gate", None) is not None or not isinstance(blk.mlp.norm, nn.Identity):
            raise ValueError(f"shared engine: block {i} uses attention/MLP features it does not implement: {extra}")


class SharedMultiTaskModel(nn.Module):
    """Base task (dense ``DenseViT``) plus sub-tasks stored as deltas against it.

    ``forward(image, thresholds, max_token_fraction)`` returns ``(outputs, stats)``: outputs per task
    follow ``DenseViT`` (segmentation logits, depth in metres, unit normals); stats are described in
    ``forward``.
    """

    def __init__(self, base: DenseViT, subtasks: dict[str, SubTaskDelta]) -> None:
        super().__init__()
        _check_base(base)
        for name, st in subtasks.items():
            if name != st.task:
                raise ValueError(f"sub-task stored under {name!r} is for task {st.task!r}")
            if name == base.task:
                raise ValueError(f"sub-task {name!r} is the base task itself")
            if st.cfg != base.cfg:
                raise ValueError(f"sub-task {name!r} has another architecture than the base: {st.cfg} vs {base.cfg}")
        self.base = base
        self.subtasks = nn.ModuleDict(subtasks)

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

    # ------------------------------------------------------------------ helpers
    def _pos(self, pos: torch.Tensor, grid: tuple[int, int], offset: tuple[int, int] | None) -> torch.Tensor:
        """The encoder's positional-embedding rule (crop at ``offset`` or resample) for another table."""
        gh, gw = self.base.encoder.grid_size
        if offset is not None:
            oy, ox = offset
            return pos.reshape(1, gh, gw, -1)[:, oy : oy + grid[0], ox : ox + grid[1]].reshape(1, grid[0] * grid[1], -1)
        if tuple(grid) == (gh, gw):
            return pos
        return resample_abs_pos_embed(pos, list(grid), [gh, gw], num_prefix_tokens=0)

    def _embed_sub(
        self, x: torch.Tensor, tok_b: torch.Tensor, grid, offset, st: SubTaskDelta, cnt: _Counter
    ) -> torch.Tensor:
        """Sub-task tokens: ``tok_b`` plus the embedding deltas (or the fused embedding for fused deltas)."""
        pe = self.base.encoder.patch_embed.proj
        d = st.delta("patch_embed.proj.weight")
        bias = st.vector("patch_embed.proj.bias") if st.has_vector("patch_embed.proj.bias") else None
        b, n = tok_b.shape[:2]
        pos_d = st.delta("pos_embed")
        if d.fused:
            w = pe.weight + d.dense().view(pe.weight.shape).to(pe.weight)
            tok = F.conv2d(x, w, bias, stride=pe.stride).flatten(2).transpose(1, 2).contiguous()
            tok = tok + self._pos(self.base.encoder.pos_embed, grid, offset)
            cnt.add(st.task, 0, b * n * w[0].numel() * w.shape[0])
        else:
            tok = tok_b
            if bias is not None:
                tok = tok + (bias - pe.bias)
            patches = F.unfold(x, pe.kernel_size, stride=pe.stride).transpose(1, 2)
            extra = d.apply(patches.to(tok.dtype))
            if extra is not None:
                tok = tok + extra
                cnt.add(st.task, 0, d.apply_macs(b * n))
        if pos_d.kind != "zero":
            dp = pos_d.dense().to(tok).reshape(self.base.encoder.pos_embed.shape)
            tok = tok + self._pos(dp, grid, offset)
            cnt.add(st.task, 0, pos_d.dense_macs())
        return tok

    def _linear(self, pre: str, lin: nn.Linear, rows: dict[str, torch.Tensor], layer: int, cnt: _Counter) -> dict:
        """``rows[t] @ (W_base + dW_t).T + b_t`` for every task, the base product shared by additive deltas."""
        w = lin.weight
        out: dict[str, torch.Tensor] = {}
        additive = [t for t in rows if not self.subtasks[t].delta(pre + ".weight").fused]
        if additive:
            cat = torch.cat([rows[t] for t in additive], 1) if len(additive) > 1 else rows[additive[0]]
            parts = F.linear(cat, w).split([rows[t].shape[1] for t in additive], 1)
            for t, part in zip(additive, parts, strict=True):
                st = self.subtasks[t]
                d = st.delta(pre + ".weight")
                n_rows = rows[t].shape[0] * rows[t].shape[1]
                y = d.add_to(part, rows[t])  # a new tensor: the in-place bias below touches nothing shared
                if st.has_vector(pre + ".bias"):
                    y.add_(st.vector(pre + ".bias"))
                out[t] = y
                cnt.add(t, layer, n_rows * w.numel() + d.apply_macs(n_rows))
        for t in rows:
            if t in out:
                continue
            st = self.subtasks[t]
            wt = w + st.delta(pre + ".weight").dense().to(w)
            bias = st.vector(pre + ".bias") if st.has_vector(pre + ".bias") else None
            out[t] = F.linear(rows[t], wt, bias)
            cnt.add(t, layer, rows[t].shape[0] * rows[t].shape[1] * w.numel())
        return out

    @staticmethod
    def _ln(x: torch.Tensor, st: SubTaskDelta, name: str, eps: float) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), st.vector(name + ".weight"), st.vector(name + ".bias"), eps)

    @staticmethod
    def _ls(x: torch.Tensor, st: SubTaskDelta, name: str) -> torch.Tensor:
        return x * st.vector(name + ".gamma") if st.has_vector(name + ".gamma") else x

    def _base_block(
        self, blk: nn.Module, x: torch.Tensor, want_norms: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """timm ``Block.forward`` on all tokens, keeping the keys and values (and, when asked, the per-token
        norms of the QKV and first MLP activations, the denominators of ``_weight_score``)."""
        b, n, c = x.shape
        attn = blk.attn
        qkv_out = attn.qkv(blk.norm1(x))
        qkv = qkv_out.reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)
        mid = x + blk.ls1(attn.proj(o))
        mlp = blk.mlp
        fc1_out = mlp.fc1(blk.norm2(mid))
        y = mid + blk.ls2(mlp.drop2(mlp.fc2(mlp.norm(mlp.drop1(mlp.act(fc1_out))))))
        norms = (qkv_out.float().norm(dim=-1), fc1_out.float().norm(dim=-1)) if want_norms else None
        return y, k, v, norms

    def _weight_score(
        self, li: int, blk: nn.Module, st: SubTaskDelta, x_s: torch.Tensor, norms, score: torch.Tensor, cnt: _Counter
    ) -> torch.Tensor:
        """``score`` raised to what the sub-task's own weights change, token by token.

        A token whose block input equals the base's can still get another activation from the sub-task's
        delta: at the first layer a sub-task owns, every input equals the base's. Its change of the QKV
        and first-MLP activations, ``|dW h| / |W_base h_base|`` (``h`` the sub-task's normed input; the
        MLP's taken at the block input, an estimate), is cheap for a low-rank delta: ``|B A h|`` is
        ``sqrt(z^T (B^T B) z)`` with ``z = A h``, ``r * (in + r)`` per token; it counts in the executed
        MACs. Fused deltas (dense, sparse) would cost a dense product here, so they are judged by their
        inputs only.
        """
        pre = f"blocks.{li}."
        rows = x_s.shape[0] * x_s.shape[1]
        for name, norm, base_norm in (("attn.qkv", "norm1", norms[0]), ("mlp.fc1", "norm2", norms[1])):
            d = st.delta(pre + name + ".weight")
            if d.fused or d.kind == "zero":
                continue
            h = self._ln(x_s, st, pre + norm, getattr(blk, norm).eps)
            if isinstance(d, LowRankDelta):
                # |B A h| = sqrt(z^T (B^T B) z) with z = A h: r x r per token instead of out x r
                z = h @ d.a.t()
                gram = d.b.t() @ d.b
                change_norm = ((z @ gram) * z).sum(-1).float().clamp_min(1e-12).sqrt()
                cnt.add(st.task, li + 1, rows * d.rank * (d.in_features + d.rank) + d.out_features * d.rank**2)
            else:
                change_norm = d.apply(h).float().norm(dim=-1)
                cnt.add(st.task, li + 1, d.apply_macs(rows))
            score = torch.maximum(score, change_norm / (base_norm + 1e-6))
        return score

    def _sub_block(
        self, li: int, blk: nn.Module, x_b, upd_b, k_b, v_b, xs: dict, sels: dict[str, Selection], cnt: _Counter
    ) -> dict[str, torch.Tensor]:
        """Block ``li`` for every sub-task: selected rows recomputed together, the rest take the base's update."""
        pre = f"blocks.{li}."
        layer = li + 1
        out = {t: xs[t] + upd_b for t in xs if not sels[t].full}  # reused tokens: the base's update
        active = [t for t in xs if sels[t].k > 0]
        if not active:
            return out
        attn = blk.attn
        heads, hd = attn.num_heads, attn.head_dim
        b, n, c = x_b.shape
        subs = {t: self.subtasks[t] for t in active}
        xr = {t: gather_selected(xs[t], sels[t]) for t in active}
        h = {t: self._ln(xr[t], subs[t], pre + "norm1", blk.norm1.eps) for t in active}
        qkv = self._linear(pre + "attn.qkv", attn.qkv, h, layer, cnt)
        o = {}
        for t in active:
            k_rows = sels[t].k
            q, k, v = qkv[t].reshape(b, k_rows, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
            kk = scatter_heads(k_b, sels[t], k)
            vv = scatter_heads(v_b, sels[t], v)
            o[t] = F.scaled_dot_product_attention(q, kk, vv).transpose(1, 2).reshape(b, k_rows, c)
            cnt.add(t, layer, 2 * b * k_rows * n * heads * hd)
        a = self._linear(pre + "attn.proj", attn.proj, o, layer, cnt)
        mid = {t: xr[t] + self._ls(a[t], subs[t], pre + "ls1") for t in active}
        h2 = {t: self._ln(mid[t], subs[t], pre + "norm2", blk.norm2.eps) for t in active}
        f1 = self._linear(pre + "mlp.fc1", blk.mlp.fc1, h2, layer, cnt)
        f1 = {t: blk.mlp.act(f1[t]) for t in active}
        f2 = self._linear(pre + "mlp.fc2", blk.mlp.fc2, f1, layer, cnt)
        for t in active:
            yr = mid[t] + self._ls(f2[t], subs[t], pre + "ls2")
            out[t] = yr if sels[t].full else scatter_rows(out[t], sels[t], yr)
        return out

    @staticmethod
    def _block_macs(blk: nn.Module, rows: int, n: int) -> int:
        """Multiply-adds of a dense block on ``rows`` query rows with ``n`` keys."""
        lin = sum(m.weight.numel() for m in (blk.attn.qkv, blk.attn.proj, blk.mlp.fc1, blk.mlp.fc2))
        return rows * lin + 2 * rows * n * blk.attn.num_heads * blk.attn.head_dim

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        x: torch.Tensor,
        thresholds: dict[str, float] | float = 0.0,
        max_token_fraction: float = 1.0,
        tasks: list[str] | tuple[str, ...] | None = None,
        sync_free: bool | None = None,
        offset: tuple[int, int] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Run the base task and the sub-tasks ``tasks`` (default: all) on ImageNet-normalised images.

        ``thresholds``: per sub-task (or one value for all) relative token-change threshold; 0 recomputes
        every token. ``max_token_fraction``: cap on recomputed tokens per layer and frame. ``sync_free``:
        fixed row budget without host syncs (default: True on CUDA). ``offset``: patch offset of a
        training crop, as in ``DenseViT.forward``.

        Stats: ``tokens`` (N per frame), ``recomputed_fraction`` {task: tokens recomputed / (N x layers),
        base 1.0}, ``rows_fraction`` {task: rows that ran / (N x layers), padding included},
        ``macs`` {task: executed multiply-adds}, ``macs_total``, ``macs_dense`` {task: a dense single-task
        model's}, ``macs_dense_total``, ``macs_saved_fraction`` (1 - total / dense total),
        ``layers`` [per block: {task: {"rows", "recomputed", "macs"}}], ``sync_free``.
        """
        raw = self.run_raw(x, thresholds, max_token_fraction, tasks, sync_free, offset)
        return raw["outputs"], self._stats(raw)

    def run_raw(
        self,
        x: torch.Tensor,
        thresholds: dict[str, float] | float = 0.0,
        max_token_fraction: float = 1.0,
        tasks: list[str] | tuple[str, ...] | None = None,
        sync_free: bool | None = None,
        offset: tuple[int, int] | None = None,
        keep_scores: bool = False,
    ) -> dict[str, Any]:
        """``forward`` without turning the statistics into numbers: with ``sync_free`` nothing in here
        waits for the device (``forward`` then reads the token counts back once, in ``_stats``).

        ``keep_scores`` also returns ``scores`` {task: per layer (B, N) relative activation deltas}, with
        gradients: the activation-sparsity training step penalises them."""
        sub_names = list(self.subtasks) if tasks is None else [t for t in tasks if t != self.base.task]
        unknown = [t for t in sub_names if t not in self.subtasks]
        if unknown:
            raise ValueError(f"unknown sub-task(s) {unknown}; this shared model has {list(self.subtasks)}")
        if isinstance(thresholds, (int, float)):
            thr = {t: float(thresholds) for t in sub_names}
        else:
            missing = [t for t in sub_names if t not in thresholds]
            if missing:
                raise ValueError(f"no threshold for sub-task(s) {missing}; got {sorted(thresholds)}")
            thr = {t: float(thresholds[t]) for t in sub_names}
        if sync_free is None:
            sync_free = x.device.type == "cuda"
        enc = self.base.encoder
        depth = len(enc.blocks)
        base_task = self.base.task
        cnt = _Counter([base_task, *sub_names], depth)

        tok_b, grid = enc.embed(x) if offset is None else enc.embed(x, offset)
        tok_b = tok_b.contiguous()  # the patch embedding's (B, N, C) is a transposed view: row ops want rows
        b, n, c = tok_b.shape
        budget = token_budget(n, max_token_fraction)
        pe = enc.patch_embed.proj
        cnt.add(base_task, 0, b * n * pe.weight.numel())
        start = {t: self.subtasks[t].start_layer for t in sub_names}
        xs = {t: self._embed_sub(x, tok_b, grid, offset, self.subtasks[t], cnt) for t in sub_names if start[t] == 0}

        feats = {t: [] for t in [base_task, *sub_names]}
        recomputed = {t: [] for t in sub_names}
        rows = {t: [] for t in sub_names}
        scores = {t: [] for t in sub_names}
        none = tok_b.new_zeros((), dtype=torch.long)
        x_b = tok_b
        for li, blk in enumerate(enc.blocks):
            for t in sub_names:
                if start[t] == li and li > 0:
                    xs[t] = x_b  # identical to the base up to here (shared layers): its activations are ours
            need = {t: thr[t] > 0 or budget < n or keep_scores for t in xs}
            y_b, k_b, v_b, out_norms = self._base_block(blk, x_b, want_norms=any(need.values()))
            cnt.add(base_task, li + 1, self._block_macs(blk, b * n, n))
            base_norm = x_b.float().norm(dim=-1) if any(need.values()) else None
            sels = {}
            for t in xs:
                if need[t]:
                    score = delta_score(xs[t], x_b, base_norm)
                    score = self._weight_score(li, blk, self.subtasks[t], xs[t], out_norms, score, cnt)
                else:
                    score = x_b.new_zeros(b, n)
                sels[t] = select_tokens(score.detach(), thr[t], budget, sync_free)
                if keep_scores:
                    scores[t].append(score)
            xs = self._sub_block(li, blk, x_b, y_b - x_b, k_b, v_b, xs, sels, cnt)
            for t in sub_names:
                recomputed[t].append(sels[t].valid.sum() if t in sels else none)
                rows[t].append(sels[t].rows if t in sels else 0)
            x_b = y_b
            if li in self.cfg.feature_layers:
                last = li == depth - 1
                feats[base_task].append(enc.norm(x_b) if last else x_b)
                for t in sub_names:
                    if t not in xs:  # a shared layer: the base's feature is this task's
                        feats[t].append(feats[base_task][-1])
                        continue
                    st = self.subtasks[t]
                    feats[t].append(self._ln(xs[t], st, "norm", enc.norm.eps) if last else xs[t])

        outputs = {}
        outputs[base_task], m = _head_macs(self.base.head, lambda: self.base.head(feats[base_task], grid, x))
        cnt.add(base_task, depth + 1, m)
        head_macs = {base_task: m}
        for t in sub_names:
            head = self.subtasks[t].head
            outputs[t], m = _head_macs(head, lambda head=head, t=t: head(feats[t], grid, x))
            cnt.add(t, depth + 1, m)
            head_macs[t] = m

        return {
            "outputs": outputs,
            "counter": cnt,
            "head_macs": head_macs,
            "recomputed": torch.stack([torch.stack(recomputed[t]) for t in sub_names]) if sub_names else None,
            "rows": rows,
            "shape": (b, n),
            "tasks": [base_task, *sub_names],
            "thresholds": thr,
            "sync_free": sync_free,
            "max_token_fraction": max_token_fraction,
            "scores": scores if keep_scores else None,
        }

    def _stats(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Numbers for diagnostics and benchmarks (one device read: the recomputed-token counts)."""
        enc = self.base.encoder
        depth = len(enc.blocks)
        b, n = raw["shape"]
        base_task, *sub_names = raw["tasks"]
        cnt, rows, head_macs = raw["counter"], raw["rows"], raw["head_macs"]
        pe = enc.patch_embed.proj
        dense_enc = b * n * pe.weight.numel() + sum(self._block_macs(blk, b * n, n) for blk in enc.blocks)
        rec_counts = raw["recomputed"].tolist() if sub_names else []
        layers = []
        for li in range(depth):
            entry = {base_task: {"rows": b * n, "recomputed": 1.0, "macs": cnt.layers[li + 1][base_task]}}
            for j, t in enumerate(sub_names):
                entry[t] = {
                    "rows": rows[t][li],
                    "recomputed": rec_counts[j][li] / (b * n),
                    "macs": cnt.layers[li + 1][t],
                }
            layers.append(entry)
        macs_dense = {t: dense_enc + head_macs[t] for t in [base_task, *sub_names]}
        total = sum(cnt.total.values())
        dense_total = sum(macs_dense.values())
        stats = {
            "tokens": n,
            "frames": b,
            "sync_free": raw["sync_free"],
            "thresholds": raw["thresholds"],
            "max_token_fraction": raw["max_token_fraction"],
            "recomputed_fraction": {
                base_task: 1.0,
                **{t: sum(rec_counts[j]) / (b * n * depth) for j, t in enumerate(sub_names)},
            },
            "rows_fraction": {base_task: 1.0, **{t: sum(rows[t]) / (b * n * depth) for t in sub_names}},
            "macs": dict(cnt.total),
            "macs_total": total,
            "macs_dense": macs_dense,
            "macs_dense_total": dense_total,
            "macs_saved_fraction": 1.0 - total / dense_total,
            "layers": layers,
        }
        return stats
