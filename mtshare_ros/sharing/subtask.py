"""One sub-task stored relative to the base task: compressed encoder weight deltas, own vectors, own head.

Layout, by the names of the base encoder's parameters (``blocks.0.attn.qkv.weight`` ...):

* every encoder parameter with two or more dimensions (patch embedding, positional embedding, the four
  linear layers of each block) is stored as a ``Delta`` against the base weight;
* every one-dimensional encoder parameter (LayerNorm scales/shifts, biases, layer scales) is stored
  whole: they are a few thousand numbers and the engine needs them per task anyway;
* the task head (``DenseHead``) is stored whole: it is small and shares nothing with the base head. It may
  be narrower than the base's (``head_channels``): a sub-task head reads the base's features, and the
  heads are a large part of what a frame costs beyond the base task.

``start_layer`` > 0 says that the embedding and blocks ``0 .. start_layer - 1`` are the base's, exactly:
nothing is stored for them and the engine hands the base's activations over at ``start_layer`` without
comparing or recomputing a token. The method's early layers change least between tasks; sharing them
outright costs no accuracy that a threshold would not also give away, and saves the comparisons.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.vit import DenseHead, DenseViT, ModelConfig
from mtshare_ros.sharing.deltas import Delta, build_delta, compress
from mtshare_ros.tasks import task_spec


def _key(name: str) -> str:
    return name.replace(".", "__")


def matrix_view(name: str, p: torch.Tensor) -> torch.Tensor:
    """The ``(out, in)`` matrix a parameter is compressed as (positional embedding: ``(tokens, channels)``)."""
    if name == "pos_embed":
        return p.reshape(-1, p.shape[-1])
    return p.reshape(p.shape[0], -1)


def owned(name: str, start_layer: int) -> bool:
    """Whether a sub-task starting at block ``start_layer`` stores its own version of encoder parameter ``name``."""
    if start_layer == 0:
        return True
    m = re.match(r"blocks\.(\d+)\.", name)
    if m:
        return int(m.group(1)) >= start_layer
    return name.startswith("norm.")  # the final LayerNorm; embedding parameters are the base's


def shared_prefix(base: DenseViT, sub: DenseViT) -> int:
    """How many leading blocks (the embedding with them) ``sub`` shares exactly with ``base``: where its sub-task
    can start, since the base's activations up to there are its own. ``depth`` when the whole encoder, final
    LayerNorm included, is the base's; ``depth - 1`` when only that LayerNorm differs (the engine applies a
    sub-task's own final norm to the blocks it runs)."""
    base_p = dict(base.encoder.named_parameters())
    differs = [n for n, p in sub.encoder.named_parameters() if not torch.equal(p, base_p[n])]
    depth = len(sub.encoder.blocks)
    blocks = [re.match(r"blocks\.(\d+)\.", n) for n in differs]
    if any(m is None and not n.startswith("norm.") for m, n in zip(blocks, differs, strict=True)):
        return 0  # the embedding differs
    start = min((int(m.group(1)) for m in blocks if m), default=depth)
    return min(start, depth - 1) if any(n.startswith("norm.") for n in differs) else start


