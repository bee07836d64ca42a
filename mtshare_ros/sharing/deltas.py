"""Compressed weight deltas ``dW = W_sub - W_base`` of one weight matrix, one class per structure.

Why several: the storage of a sub-task is the storage of its deltas, and only some structures also
save time. Two families:

* *additive* deltas (``fused = False``): the engine multiplies the rows of all sub-tasks by the shared
  base weight in one matrix product and adds ``delta.apply(rows)`` per task. Worth it when the delta
  term is cheap: low rank (``r * (in + out)`` MACs per row) or a few output rows (``k * in``).
* *fused* deltas (``fused = True``): the engine materialises ``W_base + dW`` and runs that task's rows
  through its own dense product. Unstructured sparsity saves storage only: a dense matmul does not get
  faster when some of its weights are zero, and sparse kernels at these sizes are slower than dense
  ones (see bench/sharing_measure.py, "delta structures").

Every delta is an ``nn.Module`` whose tensors are parameters (trainable by the sharing training steps)
or buffers (fixed index patterns), so ``.to(device, dtype)`` and ``state_dict()`` just work.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

DELTA_KINDS = ("zero", "dense", "sparse", "lowrank", "rows")


class Delta(nn.Module):
    """``dW`` of an ``(out_features, in_features)`` matrix; ``shape`` is the parameter's own shape."""

    kind = "abstract"
    fused = False

    def __init__(self, out_features: int, in_features: int, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.out_features = out_features
        self.in_features = in_features
        self.shape = tuple(shape)

    def dense(self) -> torch.Tensor:
        """``dW`` as a dense ``(out, in)`` matrix."""
        raise NotImplementedError

    def apply(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x @ dW.T`` for rows ``x`` (..., in); ``None`` when the delta is exactly zero."""
        raise NotImplementedError

    def add_to(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``y + x @ dW.T`` as a new tensor (subclasses fuse the addition into their product)."""
        extra = self.apply(x)
        return y.clone() if extra is None else y + extra

    def apply_macs(self, rows: int) -> int:
        """Multiply-adds of ``apply`` on ``rows`` rows (0 for fused deltas: they run in the fused product)."""
        raise NotImplementedError

    def dense_macs(self) -> int:
        """Multiply-adds of ``dense()`` (only low rank multiplies to rebuild the matrix)."""
        return 0

    def stored_values(self) -> int:
        """Number of stored weight values (indices not included)."""
        return sum(p.numel() for p in self.parameters())

    def stored_bytes(self) -> int:
        """Bytes of everything stored: values and index buffers."""
        return sum(t.numel() * t.element_size() for t in list(self.parameters()) + list(self.buffers()))

    def spec(self) -> dict[str, Any]:
        """What ``build_delta`` needs to rebuild an empty delta of this structure before loading its state."""
        return {"kind": self.kind, "out": self.out_features, "in": self.in_features, "shape": list(self.shape)}


class ZeroDelta(Delta):
    """The sub-task shares this weight with the base task exactly."""

    kind = "zero"

    def dense(self) -> torch.Tensor:
        return torch.zeros(self.out_features, self.in_features)

    def apply(self, x: torch.Tensor) -> None:
        return None

    def apply_macs(self, rows: int) -> int:
        return 0


class DenseDelta(Delta):
    """Uncompressed ``dW`` (reference: the storage of a full second model)."""

    kind = "dense"
    fused = True

    def __init__(self, out_features: int, in_features: int, shape: tuple[int, ...]) -> None:
        super().__init__(out_features, in_features, shape)
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))

    def dense(self) -> torch.Tensor:
        return self.weight

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.t()

    def apply_macs(self, rows: int) -> int:
        return 0


class SparseDelta(Delta):
    """Unstructured sparse ``dW``: flat indices (int32) of the kept entries and their values."""

    kind = "sparse"
    fused = True

    def __init__(self, out_features: int, in_features: int, shape: tuple[int, ...], nnz: int) -> None:
        super().__init__(out_features, in_features, shape)
        self.register_buffer("index", torch.zeros(nnz, dtype=torch.int32))
        self.values = nn.Parameter(torch.zeros(nnz))

    def dense(self) -> torch.Tensor:
        flat = self.values.new_zeros(self.out_features * self.in_features)
        flat = flat.index_put((self.index.long(),), self.values)
        return flat.view(self.out_features, self.in_features)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.dense().t()

    def apply_macs(self, rows: int) -> int:
        return 0

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "nnz": int(self.values.numel())}


