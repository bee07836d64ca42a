"""The shared multi-task engine: the base task runs densely, sub-tasks recompute only changed tokens.

Per encoder block ``l`` and sub-task ``s`` (the sub-tasks' residual streams are stacked along a leading task
dimension, so every step below runs once for all of them):

1. The base task runs the block on all tokens and keeps its input ``x_b``, output ``y_b`` and its
   attention keys/values ``K_b, V_b``.
2. Each token is scored by how much its activation differs from the base's: its block input
   (``|x_s - x_b| / |x_b|``), and what the sub-task's own weights would change in its QKV and first-MLP
   activations (``|dW h_s| / |W h_b|``, see ``_scores``; without this term a token whose input
   equals the base's, as every token does at the first layer a sub-task owns, could never diverge).
   Tokens above the task's threshold (all tokens at threshold 0, which skips the scoring), at most
   ``ceil(max_token_fraction * N)`` of them, largest first, form the set ``S``; the others form ``U``.
3. The rows of ``S`` are gathered and run through the sub-task's block: its LayerNorms, QKV, attention,
   projection and MLP, with the weights ``W_base + dW`` (the compressed delta applied to the weights
   once, cached outside training; see ``_block_params``). All sub-tasks select the same number of rows
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
  run together as grouped convolutions (``sharing/heads.py``), with the same outputs.
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
from mtshare_ros.sharing.heads import GroupedHeads, can_group
from mtshare_ros.sharing.subtask import SubTaskDelta
from mtshare_ros.sharing.tokens import (
    Selection,
    delta_score,
    gather_selected,
    rows_needed,
    scatter_rows,
    select_tokens,
    stack_selections,
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


def _head_macs(
    head: nn.Module, run, known: dict[tuple, int] | None = None, key: tuple | None = None
) -> tuple[Any, int]:
    """Run ``run()`` and count the multiply-adds of every conv / linear layer of ``head`` from output shapes.

    The count depends on the input shapes only, so with ``known`` it is taken with hooks once per ``key``
    (the head and its input shape) and kept there: hooks on every frame cost ~0.1 ms of Python."""
    if known is not None and key in known:
        return run(), known[key]
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
    if known is not None:
        known[key] = count[0]
    return result, count[0]


def _raise(score: torch.Tensor, idx: list[int], change: torch.Tensor) -> torch.Tensor:
    """``score[idx] = max(score[idx], change)``, not in place, without a device index tensor (on CUDA that
    would be a host-to-device copy in the per-layer loop)."""
    if idx == list(range(score.shape[0])):
        return torch.maximum(score, change)
    rows = list(score.unbind(0))
    for j, i in enumerate(idx):
        rows[i] = torch.maximum(rows[i], change[j])
    return torch.stack(rows)


def _check_base(base: DenseViT) -> None:
    """The engine re-implements timm's pre-norm block; refuse variants it would compute wrongly."""
    if not isinstance(base.encoder.patch_embed.norm, nn.Identity):
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
            _check_subtask(base, name, st)
        self.base = base
        self.subtasks = nn.ModuleDict(subtasks)
        self._fused: dict[tuple, Any] = {}  # weights with the deltas applied: see _block_params
        self._head_counts: dict[tuple, int] = {}  # head multiply-adds per (task, input shape): see _head_macs

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

    @staticmethod
    def _ln(x: torch.Tensor, st: SubTaskDelta, name: str, eps: float) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), st.vector(name + ".weight"), st.vector(name + ".bias"), eps)

    def _base_block(
        self, blk: nn.Module, x: torch.Tensor, want_norms: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """timm ``Block.forward`` on all tokens, keeping the QKV activations (B, N, 3C), whose keys and values
        the sub-tasks' reused tokens take (and, when asked, the per-token norms of the QKV and first MLP
        activations, the denominators of ``_scores``)."""
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
        return y, qkv_out, norms

    def _scores(
        self, li: int, blk: nn.Module, names: list[str], xs: torch.Tensor, x_b: torch.Tensor, norms, cnt: _Counter,
        inputs_equal: bool = False,
    ) -> torch.Tensor:
        """Per sub-task and token, how much its activation differs from the base's (T, B, N), float32.

        The largest of: the block input's relative change ``|x_s - x_b| / |x_b|``, and what the sub-task's
        own weights change in its QKV and first-MLP activations, ``|dW h| / |W_base h_base|`` (``h`` the
        sub-task's normed input; the MLP's taken at the block input, an estimate). Without the second, a
        token whose input equals the base's, as every token is at the first layer a sub-task owns, could
        never diverge. For a low-rank delta it is cheap: ``|B A h| = sqrt(z^T (B^T B) z)`` with
        ``z = A h``, ``r * (in + r)`` per token, counted in the executed MACs; the QKV and MLP factors of
        all sub-tasks of one rank go through one batched product. Fused deltas (dense, sparse) would cost
        a dense product here, so they are judged by their inputs only. ``inputs_equal``: every sub-task's
        input is the base's (they all start at this layer), so the input term is 0.
        """
        t_n, b, n, c = xs.shape
        # the input term broadcasts over the task dimension; 0 where every sub-task starts here
        score = x_b.new_zeros(t_n, b, n, dtype=torch.float32) if inputs_equal else delta_score(xs, x_b)
        base_out = torch.stack(norms, -1).reshape(b * n, 2) + 1e-6  # |W_base h_base| of QKV, MLP
        groups, others = self._cached((li, "scores", tuple(names)), lambda: self._score_factors(li, names))
        for i, name, norm, j in others:  # additive deltas of other structures (rows): their own delta term
            st = self.subtasks[names[i]]
            d = st.delta(f"blocks.{li}.{name}.weight")
            change = d.apply(self._ln(xs[i], st, f"blocks.{li}.{norm}", blk.norm1.eps)).float().norm(dim=-1)
            score = _raise(score, [i], (change / base_out[:, j].view(b, n)).unsqueeze(0))
            cnt.add(names[i], li + 1, d.apply_macs(b * n))
        if groups:
            h0 = F.layer_norm(xs, (c,), eps=blk.norm1.eps).reshape(t_n, b * n, c)
        for idx, a_t, a_b, gram, parts in groups:  # sub-tasks of one pair of ranks, batched
            h = h0 if len(idx) == t_n else torch.stack([h0[i] for i in idx])
            z = torch.baddbmm(a_b, h, a_t)  # (T', BN, r_qkv + r_mlp)
            sq = torch.matmul(torch.bmm(z, gram) * z, parts).float()  # |dW h|^2 of QKV and MLP: (T', BN, 2)
            change = (sq.clamp_min(1e-12).sqrt() / base_out).amax(-1).view(len(idx), b, n)
            score = _raise(score, idx, change)
            for i in idx:  # z, z^T (B^T B) z and its sum per part
                cnt.add(names[i], li + 1, b * n * a_t.shape[-1] * (c + a_t.shape[-1] + 2))
        return score

    def _score_factors(self, li: int, names: list[str]) -> tuple[list[tuple], list[tuple]]:
        """Low-rank factors of block ``li``'s QKV and first MLP layer for the weight term of ``_scores``,
        per group of sub-tasks whose two deltas have one pair of ranks: (task indices, ``[A_qkv diag(g1);
        A_mlp diag(g2)]^T`` (T, C, r1 + r2), ``[A_qkv beta1; A_mlp beta2]`` (T, 1, r1 + r2), the block-diagonal
        ``B^T B`` (T, r1 + r2, r1 + r2), and the (r1 + r2, 2) indicator that sums each part), with each
        sub-task's LayerNorm ``g, beta`` folded into ``A`` so that the normed input needs no per-task affine.
        Also the (task index, layer, norm, part) of other additive deltas, scored one by one."""
        pre = f"blocks.{li}."
        layers = (("attn.qkv", "norm1"), ("mlp.fc1", "norm2"))
        by_ranks: dict[tuple[int, int], list[int]] = {}
        others = []
        for i, t in enumerate(names):
            ds = [self.subtasks[t].delta(pre + name + ".weight") for name, _ in layers]
            if all(isinstance(d, LowRankDelta) for d in ds):
                by_ranks.setdefault((ds[0].rank, ds[1].rank), []).append(i)
                continue
            others += [(i, name, norm, j) for j, ((name, norm), d) in enumerate(zip(layers, ds, strict=True))
                       if not d.fused and d.kind != "zero"]
        groups = []
        for (r1, r2), idx in by_ranks.items():
            a_t, a_b, gram = [], [], []
            for i in idx:
                st = self.subtasks[names[i]]
                ds = [st.delta(pre + name + ".weight") for name, _ in layers]
                a_t.append(torch.cat([(d.a * st.vector(pre + norm + ".weight")).t()
                                      for d, (_, norm) in zip(ds, layers, strict=True)], 1))
                a_b.append(torch.cat([d.a @ st.vector(pre + norm + ".bias")
                                      for d, (_, norm) in zip(ds, layers, strict=True)]))
                gram.append(torch.block_diag(*[d.b.t() @ d.b for d in ds]))
            parts = torch.zeros(r1 + r2, 2, dtype=a_t[0].dtype, device=a_t[0].device)
            parts[:r1, 0] = 1
            parts[r1:, 1] = 1
            groups.append((idx, torch.stack(a_t), torch.stack(a_b).unsqueeze(1), torch.stack(gram), parts))
        return groups, others

    def _block_params(self, li: int, blk: nn.Module, tasks: list[str]) -> dict[str, torch.Tensor | None]:
        """Block ``li`` of ``tasks`` stacked along a leading task dimension: each linear layer's
        ``(W_base + dW)^T`` (T, in, out) and bias (T, 1, out), the LayerNorm scale and shift before QKV and
        the MLP folded into them (exact: the norm runs without its affine), and layer scales or None.

        The deltas are applied to the weights once (outside training the result is cached until the
        module is trained, moved or loaded again): the sub-tasks' gathered rows then go through one
        batched product per layer, the cheapest form on CPU and GPU alike, while only the compressed
        ``dW`` is stored. In training the sum is rebuilt every call, so gradients reach ``dW``.
        """
        return self._cached((li, tuple(tasks)), lambda: self._build_block_params(li, blk, tasks))

    def _build_block_params(self, li: int, blk: nn.Module, tasks: list[str]) -> dict[str, torch.Tensor | None]:
        pre = f"blocks.{li}."
        subs = [self.subtasks[t] for t in tasks]
        p: dict[str, torch.Tensor | None] = {}
        folded = {"attn.qkv": "norm1", "mlp.fc1": "norm2"}  # LayerNorm affine folded into the next product
        for name, lin in (("attn.qkv", blk.attn.qkv), ("attn.proj", blk.attn.proj), ("mlp.fc1", blk.mlp.fc1),
                          ("mlp.fc2", blk.mlp.fc2)):
            w_t, bias = [], []
            for st in subs:
                wt = (lin.weight + st.delta(pre + name + ".weight").dense().to(lin.weight)).t()  # (in, out)
                bt = st.vector(pre + name + ".bias") if st.has_vector(pre + name + ".bias") else lin.bias
                if name in folded:  # (x_hat * g + beta) W^T + b = x_hat (g W^T) + (beta W^T + b)
                    ln = pre + folded[name]
                    bt = bt + st.vector(ln + ".bias") @ wt
                    wt = st.vector(ln + ".weight").unsqueeze(1) * wt
                w_t.append(wt)
                bias.append(bt)
            p[name + ".weight"] = torch.stack(w_t).contiguous()
            p[name + ".bias"] = torch.stack(bias).unsqueeze(1)
        for name in ("ls1", "ls2"):
            have = [st.has_vector(pre + name + ".gamma") for st in subs]
            p[name] = (
                torch.stack([st.vector(pre + name + ".gamma") if h else torch.ones_like(blk.norm1.weight)
                             for st, h in zip(subs, have, strict=True)]).unsqueeze(1)
                if any(have) else None
            )
        return p

    def _cached(self, key: tuple, build: Any) -> Any:
        """``build()``, kept for the next frame when nothing is training (no gradients, eval mode)."""
        if self.training or torch.is_grad_enabled():
            return build()
        if key not in self._fused:
            self._fused[key] = build()
        return self._fused[key]

    def _grouped_heads(self, tasks: list[str]) -> GroupedHeads:
        """The heads of ``tasks`` as one grouped network (``sharing/heads.py``); cached like ``_block_params``."""
        return self._cached(("heads", tuple(tasks)), lambda: GroupedHeads([self.subtasks[t].head for t in tasks]))

    def _clear_caches(self) -> None:
        self._fused.clear()
        self._head_counts.clear()

    def set_subtask(self, st: SubTaskDelta) -> None:
        """Add or replace the sub-task ``st.task`` (it must fit the base, as in ``__init__``)."""
        _check_subtask(self.base, st.task, st)
        self._clear_caches()
        self.subtasks[st.task] = st

    def train(self, mode: bool = True) -> SharedMultiTaskModel:
        self._clear_caches()  # weights are about to change
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # .to(), .half(), .cuda(): the cache would be stale
        self._clear_caches()
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._clear_caches()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _sub_block(
        self, li: int, blk: nn.Module, names: list[str], upd_b, qkv_b, xs: torch.Tensor, sel: Selection,
        cnt: _Counter,
    ) -> torch.Tensor:
        """Block ``li`` for the stacked sub-tasks ``xs`` (T, B, N, C): the selected rows of all of them (one row
        count; ``sel`` is over their T * B frames) go through the same batched products; the other tokens
        take the base's update."""
        t_n, b, n, c = xs.shape
        k = sel.k
        out = xs if sel.full else xs + upd_b  # reused tokens: the base's update
        if k == 0:
            return out
        attn = blk.attn
        heads, hd = attn.num_heads, attn.head_dim
        p = self._block_params(li, blk, names)
        flat = xs.reshape(t_n * b, n, c)
        xr = gather_selected(flat, sel).reshape(t_n, b * k, c)

        def linear(x: torch.Tensor, name: str) -> torch.Tensor:
            return torch.baddbmm(p[name + ".bias"], x, p[name + ".weight"])

        qkv = linear(F.layer_norm(xr, (c,), eps=blk.norm1.eps), "attn.qkv")
        q = qkv.reshape(t_n * b, k, 3, heads, hd)[:, :, 0].transpose(1, 2)
        # in place into fresh tensors (the repeat, ``out``) saves copies; not under autograd, which keeps the
        # gathers' inputs for the backward pass
        inplace = not torch.is_grad_enabled()
        # every task's keys and values: the base's, with the selected tokens' rows replaced (their queries too,
        # unused: one scatter of whole QKV rows is cheaper than one per keys and values)
        kv = scatter_rows(qkv_b.repeat(t_n, 1, 1), sel, qkv.reshape(t_n * b, k, 3 * c), inplace=inplace)
        _, kk, vv = kv.view(t_n * b, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q, kk, vv).transpose(1, 2).reshape(t_n, b * k, c)
        a = linear(o, "attn.proj")
        mid = xr + (a if p["ls1"] is None else a * p["ls1"])
        f = linear(blk.mlp.act(linear(F.layer_norm(mid, (c,), eps=blk.norm2.eps), "mlp.fc1")), "mlp.fc2")
        yr = (mid + (f if p["ls2"] is None else f * p["ls2"])).reshape(t_n * b, k, c)
        macs = self._block_macs(blk, b * k, n)
        for t in names:
            cnt.add(t, li + 1, macs)
        out = scatter_rows(out.reshape(t_n * b, n, c), sel, yr, inplace=inplace and not sel.full)
        return out.reshape(t_n, b, n, c)

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
        names = [t for t in sub_names if start[t] == 0]  # the sub-tasks whose blocks run, stacked in xs
        xs = torch.stack([self._embed_sub(x, tok_b, grid, offset, self.subtasks[t], cnt) for t in names]) \
            if names else None

        feats = {t: [] for t in [base_task, *sub_names]}
        recomputed = {t: [] for t in sub_names}
        rows = {t: [] for t in sub_names}
        scores = {t: [] for t in sub_names}
        none = tok_b.new_zeros((), dtype=torch.long)
        x_b = tok_b
        for li, blk in enumerate(enc.blocks):
            joining = [t for t in sub_names if start[t] == li and li > 0]
            if joining:  # identical to the base up to here (shared layers): its activations are theirs
                new = x_b.unsqueeze(0).expand(len(joining), -1, -1, -1)
                xs = new.contiguous() if xs is None else torch.cat([xs, new])
                names += joining
            need = [thr[t] > 0 or budget < n or keep_scores for t in names]
            y_b, qkv_b, out_norms = self._base_block(blk, x_b, want_norms=any(need))
            cnt.add(base_task, li + 1, self._block_macs(blk, b * n, n))
            if names:
                score = (self._scores(li, blk, names, xs, x_b, out_norms, cnt, len(joining) == len(names)) if any(need)
                         else x_b.new_zeros(len(names), b, n, dtype=torch.float32))
                # one row count for all sub-tasks, so that they share the block's products (padding is counted)
                k = max(rows_needed(score[i], thr[t], budget, sync_free) for i, t in enumerate(names))
                sel = stack_selections([select_tokens(score[i].detach(), thr[t], budget, sync_free, k)
                                        for i, t in enumerate(names)])
                xs = self._sub_block(li, blk, names, y_b - x_b, qkv_b, xs, sel, cnt)
                counts = sel.valid.reshape(len(names), -1).sum(1)
            for t in sub_names:
                i = names.index(t) if t in names else None
                recomputed[t].append(none if i is None else counts[i])
                rows[t].append(0 if i is None else b * sel.k)
                if keep_scores and i is not None:
                    scores[t].append(score[i])
            x_b = y_b
            if li in self.cfg.feature_layers:
                last = li == depth - 1
                feats[base_task].append(enc.norm(x_b) if last else x_b)
                for t in sub_names:
                    if t not in names:  # a shared layer: the base's feature is this task's
                        feats[t].append(feats[base_task][-1])
                        continue
                    xt = xs[names.index(t)]
                    feats[t].append(self._ln(xt, self.subtasks[t], "norm", enc.norm.eps) if last else xt)

        outputs = {}
        outputs[base_task], m = _head_macs(self.base.head, lambda: self.base.head(feats[base_task], grid, x),
                                           self._head_counts, (base_task, tuple(x.shape)))
        cnt.add(base_task, depth + 1, m)
        head_macs = {base_task: m}
        if can_group([self.subtasks[t].head for t in sub_names]):
            outs, macs = self._grouped_heads(sub_names).forward([feats[t] for t in sub_names], grid, x)
            for t, out, m in zip(sub_names, outs, macs, strict=True):
                outputs[t] = out
                cnt.add(t, depth + 1, m)
                head_macs[t] = m
        for t in sub_names:
            if t in outputs:
                continue
            head = self.subtasks[t].head
            outputs[t], m = _head_macs(head, lambda head=head, t=t: head(feats[t], grid, x), self._head_counts,
                                       (t, tuple(x.shape)))
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