class SubTaskDelta(nn.Module):
    """A sub-task as ``base + delta``; needs its base model (``SharedMultiTaskModel``) to run."""

    def __init__(
        self,
        task: str,
        cfg: ModelConfig,
        deltas: dict[str, Delta],
        vectors: dict[str, torch.Tensor],
        start_layer: int = 0,
        head_channels: int | None = None,
    ) -> None:
        super().__init__()
        spec = task_spec(task)  # an unknown task is refused here, with the known ones
        if not 0 <= start_layer <= cfg.depth:
            raise ValueError(f"start_layer {start_layer} outside 0..{cfg.depth}")
        self.task = task
        self.cfg = cfg
        self.start_layer = int(start_layer)
        self.head_channels = int(head_channels or cfg.head_channels)
        self.deltas = nn.ModuleDict({_key(n): d for n, d in deltas.items()})
        self.vectors = nn.ParameterDict({_key(n): nn.Parameter(v.detach().clone()) for n, v in vectors.items()})
        head_cfg = dataclasses.replace(cfg, head_channels=self.head_channels)
        self.head = DenseHead(head_cfg, task, spec.out_channels(cfg.num_classes))

    def delta(self, name: str) -> Delta:
        """Delta of the encoder parameter ``name`` (base naming, e.g. ``blocks.0.mlp.fc1.weight``)."""
        return self.deltas[_key(name)]

    def vector(self, name: str) -> torch.Tensor:
        """The sub-task's own value of the one-dimensional encoder parameter ``name``."""
        return self.vectors[_key(name)]

    def has_vector(self, name: str) -> bool:
        return _key(name) in self.vectors

    @classmethod
    def from_dense(cls, base: DenseViT, sub: DenseViT, kind: str = "lowrank", **compress_args: Any) -> SubTaskDelta:
        """Extract ``dW = W_sub - W_base`` from two dense models and compress it (``compress`` arguments). The
        sub-task starts at the first block whose weights differ from the base's (``shared_prefix``): a multi-task
        model's task, whose encoder is the base's, recomputes nothing and costs its head alone."""
        if base.cfg != sub.cfg:
            raise ValueError(f"sub-task {sub.task!r} has another architecture than the base: {sub.cfg} vs {base.cfg}")
        base_p = dict(base.encoder.named_parameters())
        start = shared_prefix(base, sub)
        deltas, vectors = {}, {}
        for name, p in sub.encoder.named_parameters():
            if not owned(name, start):
                continue
            if p.ndim >= 2:
                dw = matrix_view(name, p.detach()) - matrix_view(name, base_p[name].detach())
                deltas[name] = compress(dw, kind, shape=tuple(p.shape), **compress_args)
            else:
                vectors[name] = p.detach()
        st = cls(sub.task, sub.cfg, deltas, vectors, start_layer=start)
        st.head.load_state_dict(copy.deepcopy(sub.head.state_dict()))
        return st.to(next(base.parameters()).device)

    def spec(self) -> dict[str, Any]:
        """Structure of every delta (to rebuild the module before ``load_state_dict``)."""
        return {
            "task": self.task,
            "start_layer": self.start_layer,
            "head_channels": self.head_channels,
            "deltas": {n.replace("__", "."): d.spec() for n, d in self.deltas.items()},
            "vectors": {n.replace("__", "."): list(v.shape) for n, v in self.vectors.items()},
        }

    @classmethod
    def from_spec(cls, cfg: ModelConfig, spec: dict[str, Any]) -> SubTaskDelta:
        """An empty sub-task with the structure of ``spec``; load its ``state_dict`` next."""
        deltas = {n: build_delta(s) for n, s in spec["deltas"].items()}
        vectors = {n: torch.zeros(shape) for n, shape in spec["vectors"].items()}
        return cls(spec["task"], cfg, deltas, vectors, spec.get("start_layer", 0), spec.get("head_channels"))

    @torch.no_grad()
    def to_dense_model(self, base: DenseViT) -> DenseViT:
        """The dense single-task model this sub-task stands for: ``W_base + dW`` (with ``dW`` as compressed)."""
        cfg = dataclasses.replace(self.cfg, head_channels=self.head_channels)
        model = DenseViT(cfg, self.task).to(next(base.parameters()).device)
        own = dict(model.encoder.named_parameters())
        for name, p in base.encoder.named_parameters():
            if not owned(name, self.start_layer):
                own[name].copy_(p)
            elif p.ndim >= 2:
                w = matrix_view(name, p) + self.delta(name).dense().to(p)
                own[name].copy_(w.reshape(p.shape))
            else:
                own[name].copy_(self.vector(name))
        model.head.load_state_dict(self.head.state_dict())
        return model.eval()

    def storage(self) -> dict[str, int]:
        """Stored values and bytes: deltas (values + indices), vectors and head."""
        delta_values = sum(d.stored_values() for d in self.deltas.values())
        delta_bytes = sum(d.stored_bytes() for d in self.deltas.values())
        vec = sum(v.numel() for v in self.vectors.values())
        head = sum(p.numel() for p in self.head.parameters())
        elt = next(self.head.parameters()).element_size()
        return {
            "delta_values": delta_values,
            "delta_bytes": delta_bytes,
            "vector_values": vec,
            "head_values": head,
            "values": delta_values + vec + head,
            "bytes": delta_bytes + (vec + head) * elt,
        }