class LowRankDelta(Delta):
    """``dW = B @ A`` with ``A`` (rank, in) and ``B`` (out, rank): two thin products per row."""

    kind = "lowrank"

    def __init__(self, out_features: int, in_features: int, shape: tuple[int, ...], rank: int) -> None:
        super().__init__(out_features, in_features, shape)
        self.a = nn.Parameter(torch.zeros(rank, in_features))
        self.b = nn.Parameter(torch.zeros(out_features, rank))

    @property
    def rank(self) -> int:
        return self.a.shape[0]

    def dense(self) -> torch.Tensor:
        return self.b @ self.a

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x @ self.a.t()) @ self.b.t()

    def add_to(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        xa = (x @ self.a.t()).reshape(-1, self.rank)
        return torch.addmm(y.reshape(-1, self.out_features), xa, self.b.t()).view(y.shape)

    def dense_macs(self) -> int:
        return self.out_features * self.rank * self.in_features

    def apply_macs(self, rows: int) -> int:
        return rows * self.rank * (self.in_features + self.out_features)

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "rank": self.rank}


class RowDelta(Delta):
    """``dW`` non-zero on a few whole output rows: one ``(rows, k)`` product scattered into k outputs."""

    kind = "rows"

    def __init__(self, out_features: int, in_features: int, shape: tuple[int, ...], k: int) -> None:
        super().__init__(out_features, in_features, shape)
        self.register_buffer("rows", torch.zeros(k, dtype=torch.long))
        self.values = nn.Parameter(torch.zeros(k, in_features))

    def dense(self) -> torch.Tensor:
        return self.values.new_zeros(self.out_features, self.in_features).index_copy(0, self.rows, self.values)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        part = x @ self.values.t()
        out = part.new_zeros(*x.shape[:-1], self.out_features)
        return out.index_copy(-1, self.rows, part)

    def apply_macs(self, rows: int) -> int:
        return rows * self.values.shape[0] * self.in_features

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "k": int(self.rows.numel())}


def build_delta(spec: dict[str, Any]) -> Delta:
    """An empty delta of the structure ``spec`` describes (from ``Delta.spec``), ready for ``load_state_dict``."""
    kind = spec.get("kind")
    args = (int(spec["out"]), int(spec["in"]), tuple(spec["shape"]))
    if kind == "zero":
        return ZeroDelta(*args)
    if kind == "dense":
        return DenseDelta(*args)
    if kind == "sparse":
        return SparseDelta(*args, nnz=int(spec["nnz"]))
    if kind == "lowrank":
        return LowRankDelta(*args, rank=int(spec["rank"]))
    if kind == "rows":
        return RowDelta(*args, k=int(spec["k"]))
    raise ValueError(f"unknown delta kind {kind!r}; known: {DELTA_KINDS}")


@torch.no_grad()
def compress(
    dw: torch.Tensor,
    kind: str,
    shape: tuple[int, ...] | None = None,
    rank: int = 16,
    density: float = 0.1,
    row_fraction: float = 0.1,
) -> Delta:
    """Compress a dense ``(out, in)`` delta into ``kind``.

    ``lowrank`` keeps the top ``rank`` singular directions (best rank-r approximation), ``sparse`` the
    ``density`` fraction of largest-magnitude entries, ``rows`` the ``row_fraction`` of output rows with
    the largest L2 norm. A delta that is exactly zero becomes ``zero`` whatever ``kind`` asks.
    """
    if dw.ndim != 2:
        raise ValueError(f"delta must be a (out, in) matrix, got shape {tuple(dw.shape)}")
    out_f, in_f = dw.shape
    shape = tuple(shape or dw.shape)
    dw = dw.detach().float().cpu()
    if kind == "zero" or not bool(dw.any()):
        return ZeroDelta(out_f, in_f, shape)
    if kind == "dense":
        d = DenseDelta(out_f, in_f, shape)
        d.weight.copy_(dw)
        return d
    if kind == "sparse":
        if not 0.0 < density <= 1.0:
            raise ValueError(f"sparse delta density must be in (0, 1], got {density}")
        nnz = max(1, int(round(density * dw.numel())))
        idx = dw.flatten().abs().topk(nnz).indices.sort().values
        d = SparseDelta(out_f, in_f, shape, nnz)
        d.index.copy_(idx.int())
        d.values.copy_(dw.flatten()[idx])
        return d
    if kind == "lowrank":
        if rank < 1:
            raise ValueError(f"low-rank delta rank must be >= 1, got {rank}")
        r = min(rank, out_f, in_f)
        u, s, vh = torch.linalg.svd(dw.double(), full_matrices=False)
        d = LowRankDelta(out_f, in_f, shape, r)
        root = s[:r].sqrt()
        d.b.copy_((u[:, :r] * root).float())
        d.a.copy_((root[:, None] * vh[:r]).float())
        return d
    if kind == "rows":
        if not 0.0 < row_fraction <= 1.0:
            raise ValueError(f"row delta fraction must be in (0, 1], got {row_fraction}")
        k = max(1, int(math.ceil(row_fraction * out_f)))
        rows = dw.norm(dim=1).topk(k).indices.sort().values
        d = RowDelta(out_f, in_f, shape, k)
        d.rows.copy_(rows)
        d.values.copy_(dw[rows])
        return d
    raise ValueError(f"unknown delta kind {kind!r}; known: {DELTA_KINDS}")
