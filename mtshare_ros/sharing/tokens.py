"""Token selection, gather and scatter for computing a block on a subset of tokens.

A selection is a per-frame padded list: ``index`` (B, k) token positions (distinct within a frame) and
``valid`` (B, k). Rows with ``valid = False`` are padding: they are computed (so they count as executed
work) but their results are thrown away by ``scatter_rows``. Padding appears when frames of a batch
select different numbers of tokens, and on CUDA in sync-free mode, where ``k`` is the fixed budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import torch


@dataclass
class Selection:
    index: torch.Tensor  # (B, k) long
    valid: torch.Tensor  # (B, k) bool
    k: int  # rows computed per frame (host-side int: no sync needed to size the products)
    full: bool = False  # every token, in order, all valid: gather and scatter are identities
    all_valid: bool = False  # no padding rows (known on the host): scatter needs no mask

    @property
    def rows(self) -> int:
        return self.index.shape[0] * self.k


def delta_score(
    x_sub: torch.Tensor, x_base: torch.Tensor, base_norm: torch.Tensor | None = None, eps: float = 1e-6
) -> torch.Tensor:
    """Relative activation change per token: ``|x_sub - x_base| / |x_base|`` (L2 over channels), float32.

    Relative, because the residual stream grows with depth: one threshold then means the same at every layer.
    ``base_norm`` (``|x_base|`` per token) may be passed in when several sub-tasks share it.
    """
    d = (x_sub.float() - x_base.float()).norm(dim=-1)
    if base_norm is None:
        base_norm = x_base.float().norm(dim=-1)
    return d / (base_norm + eps)


def token_budget(n_tokens: int, max_token_fraction: float) -> int:
    """Most tokens recomputed per frame and layer: ``ceil(fraction * N)``, at least 0, at most N.

    Computed in integers, the fraction as the nearest ratio of small integers (0.1 is 1/10: float ``0.1 * 300``
    would round up to 31 tokens): integer arithmetic keeps ``k`` a function of a symbolic token count when a graph
    is exported with a dynamic width, and the exported graph then selects exactly what this function says."""
    if not 0.0 <= max_token_fraction <= 1.0:
        raise ValueError(f"max_token_fraction must be in [0, 1], got {max_token_fraction}")
    frac = Fraction(max_token_fraction).limit_denominator(1 << 16)
    return -(-n_tokens * frac.numerator // frac.denominator)  # ceil; at most N since the fraction is at most 1


def _above(score: torch.Tensor, threshold: float, eligible: torch.Tensor | None) -> torch.Tensor:
    above = torch.ones_like(score, dtype=torch.bool) if threshold <= 0 else score > threshold
    return above if eligible is None else above & eligible


def rows_needed(
    score: torch.Tensor, threshold: float, budget: int, sync_free: bool, eligible: torch.Tensor | None = None
) -> int:
    """Rows per frame that ``select_tokens`` computes for these scores: the budget at threshold 0 (with every
    token eligible) or when ``sync_free``, else the largest number of eligible tokens above the threshold in any
    frame (capped by the budget; reads one count back to the host, free on CPU)."""
    if sync_free or (threshold <= 0 and eligible is None):
        return budget
    return min(budget, int(_above(score, threshold, eligible).sum(dim=1).max()))


def select_tokens(
    score: torch.Tensor, threshold: float, budget: int, sync_free: bool, k: int | None = None,
    eligible: torch.Tensor | None = None,
) -> Selection:
    """Tokens to recompute: ``score > threshold`` (every token when ``threshold <= 0``), only among ``eligible``
    ones when given (B, N), at most ``budget`` per frame, the largest scores first.

    The products are sized to ``k`` rows per frame, ``rows_needed`` by default. ``sync_free=False`` sizes
    them to the largest number of selected tokens in the batch. ``sync_free=True`` always computes
    ``budget`` rows and marks those under the threshold invalid: no host synchronisation, but the cost is
    the budget. A larger ``k`` (at most ``budget``: several sub-tasks batched to one row count) adds
    padding rows, marked invalid. All give the same results.
    """
    b, n = score.shape
    if k is None:
        k = rows_needed(score, threshold, budget, sync_free, eligible)
    elif k > budget:
        raise ValueError(f"k={k} rows exceed the token budget {budget}")
    above = _above(score, threshold, eligible)
    if eligible is not None:  # the top-k must not take an ineligible token over an eligible one
        score = torch.where(eligible, score, score.new_tensor(float("-inf")))
    if k == 0:
        empty = torch.zeros(b, 0, dtype=torch.long, device=score.device)
        return Selection(empty, empty.bool(), 0, all_valid=True)
    every = threshold <= 0 and eligible is None
    if k == n:
        index = torch.arange(n, device=score.device).expand(b, n)
        return Selection(index, above, k, full=every, all_valid=every)
    top = score.topk(k, dim=1)
    valid = above.gather(1, top.indices)
    # where the host waits for the device anyway (``rows_needed``), knowing there is no padding is one more read
    all_valid = every or (not sync_free and bool(valid.all()))
    return Selection(top.indices, valid, k, all_valid=all_valid)


def stack_selections(sels: list[Selection]) -> Selection:
    """Selections of equal ``k`` (one per sub-task) as one selection over their frames, task-major."""
    k = sels[0].k
    if any(s.k != k for s in sels):
        raise ValueError(f"selections to stack need one row count, got {[s.k for s in sels]}")
    return Selection(
        torch.cat([s.index for s in sels]), torch.cat([s.valid for s in sels]), k, all(s.full for s in sels),
        all(s.all_valid for s in sels),
    )


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``x[b, index[b, j]]``: (B, N, C) x (B, k) -> (B, k, C)."""
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def gather_selected(x: torch.Tensor, sel: Selection) -> torch.Tensor:
    """``gather_rows`` for a selection; free when the selection is every token."""
    return x if sel.full else gather_rows(x, sel.index)


def scatter_rows(x: torch.Tensor, sel: Selection, rows: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """``x`` with its selected valid rows replaced by ``rows`` (B, k, C); padding rows keep ``x``. In place only
    when asked (for a tensor the caller has just made: saves a copy)."""
    if sel.k == 0:
        return x
    if sel.full:
        return rows.to(x.dtype)
    rows = rows.to(x.dtype)
    if not sel.all_valid:
        rows = torch.where(sel.valid.unsqueeze(-1), rows, gather_rows(x, sel.index))
    index = sel.index.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return x.scatter_(1, index, rows) if inplace else x.scatter(1, index, rows)



def selection_mask(sel: Selection, n: int) -> torch.Tensor:
    """The selection's valid tokens as a (frames, N) bool mask."""
    mask = torch.zeros(sel.index.shape[0], n, dtype=torch.bool, device=sel.index.device)
    if sel.k == 0:
        return mask
    return mask.scatter(1, sel.index, sel.valid)
