"""One encoder block of the engine, as functions: the base task on all tokens, the token scores, the fused
weights of a block (sub-tasks' ``W_base + dW``, or the base's own), and stacked streams on their selected rows.

They compute and nothing else: which tokens run is decided by the engine's layer loop (``engine.py``), and what
the work cost is counted from what ran by ``cost.py``. Each function states which part of the method it is;
the exact/approximate contract of the whole is in ``engine.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mtshare_ros.sharing.deltas import LowRankDelta
from mtshare_ros.sharing.subtask import SubTaskDelta
from mtshare_ros.sharing.tokens import Selection, delta_score, gather_selected, scatter_rows

SCORED_LAYERS = (("attn.qkv", "norm1"), ("mlp.fc1", "norm2"))
"""The products whose weight delta the token score looks at, with the LayerNorm before each."""


def own_layer_norm(x: torch.Tensor, st: SubTaskDelta, name: str, eps: float) -> torch.Tensor:
    """LayerNorm ``name`` with the sub-task's own scale and shift."""
    return F.layer_norm(x, (x.shape[-1],), st.vector(name + ".weight"), st.vector(name + ".bias"), eps)


def base_block(
    blk: nn.Module, x: torch.Tensor, want_norms: bool = False
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """timm ``Block.forward`` on all tokens, keeping the QKV activations (B, N, 3C), whose keys and values the
    sub-tasks' reused tokens take (and, when asked, the per-token norms of the QKV and first MLP activations,
    the denominators of ``token_scores``)."""
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


def _raise(score: torch.Tensor, idx: list[int], change: torch.Tensor) -> torch.Tensor:
    """``score[idx] = max(score[idx], change)``, not in place, without a device index tensor (on CUDA that
    would be a host-to-device copy in the per-layer loop)."""
    if idx == list(range(score.shape[0])):
        return torch.maximum(score, change)
    rows = list(score.unbind(0))
    for j, i in enumerate(idx):
        rows[i] = torch.maximum(rows[i], change[j])
    return torch.stack(rows)


def score_factors(li: int, subs: list[SubTaskDelta]) -> tuple[list[tuple], list[tuple]]:
    """Low-rank factors of block ``li``'s QKV and first MLP layer for the weight term of ``token_scores``,
    per group of sub-tasks whose two deltas have one pair of ranks: (task indices, ``[A_qkv diag(g1);
    A_mlp diag(g2)]^T`` (T, C, r1 + r2), ``[A_qkv beta1; A_mlp beta2]`` (T, 1, r1 + r2), the block-diagonal
    ``B^T B`` (T, r1 + r2, r1 + r2), and the (r1 + r2, 2) indicator that sums each part), with each
    sub-task's LayerNorm ``g, beta`` folded into ``A`` so that the normed input needs no per-task affine.
    Also the (task index, layer, norm, part) of other additive deltas, scored one by one."""
    pre = f"blocks.{li}."
    by_ranks: dict[tuple[int, int], list[int]] = {}
    others = []
    for i, st in enumerate(subs):
        ds = [st.delta(pre + name + ".weight") for name, _ in SCORED_LAYERS]
        if all(isinstance(d, LowRankDelta) for d in ds):
            by_ranks.setdefault((ds[0].rank, ds[1].rank), []).append(i)
            continue
        others += [(i, name, norm, j) for j, ((name, norm), d) in enumerate(zip(SCORED_LAYERS, ds, strict=True))
                   if not d.fused and d.kind != "zero"]
    groups = []
    for (r1, r2), idx in by_ranks.items():
        a_t, a_b, gram = [], [], []
        for i in idx:
            st = subs[i]
            ds = [st.delta(pre + name + ".weight") for name, _ in SCORED_LAYERS]
            a_t.append(torch.cat([(d.a * st.vector(pre + norm + ".weight")).t()
                                  for d, (_, norm) in zip(ds, SCORED_LAYERS, strict=True)], 1))
            a_b.append(torch.cat([d.a @ st.vector(pre + norm + ".bias")
                                  for d, (_, norm) in zip(ds, SCORED_LAYERS, strict=True)]))
            gram.append(torch.block_diag(*[d.b.t() @ d.b for d in ds]))
        parts = torch.zeros(r1 + r2, 2, dtype=a_t[0].dtype, device=a_t[0].device)
        parts[:r1, 0] = 1
        parts[r1:, 1] = 1
        groups.append((idx, torch.stack(a_t), torch.stack(a_b).unsqueeze(1), torch.stack(gram), parts))
    return groups, others


def token_scores(
    li: int,
    blk: nn.Module,
    subs: list[SubTaskDelta],
    factors: tuple[list[tuple], list[tuple]],
    xs: torch.Tensor,
    x_b: torch.Tensor,
    norms: tuple[torch.Tensor, torch.Tensor],
    inputs_equal: bool = False,
) -> torch.Tensor:
    """Per sub-task and token, how much its activation differs from the base's (T, B, N), float32.

    The largest of: the block input's relative change ``|x_s - x_b| / |x_b|``, and what the sub-task's own
    weights change in its QKV and first-MLP activations, ``|dW h| / |W_base h_base|`` (``h`` the sub-task's
    normed input; the MLP's taken at the block input, an estimate). Without the second, a token whose input
    equals the base's, as every token is at the first layer a sub-task owns, could never diverge. For a
    low-rank delta it is cheap: ``|B A h| = sqrt(z^T (B^T B) z)`` with ``z = A h``, ``r * (in + r)`` per
    token; the QKV and MLP factors of all sub-tasks of one rank go through one batched product
    (``factors`` from ``score_factors``). Fused deltas (dense, sparse) would cost a dense product here, so
    they are judged by their inputs only. ``inputs_equal``: every sub-task's input is the base's (they all
    start at this layer), so the input term is 0.
    """
    t_n, b, n, c = xs.shape
    # the input term broadcasts over the task dimension; 0 where every sub-task starts here
    score = x_b.new_zeros(t_n, b, n, dtype=torch.float32) if inputs_equal else delta_score(xs, x_b)
    base_out = torch.stack(norms, -1).reshape(b * n, 2) + 1e-6  # |W_base h_base| of QKV, MLP
    groups, others = factors
    for i, name, norm, j in others:  # additive deltas of other structures (rows): their own delta term
        st = subs[i]
        d = st.delta(f"blocks.{li}.{name}.weight")
        change = d.apply(own_layer_norm(xs[i], st, f"blocks.{li}.{norm}", blk.norm1.eps)).float().norm(dim=-1)
        score = _raise(score, [i], (change / base_out[:, j].view(b, n)).unsqueeze(0))
    if groups:
        h0 = F.layer_norm(xs, (c,), eps=blk.norm1.eps).reshape(t_n, b * n, c)
    for idx, a_t, a_b, gram, parts in groups:  # sub-tasks of one pair of ranks, batched
        h = h0 if len(idx) == t_n else torch.stack([h0[i] for i in idx])
        z = torch.baddbmm(a_b, h, a_t)  # (T', BN, r_qkv + r_mlp)
        sq = torch.matmul(torch.bmm(z, gram) * z, parts).float()  # |dW h|^2 of QKV and MLP: (T', BN, 2)
        change = (sq.clamp_min(1e-12).sqrt() / base_out).amax(-1).view(len(idx), b, n)
        score = _raise(score, idx, change)
    return score


def block_params(li: int, blk: nn.Module, subs: list[SubTaskDelta]) -> dict[str, torch.Tensor | None]:
    """Block ``li`` of ``subs`` stacked along a leading task dimension: each linear layer's ``(W_base + dW)^T``
    (T, in, out) and bias (T, 1, out), the LayerNorm scale and shift before QKV and the MLP folded into them
    (exact: the norm runs without its affine), and layer scales or None.

    The deltas are applied to the weights once (the engine caches the result outside training): the
    sub-tasks' gathered rows then go through one batched product per layer, the cheapest form on CPU and GPU
    alike, while only the compressed ``dW`` is stored. In training the sum is rebuilt every call, so gradients
    reach ``dW``.
    """
    pre = f"blocks.{li}."
    p: dict[str, torch.Tensor | None] = {}
    folded = dict(SCORED_LAYERS)  # LayerNorm affine folded into the next product
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


def base_params(blk: nn.Module) -> dict[str, torch.Tensor | None]:
    """The base task's block in the form of ``block_params`` (one stream): its own weights, LayerNorm affines
    folded in, so that its rows can go through ``rows_block`` (temporal sharing recomputes base rows too)."""
    p: dict[str, torch.Tensor | None] = {}
    folded = {"attn.qkv": blk.norm1, "mlp.fc1": blk.norm2}
    for name, lin in (("attn.qkv", blk.attn.qkv), ("attn.proj", blk.attn.proj), ("mlp.fc1", blk.mlp.fc1),
                      ("mlp.fc2", blk.mlp.fc2)):
        wt, bt = lin.weight.t(), lin.bias
        if name in folded:
            bt = bt + folded[name].bias @ wt
            wt = folded[name].weight.unsqueeze(1) * wt
        p[name + ".weight"] = wt.unsqueeze(0).contiguous()
        p[name + ".bias"] = bt.view(1, 1, -1)
    for name in ("ls1", "ls2"):
        ls = getattr(blk, name)
        p[name] = ls.gamma.view(1, 1, -1) if hasattr(ls, "gamma") else None
    return p


class RowsResult(NamedTuple):
    """What ``rows_block`` computed: the block output of every token, the keys and values with the selected rows
    replaced, and the selected rows' inputs (T, B * k, C), outputs (T * B, k, C) and first-MLP activation norms
    (T * B, k) (None for the three when no row ran)."""

    out: torch.Tensor
    kv: torch.Tensor
    rows_in: torch.Tensor | None
    rows_out: torch.Tensor | None
    fc1_norm: torch.Tensor | None


def rows_block(
    blk: nn.Module, p: dict[str, torch.Tensor | None], upd: torch.Tensor, kv: torch.Tensor, xs: torch.Tensor,
    sel: Selection,
) -> RowsResult:
    """The block for T stacked streams ``xs`` (T, B, N, C) with their fused weights ``p``, computed on the
    selected rows only: they go through the same batched products (one row count; ``sel`` is over the T * B
    frames), their queries attend to all N keys of ``kv`` (T * B, N, 3C) with their own rows scattered in; every
    other token takes ``x + upd``, the update a reference computed for it (the base task's, for task sharing;
    its own from an earlier frame, for temporal sharing).

    ``kv`` is updated in place outside autograd: pass a tensor the caller owns."""
    t_n, b, n, c = xs.shape
    k = sel.k
    out = xs if sel.full else xs + upd  # tokens not recomputed: the reference's update
    if k == 0:
        return RowsResult(out, kv, None, None, None)
    attn = blk.attn
    heads, hd = attn.num_heads, attn.head_dim
    flat = xs.reshape(t_n * b, n, c)
    xr = gather_selected(flat, sel).reshape(t_n, b * k, c)

    def linear(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.baddbmm(p[name + ".bias"], x, p[name + ".weight"])

    qkv = linear(F.layer_norm(xr, (c,), eps=blk.norm1.eps), "attn.qkv")
    q = qkv.reshape(t_n * b, k, 3, heads, hd)[:, :, 0].transpose(1, 2)
    # in place into tensors the caller owns saves copies; not under autograd, which keeps the gathers' inputs
    # for the backward pass
    inplace = not torch.is_grad_enabled()
    # every stream's keys and values with the selected tokens' rows replaced (their queries too, unused: one
    # scatter of whole QKV rows is cheaper than one per keys and values)
    kv = scatter_rows(kv, sel, qkv.reshape(t_n * b, k, 3 * c), inplace=inplace)
    _, kk, vv = kv.view(t_n * b, n, 3, heads, hd).permute(2, 0, 3, 1, 4).unbind(0)
    o = F.scaled_dot_product_attention(q, kk, vv).transpose(1, 2).reshape(t_n, b * k, c)
    a = linear(o, "attn.proj")
    mid = xr + (a if p["ls1"] is None else a * p["ls1"])
    h = linear(F.layer_norm(mid, (c,), eps=blk.norm2.eps), "mlp.fc1")
    f = linear(blk.mlp.act(h), "mlp.fc2")
    yr = (mid + (f if p["ls2"] is None else f * p["ls2"])).reshape(t_n * b, k, c)
    out = scatter_rows(out.reshape(t_n * b, n, c), sel, yr, inplace=inplace and not sel.full)
    return RowsResult(out.reshape(t_n, b, n, c), kv, xr, yr, h.float().norm(dim=-1).reshape(t_n * b, k))
