"""Choosing the torch device by name, the same way for the node, evaluation, training and benchmarks."""

from __future__ import annotations

import torch


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` / ``cuda:N`` fail clearly when it is not.

    Failing instead of falling back is deliberate for an explicit ``cuda``: a robot configured for a GPU
    that silently runs on the CPU misses its frame rate with no hint why.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return dev
