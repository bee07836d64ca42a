"""The one way to load a checkpoint: the node (through the predictor), ``mtshare eval``, the benchmarks and the
trainer all call ``load_models``.

A checkpoint can run two ways, and every caller may want either: the independent dense model per task (what
runs with sharing off, what evaluation and training compare against) and the shared engine (base task in full,
sub-tasks as deltas against it). ``load_models`` gives both from any checkpoint kind:

* ``default``: the independent models of ``weights/default.pt`` and, in the engine, the trained sub-task delta
  files ``weights/default_<task>.pt`` where they were made for its segmentation model (else exact deltas);
* a shared checkpoint (base + deltas): the engine as stored; its dense sub-task models are ``W_base + dW``;
* a dense checkpoint of independent models: the engine with exact (uncompressed) deltas, so token skipping
  works on any checkpoint; only trained deltas also save storage and keep accuracy when tokens are skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, resolve_checkpoint
from mtshare_ros.models.vit import ModelConfig
from mtshare_ros.sharing.checkpoint import (
    SharedCheckpointError,
    attach_subtask,
    base_fingerprint,
    is_shared_checkpoint,
    load_shared,
)
from mtshare_ros.sharing.engine import SharedMultiTaskModel

log = logging.getLogger(__name__)

BASE_TASK = "segmentation"
"""The task that runs in full; depth and normals are its sub-tasks (the method's choice: segmentation's
features are the most general of the three)."""
DEFAULT_SUBTASKS = {task: DEFAULT_CHECKPOINT.with_name(f"default_{task}.pt") for task in ("depth", "normals")}
"""Shipped sub-task delta files (``kind: subtask``) against the segmentation model of ``DEFAULT_CHECKPOINT``."""


@dataclass
class LoadedModels:
    """A checkpoint, ready to run: ``dense`` per task, ``shared`` (None without a base task plus sub-tasks),
    ``meta`` (model_config, class_names, provenance, ...) and ``sharing_source``: what the engine's deltas are."""

    dense: nn.ModuleDict
    shared: SharedMultiTaskModel | None
    meta: dict[str, Any]
    sharing_source: str = "none"
    path: Path = field(default=DEFAULT_CHECKPOINT)

    @property
    def cfg(self) -> ModelConfig:
        return self.meta["model_config"]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.dense.keys())


def load_models(
    checkpoint: str | Path = "default",
    tasks: list[str] | None = None,
    cfg: ModelConfig | None = None,
    shared: bool = True,
) -> LoadedModels:
    """Load ``checkpoint`` (``default`` or a path; see the module docstring). ``tasks`` / ``cfg``: what the caller
    expects (a checkpoint without those tasks or of another architecture is refused, naming what differs).
    ``shared=False`` skips building the engine (training, evaluation of the independent models)."""
    path = resolve_checkpoint(checkpoint)
    if is_shared_checkpoint(path):
        engine, meta = load_shared(path)
        if cfg is not None and cfg != engine.cfg:
            raise SharedCheckpointError(f"{path}: model config {engine.cfg} differs from the expected {cfg}")
        dense = nn.ModuleDict({engine.base.task: engine.base})
        for task, st in engine.subtasks.items():
            dense[task] = st.to_dense_model(engine.base).eval()
        if tasks is not None:
            absent = [t for t in tasks if t not in dense]
            if absent:
                raise SharedCheckpointError(f"{path}: no task(s) {absent}; it has {list(dense)}")
            dense = nn.ModuleDict({t: dense[t] for t in tasks})
        return LoadedModels(dense, engine if shared else None, meta, "shared checkpoint", path)
    dense, meta = load_checkpoint(path, cfg, tasks)
    loaded = LoadedModels(dense, None, meta, "none", path)
    if not shared or BASE_TASK not in dense or len(dense) == 1:
        return loaded
    subs = {t: m for t, m in dense.items() if t != BASE_TASK}
    loaded.shared = SharedMultiTaskModel.from_dense(dense[BASE_TASK], subs, delta="dense").eval()
    loaded.sharing_source = "exact deltas from the independent models"
    if str(checkpoint) == "default":
        attached = _attach_default_subtasks(loaded.shared)
        if attached:
            loaded.sharing_source = f"trained sub-task deltas ({', '.join(attached)}) from weights/default_<task>.pt"
    return loaded


def _attach_default_subtasks(shared: SharedMultiTaskModel) -> list[str]:
    """Replace the exact deltas of ``shared`` by the shipped trained ones where they fit its base."""
    attached = []
    for task, file in DEFAULT_SUBTASKS.items():
        if task not in shared.subtasks or not file.is_file():
            continue
        try:
            attach_subtask(shared, file)
            attached.append(task)
        except SharedCheckpointError as exc:
            log.warning("shipped sub-task %s not used (%s); running exact deltas instead", task, exc)
    return attached


def describe_checkpoint(checkpoint: str) -> str:
    """One line for people: which weights a checkpoint name resolves to and how they were made."""
    path = resolve_checkpoint(checkpoint)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    prov = ckpt.get("provenance", {}) if isinstance(ckpt, dict) else {}
    what = ", ".join(f"{k}={prov[k]}" for k in ("dataset", "steps", "command") if k in prov)
    kind = ckpt.get("kind", "independent models") if isinstance(ckpt, dict) else "?"
    line = f"{path} [{kind}] ({what or 'no provenance recorded'})"
    if checkpoint == "default":
        fits, other = _shipped_subtasks()
        if fits:
            line += f" + trained sub-task deltas for the shared engine: {', '.join(fits)}"
        if other:
            line += f" (not used, made for another base: {', '.join(other)})"
    return line


def _shipped_subtasks() -> tuple[list[str], list[str]]:
    """Names of the shipped sub-task files that fit the shipped base (same fingerprint), and of those that do not."""
    base = load_checkpoint(DEFAULT_CHECKPOINT, tasks=[BASE_TASK])[0][BASE_TASK]
    have = base_fingerprint(base)
    fits, other = [], []
    for file in DEFAULT_SUBTASKS.values():
        if file.is_file():
            made_for = torch.load(file, map_location="cpu", weights_only=True).get("base_fingerprint")
            (fits if made_for == have else other).append(file.name)
    return fits, other
