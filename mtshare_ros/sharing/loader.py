"""The one way to load a checkpoint: the node (through the predictor), ``mtshare eval``, the benchmarks and the
trainer all call ``load_models``.

A checkpoint can run two ways, and every caller may want either: the independent dense model per task (what
runs with sharing off, what evaluation and training compare against) and the shared engine (base task in full,
sub-tasks as deltas against it). ``load_models`` gives both from any checkpoint kind:

* a dense checkpoint (independent models, ``independent`` is ``weights/independent.pt``, or a multi-task model,
  ``default`` is ``weights/multitask.pt``): in the engine, the trained sub-task delta files beside it,
  ``<stem>_<task>.pt`` (``weights/multitask_depth.pt``), where they were made for its segmentation model, else
  exact (uncompressed) deltas, so token skipping works on any checkpoint; only trained deltas also save storage
  and keep accuracy when tokens are skipped. A newly trained set (dense models and sub-tasks written side by
  side, as ``scripts/train_v3.sh`` does) runs as the shipped one does;
* a shared checkpoint (base + deltas): the engine as stored; its dense sub-task models are ``W_base + dW``.

A multi-task checkpoint (one encoder trained for every task, ``train.shared_encoder``) has equal encoders: its
exact deltas are zero, so a task without a trained sub-task file never differs from the base and runs as the
multi-task model runs it, one encoder pass and its head; a task with one recomputes the tokens its deltas
change, on top of what the multi-task model gives.

Task sharing off means the dense models, also where the engine runs with it off (temporal sharing runs in the
engine): ``LoadedModels.engine(sharing=False)`` is the engine of exact deltas, whose sub-tasks are the dense
models on every token (a multi-task checkpoint's own heads; an independent checkpoint's models), not the trained
sub-task files run in full, which were trained to recompute a few tokens and are worse on all of them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.checkpoint import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    checkpoint_shares_encoder,
    load_checkpoint,
    resolve_checkpoint,
)
from mtshare_ros.models.vit import ModelConfig
from mtshare_ros.sharing.checkpoint import (
    SharedCheckpointError,
    attach_subtask,
    base_fingerprint,
    is_shared_checkpoint,
    load_shared,
)
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.tasks import BASE_TASK, BUILTIN_TASKS

log = logging.getLogger(__name__)

SUBTASKS = tuple(t for t in BUILTIN_TASKS if t != BASE_TASK)
"""The built-in sub-tasks, whose trained delta files may ship beside a checkpoint."""
MULTITASK_SOURCE = "one encoder shared by every task (a multi-task checkpoint: zero deltas, nothing recomputed)"


def subtask_files(checkpoint: Path) -> dict[str, Path]:
    """Where the trained sub-task delta files of a dense checkpoint lie: ``<stem>_<task>.pt`` beside it."""
    return {task: checkpoint.with_name(f"{checkpoint.stem}_{task}.pt") for task in SUBTASKS}


@dataclass
class LoadedModels:
    """A checkpoint, ready to run: ``dense`` per task, ``shared`` (None without a base task plus sub-tasks),
    ``meta`` (model_config, class_names, provenance, ...) and ``sharing_source``: what the engine's deltas are."""

    dense: nn.ModuleDict
    shared: SharedMultiTaskModel | None
    meta: dict[str, Any]
    sharing_source: str = "none"
    path: Path = field(default=DEFAULT_CHECKPOINT)
    # with trained sub-task files attached, the engine of exact deltas (``engine(sharing=False)``), built when
    # first asked; None while ``shared`` is itself exact
    _exact: SharedMultiTaskModel | None = field(default=None, repr=False)
    _exact_differs: bool = False

    @property
    def cfg(self) -> ModelConfig:
        return self.meta["model_config"]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.dense.keys())

    def engine(self, sharing: bool = True) -> SharedMultiTaskModel | None:
        """The engine a frame runs with task sharing on (``shared``) or off: the sub-tasks as the dense models,
        every token (exact deltas on ``shared``'s base module, built on the base's device the first time)."""
        if sharing or not self._exact_differs:
            return self.shared
        if self._exact is None:
            subs = {t: m for t, m in self.dense.items() if t != BASE_TASK}
            self._exact = SharedMultiTaskModel.from_dense(self.shared.base, subs, delta="dense").eval()
            self._exact.to(next(self.shared.base.parameters()).device)
        return self._exact

    def engines(self) -> list[SharedMultiTaskModel]:
        """The engines built so far (to move them between devices, to clear their caches)."""
        return [e for e in (self.shared, self._exact) if e is not None]


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
    # a multi-task checkpoint's tasks hold one encoder object, so that the dense path runs it once for every head
    dense, meta = load_checkpoint(path, cfg, tasks, shared_encoder=None)
    loaded = LoadedModels(dense, None, meta, "none", path)
    if not shared or BASE_TASK not in dense or len(dense) == 1:
        return loaded
    subs = {t: m for t, m in dense.items() if t != BASE_TASK}
    loaded.shared = SharedMultiTaskModel.from_dense(dense[BASE_TASK], subs, delta="dense").eval()
    loaded.sharing_source = (
        MULTITASK_SOURCE if checkpoint_shares_encoder(meta) else "exact deltas from the independent models"
    )
    attached = _attach_subtask_files(loaded.shared, subtask_files(path))
    if attached:
        loaded._exact_differs = True
        where = f"{path.parent.name}/{path.stem}_<task>.pt"
        loaded.sharing_source = f"trained sub-task deltas ({', '.join(attached)}) from {where}"
        rest = [t for t in subs if t not in attached]
        if rest and checkpoint_shares_encoder(meta):
            loaded.sharing_source += f"; {', '.join(rest)}: the multi-task model's own head on the base encoder"
    return loaded


