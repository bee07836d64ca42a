"""Parameter and multiply-add counts of a model, measured by running it (not from a formula)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_gmacs(model: nn.Module, size: tuple[int, int]) -> float:
    """Multiply-adds (x1e9) of one forward pass on a (1, 3, H, W) input, from the executed operators."""
    param = next(model.parameters())
    x = torch.zeros(1, 3, *size, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    with counter:
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9
