"""Parameter and multiply-add counts of a model, and its forward time."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from mtshare_ros.models.vit import DenseViT
from mtshare_ros.sharing.cost import dense_model_macs


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gmacs(model: DenseViT, size: tuple[int, int]) -> float:
    """Multiply-adds (x1e9) of one forward pass on a (1, 3, H, W) input, by the engine's counting rules
    (``sharing/cost.py``: the same on every torch version, and comparable with the shared engine's counts)."""
    return dense_model_macs(model, size) / 1e9


@torch.inference_mode()
def time_forward(model: nn.Module, size: tuple[int, int], runs: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median and p90 wall time (ms) of one forward pass on a (1, 3, H, W) input, after ``warmup`` runs."""
    param = next(model.parameters())
    x = torch.randn(1, 3, *size, device=param.device, dtype=param.dtype)
    model.eval()
    times = []
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        model(x)
        if param.device.type == "cuda":
            torch.cuda.synchronize(param.device)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))]}