def _attach_subtask_files(shared: SharedMultiTaskModel, files: dict[str, Path]) -> list[str]:
    """Replace the exact deltas of ``shared`` by the trained ones of ``files`` where they fit its base."""
    attached = []
    for task, file in files.items():
        if task not in shared.subtasks or not file.is_file():
            continue
        try:
            attach_subtask(shared, file)
            attached.append(task)
        except SharedCheckpointError as exc:
            log.warning("sub-task file %s not used (%s); running exact deltas instead", file.name, exc)
    return attached


def describe_checkpoint(checkpoint: str) -> str:
    """One line for people: which weights a checkpoint name resolves to and how they were made."""
    path = resolve_checkpoint(checkpoint)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    prov = ckpt.get("provenance", {}) if isinstance(ckpt, dict) else {}
    what = ", ".join(f"{k}={prov[k]}" for k in ("dataset", "steps", "command") if k in prov)
    kind = ckpt.get("kind", "independent models") if isinstance(ckpt, dict) else "?"
    if kind == "independent models" and checkpoint_shares_encoder(ckpt):
        kind = "multi-task model: one encoder shared by every task"
    line = f"{path} [{kind}] ({what or 'no provenance recorded'})"
    if kind != "shared":
        fits, other = _fitting_subtasks(path)
        if fits:
            line += f" + trained sub-task deltas for the shared engine: {', '.join(fits)}"
        if other:
            line += f" (not used, made for another base: {', '.join(other)})"
    return line


def _fitting_subtasks(path: Path) -> tuple[list[str], list[str]]:
    """Names of the sub-task files beside ``path`` that fit its base (same fingerprint), and of those that do not."""
    files = [f for f in subtask_files(path).values() if f.is_file()]
    if not files:
        return [], []
    try:
        base = load_checkpoint(path, tasks=[BASE_TASK])[0][BASE_TASK]
    except CheckpointError:  # no base task: nothing to attach to, said as "not used"
        return [], [f.name for f in files]
    have = base_fingerprint(base)
    fits, other = [], []
    for file in files:
        made_for = torch.load(file, map_location="cpu", weights_only=True).get("base_fingerprint")
        (fits if made_for == have else other).append(file.name)
    return fits, other
