"""An operator-level multiply-add count that the tests own: every matrix product, convolution and attention
call that Python code makes, counted from its operands' shapes.

Why not ``torch.utils.flop_counter``: it counts the operators torch dispatches to, and which those are (and how
they are counted) changes between torch releases (2.13 and 2.14 differ by 1.7% on the same engine run). This
counter sits at the Python API (``TorchFunctionMode``), above any decomposition, with formulas written here, so
it gives the same number on every torch version the requirements allow.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def _matmul_macs(a: torch.Tensor, b: torch.Tensor) -> int:
    """``a @ b`` with broadcasting: output elements times the contracted size."""
    if a.dim() == 1 or b.dim() == 1:
        return a.numel() * (b.shape[-1] if b.dim() > 1 else 1) if a.dim() == 1 else a.numel()
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return math.prod(batch) * a.shape[-2] * a.shape[-1] * b.shape[-1]


class CountMacs(TorchFunctionMode):
    """``with CountMacs() as c: ...`` then ``c.macs``."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.linear:
            x, w = args[0], args[1]
            self.macs += x.numel() // x.shape[-1] * w.numel()
        elif func is F.conv2d:
            self.macs += out.numel() * args[1][0].numel()  # weight (out, in / groups, kh, kw): the fan-in
        elif func in (torch.matmul, torch.Tensor.__matmul__, torch.mm, torch.bmm, torch.Tensor.matmul):
            self.macs += _matmul_macs(args[0], args[1])
        elif func in (torch.addmm, torch.baddbmm):
            self.macs += _matmul_macs(args[1], args[2])
        elif func is F.scaled_dot_product_attention:
            q, k = args[0], args[1]
            self.macs += 2 * q.numel() * k.shape[-2]  # q k^T and attn v: (B, H, Lq, D) x Lk each
        return out
