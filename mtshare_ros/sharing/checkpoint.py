"""Shared checkpoints: base weights + compressed sub-task deltas + heads, and sub-task delta files.

Two kinds, one format (``mtshare_ros.shared_checkpoint``):

* ``kind: "shared"``: everything needed to run ``SharedMultiTaskModel``: the base model's weights, and
  per sub-task the structure and values of its deltas, its own vectors and its head;
* ``kind: "subtask"``: one sub-task's deltas alone, with the fingerprint of the base it was made
  against. It cannot run by itself: ``load_shared`` rejects it, ``attach_subtask`` adds it to a shared
  model only if that model's base has the same fingerprint (a delta on another base is garbage).

Plain dense checkpoints (``mtshare_ros.checkpoint``) run in the engine through ``sharing/loader.py``, the one
loader every caller uses.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from mtshare_ros.models.checkpoint import CHECKPOINT_FORMAT, CheckpointError, check_state_dict, read_envelope
from mtshare_ros.models.vit import DenseViT, ModelConfig
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.subtask import SubTaskDelta

SHARED_FORMAT = "mtshare_ros.shared_checkpoint"
SHARED_VERSION = 1


class SharedCheckpointError(CheckpointError):
    """A shared or sub-task checkpoint that cannot be used here; the message says why."""


def base_fingerprint(base: DenseViT) -> str:
    """SHA-256 over the base model's tensors (as float32, sorted by name): identifies the base of a delta."""
    h = hashlib.sha256()
    for name, t in sorted(base.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _state(module: torch.nn.Module, half: bool) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    return {k: v.half() if half and v.is_floating_point() else v for k, v in sd.items()}


def _float(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _read(path: str | Path) -> tuple[Path, dict[str, Any]]:
    p, ckpt = read_envelope(path, SHARED_FORMAT, SHARED_VERSION, SharedCheckpointError)
    if ckpt.get("format") == CHECKPOINT_FORMAT:
        raise SharedCheckpointError(
            f"{p}: a dense checkpoint of independent models (tasks {ckpt.get('tasks')}), not a shared one; "
            "mtshare_ros.sharing.loader.load_models runs it (the engine then uses exact deltas)"
        )
    if ckpt.get("format") != SHARED_FORMAT:
        raise SharedCheckpointError(f"{p}: not a shared checkpoint (expected format {SHARED_FORMAT!r})")
    return p, ckpt


def _subtask_from(entry: dict[str, Any], cfg: ModelConfig, where: str) -> SubTaskDelta:
    try:
        st = SubTaskDelta.from_spec(cfg, entry["spec"])
    except (KeyError, ValueError, TypeError) as exc:
        raise SharedCheckpointError(f"{where}: bad sub-task structure ({exc})") from exc
    state = _float(entry["state"])
    check_state_dict(st, state, where)
    st.load_state_dict(state)
    return st


def save_shared(
    path: str | Path,
    model: SharedMultiTaskModel,
    class_names: list[str] | tuple[str, ...],
    provenance: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a ``shared`` checkpoint; ``half`` stores float tensors as fp16."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base_state = _state(model.base, half)
    probe = DenseViT(model.cfg, model.base.task)
    probe.load_state_dict(_float(base_state))
    torch.save(
        {
            "format": SHARED_FORMAT,
            "version": SHARED_VERSION,
            "kind": "shared",
            "model_config": model.cfg.to_dict(),
            "base_task": model.base.task,
            "tasks": model.tasks,
            "class_names": list(class_names),
            "provenance": provenance or {},
            "base_fingerprint": base_fingerprint(probe),
            "base": base_state,
            "subtasks": {t: {"spec": st.spec(), "state": _state(st, half)} for t, st in model.subtasks.items()},
        },
        path,
    )
    return path


def save_subtask(
    path: str | Path, model: SharedMultiTaskModel, task: str, provenance: dict | None = None, half: bool = False
) -> Path:
    """Write one sub-task's deltas alone (``kind: "subtask"``), tied to the fingerprint of ``model.base``;
    ``half`` stores its float tensors as fp16 (the base is not in the file, so its precision is unchanged)."""
    if task not in model.subtasks:
        raise ValueError(f"no sub-task {task!r} in this shared model; it has {list(model.subtasks)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    st = model.subtasks[task]
    torch.save(
        {
            "format": SHARED_FORMAT,
            "version": SHARED_VERSION,
            "kind": "subtask",
            "model_config": model.cfg.to_dict(),
            "task": task,
            "base_task": model.base.task,
            "base_fingerprint": base_fingerprint(model.base),
            "provenance": provenance or {},
            "subtask": {"spec": st.spec(), "state": _state(st, half)},
        },
        path,
    )
    return path


def load_shared(path: str | Path) -> tuple[SharedMultiTaskModel, dict[str, Any]]:
    """Load a ``shared`` checkpoint (fp32, CPU, eval mode); returns (model, metadata without weights)."""
    p, ckpt = _read(path)
    if ckpt.get("kind") == "subtask":
        raise SharedCheckpointError(
            f"{p}: a sub-task delta file for task {ckpt.get('task')!r}, stored relative to base model "
            f"{ckpt.get('base_fingerprint')} ({ckpt.get('base_task')}); it holds only weight differences and "
            "cannot run without that base: load the shared checkpoint it belongs to, then attach_subtask()"
        )
    if ckpt.get("kind") != "shared":
        raise SharedCheckpointError(f"{p}: unknown shared checkpoint kind {ckpt.get('kind')!r}")
    for key in ("model_config", "base_task", "base", "subtasks", "base_fingerprint"):
        if key not in ckpt:
            raise SharedCheckpointError(f"{p}: shared checkpoint lacks {key!r}")
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    base = DenseViT(cfg, ckpt["base_task"])
    state = _float(ckpt["base"])
    check_state_dict(base, state, f"{p} [base {ckpt['base_task']}]")
    base.load_state_dict(state)
    if base_fingerprint(base) != ckpt["base_fingerprint"]:
        raise SharedCheckpointError(f"{p}: base weights do not match their stored fingerprint (corrupt file?)")
    subs = {t: _subtask_from(e, cfg, f"{p} [sub-task {t}]") for t, e in ckpt["subtasks"].items()}
    model = SharedMultiTaskModel(base, subs).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("base", "subtasks")}
    meta["model_config"] = cfg
    return model, meta


def attach_subtask(model: SharedMultiTaskModel, path: str | Path) -> str:
    """Add the sub-task stored in a ``subtask`` file to ``model``; its base must be ``model.base``."""
    p, ckpt = _read(path)
    if ckpt.get("kind") != "subtask":
        raise SharedCheckpointError(f"{p}: expected a sub-task delta file, got kind {ckpt.get('kind')!r}")
    have = base_fingerprint(model.base)
    if ckpt.get("base_fingerprint") != have:
        raise SharedCheckpointError(
            f"{p}: sub-task {ckpt.get('task')!r} was made against base {ckpt.get('base_fingerprint')}, but this "
            f"model's base is {have}; a delta applied to another base gives meaningless weights"
        )
    cfg = ModelConfig.from_dict(ckpt["model_config"])
    if cfg != model.cfg:
        raise SharedCheckpointError(f"{p}: sub-task architecture {cfg} differs from the model's {model.cfg}")
    st = _subtask_from(ckpt["subtask"], cfg, f"{p} [sub-task {ckpt['task']}]")
    param = next(model.base.parameters())
    model.set_subtask(st.to(param.device, param.dtype).eval())
    return ckpt["task"]


def is_shared_checkpoint(path: str | Path) -> bool:
    """True when ``path`` is a ``shared`` checkpoint (cheap enough for a node's start-up choice)."""
    try:
        _, ckpt = _read(path)
    except SharedCheckpointError:
        return False
    return ckpt.get("kind") == "shared"
