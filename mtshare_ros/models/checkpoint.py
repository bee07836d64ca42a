"""One versioned checkpoint format for every model the package trains, ships and loads.

A checkpoint is a ``torch.save`` dict: weights per task, the architecture config, the task list, the
class names and the training provenance. Loading checks format, version and every tensor shape and
says what differs, so a checkpoint of another shape never loads half-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.vit import ModelConfig, build_task_models, shared_encoder_of

CHECKPOINT_FORMAT = "mtshare_ros.checkpoint"
CHECKPOINT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MULTITASK_CHECKPOINT = WEIGHTS_DIR / "multitask.pt"
"""The shipped multi-task model (one encoder, three heads). Its trained sub-task files lie beside it
(``multitask_<task>.pt``): the shared engine's base is its segmentation model, so recomputing no token is the
multi-task model and every recomputed token can only add to it (MODELS.md)."""
INDEPENDENT_CHECKPOINT = WEIGHTS_DIR / "independent.pt"
"""The shipped independent single-task models (three encoders), with their own sub-task files
(``independent_<task>.pt``): the accuracy reference, and what the sub-tasks are distilled from."""
DEFAULT_CHECKPOINT = MULTITASK_CHECKPOINT
"""What ``checkpoint: default`` loads: the node's weights."""
SHIPPED_CHECKPOINTS = {
    "default": DEFAULT_CHECKPOINT,
    "multitask": MULTITASK_CHECKPOINT,
    "independent": INDEPENDENT_CHECKPOINT,
}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, of another format/version, or of another shape."""


def save_checkpoint(
    path: str | Path,
    models: nn.ModuleDict,
    cfg: ModelConfig,
    class_names: list[str] | tuple[str, ...],
    provenance: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``models`` (task -> DenseViT) with their config; ``half`` stores float tensors as fp16.

    A multi-task model (one encoder object shared by every task's model, ``build_task_models(...,
    shared_encoder=True)``) keeps the per-task layout, each task with the encoder's weights under its own
    prefix, so that every loader reads it as independent models; ``shared_encoder: true`` at the top level
    records what it is (``checkpoint_shares_encoder``). The file does not grow for it: a tensor that several
    tasks hold is converted (device, fp16) once, and ``torch.save`` writes a storage once however many
    entries point to it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    converted: dict[tuple, torch.Tensor] = {}

    def store(v: torch.Tensor) -> torch.Tensor:
        key = (v.untyped_storage().data_ptr(), v.storage_offset(), tuple(v.shape), tuple(v.stride()), v.dtype,
               str(v.device))
        if key not in converted:
            out = v.detach().cpu()
            converted[key] = out.half() if half and out.is_floating_point() else out
        return converted[key]

    weights = {task: {k: store(v) for k, v in model.state_dict().items()} for task, model in models.items()}
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model_config": cfg.to_dict(),
            "tasks": list(models.keys()),
            "class_names": list(class_names),
            "shared_encoder": shared_encoder_of(models) is not None,
            "provenance": provenance or {},
            "weights": weights,
        },
        path,
    )
    return path


def checkpoint_shares_encoder(ckpt: dict[str, Any] | str | Path) -> bool:
    """Whether a dense checkpoint holds a multi-task model (one encoder trained for every task), not independent
    models. ``ckpt``: the checkpoint dict, the metadata ``load_checkpoint`` returns, or a path (``default`` too).
    Checkpoints from before the flag hold independent models."""
    if not isinstance(ckpt, dict):
        ckpt = read_checkpoint(ckpt)
    return bool(ckpt.get("shared_encoder", False))


def resolve_checkpoint(path: str | Path) -> Path:
    """``default`` / ``multitask`` / ``independent`` -> the weights shipped inside the package; anything else is a
    file path."""
    p = SHIPPED_CHECKPOINTS.get(str(path)) or Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def read_envelope(
    path: str | Path, fmt: str, version: int, error: type[CheckpointError] = CheckpointError
) -> tuple[Path, dict[str, Any]]:
    """Load a checkpoint file and check its envelope (a dict of format ``fmt``, version ``version``).

    The one check every checkpoint kind goes through (dense here, shared in ``sharing/checkpoint.py``), so a
    file of another kind, another version or no torch file at all is refused the same way, with ``error``.
    """
    try:
        p = resolve_checkpoint(path)
    except CheckpointError as exc:
        raise error(str(exc)) from None
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a torch file
        raise error(f"{p}: not a readable torch checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict):
        raise error(f"{p}: not an mtshare_ros checkpoint (expected format {fmt!r})")
    if ckpt.get("format") == fmt and ckpt.get("version") != version:
        raise error(f"{p}: checkpoint version {ckpt.get('version')} but this mtshare_ros reads version {version}")
    return p, ckpt


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a dense checkpoint's envelope (format, version, keys) without building models."""
    p, ckpt = read_envelope(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not an mtshare_ros checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    for key in ("model_config", "tasks", "class_names", "weights"):
        if key not in ckpt:
            raise CheckpointError(f"{p}: checkpoint lacks {key!r}")
    return ckpt


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Raise ``CheckpointError`` naming every missing, unexpected or differently shaped tensor."""
    own = model.state_dict()
    problems = []
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensors (e.g. {', '.join(unexpected[:3])})")
    for k in sorted(set(own) & set(state)):
        if own[k].shape != state[k].shape:
            problems.append(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
    if problems:
        raise CheckpointError(f"{where}: shape mismatch: " + "; ".join(problems[:6]))


def load_checkpoint(
    path: str | Path, cfg: ModelConfig | None = None, tasks: list[str] | None = None,
    shared_encoder: bool | None = False,
) -> tuple[nn.ModuleDict, dict[str, Any]]:
    """Build the checkpoint's models and load their weights (fp32, CPU, eval mode).

    ``cfg`` / ``tasks``, when given, are what the caller expects; a checkpoint that differs is
    rejected with the differing fields named. ``shared_encoder``: build the tasks' models around one encoder
    object, so that ``run_tasks`` runs it once (a multi-task checkpoint as it was trained); a checkpoint whose
    tasks' encoder weights differ is refused, naming a differing tensor; ``None``: as the checkpoint says
    (its ``shared_encoder`` flag, read from the one load). Returns (models, metadata without the
    weights).
    """
    ckpt = read_checkpoint(path)
    if shared_encoder is None:
        shared_encoder = checkpoint_shares_encoder(ckpt)
    where = str(resolve_checkpoint(path))
    ck_cfg = ModelConfig.from_dict(ckpt["model_config"])
    if cfg is not None and cfg != ck_cfg:
        diff = [
            f"{k}: checkpoint {v!r} vs expected {getattr(cfg, k)!r}"
            for k, v in ck_cfg.__dict__.items()
            if getattr(cfg, k) != v
        ]
        raise CheckpointError(f"{where}: model config differs: " + "; ".join(diff))
    wanted = list(tasks) if tasks is not None else list(ckpt["tasks"])
    absent = [t for t in wanted if t not in ckpt["weights"]]
    if absent:
        raise CheckpointError(f"{where}: no weights for task(s) {absent}; checkpoint has {list(ckpt['weights'])}")
    if shared_encoder:
        _check_equal_encoders(ckpt["weights"], wanted, where)
    models = build_task_models(ck_cfg, wanted, shared_encoder=shared_encoder)
    for task in wanted:
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["weights"][task].items()}
        check_state_dict(models[task], state, f"{where} [{task}]")
        models[task].load_state_dict(state)
    models.eval()
    meta = {k: v for k, v in ckpt.items() if k != "weights"}
    meta["model_config"] = ck_cfg
    return models, meta



def load_multitask_checkpoint(
    path: str | Path, tasks: list[str] | None = None
) -> tuple[nn.ModuleDict, dict[str, Any]]:
    """A multi-task checkpoint's models built around their one encoder (``load_checkpoint``); CheckpointError,
    saying so, when ``path`` holds independent models instead."""
    if not checkpoint_shares_encoder(path):
        raise CheckpointError(f"{path}: not a multi-task checkpoint (train with train.shared_encoder=true)")
    return load_checkpoint(path, tasks=tasks, shared_encoder=True)


def _check_equal_encoders(weights: dict[str, dict[str, torch.Tensor]], tasks: list[str], where: str) -> None:
    """Raise ``CheckpointError`` unless every task in ``tasks`` stores the same encoder weights (the condition for
    loading them as one shared encoder: otherwise the last task loaded would silently win)."""
    first = tasks[0]
    ref = {k: v for k, v in weights[first].items() if k.startswith("encoder.")}
    for task in tasks[1:]:
        own = {k: v for k, v in weights[task].items() if k.startswith("encoder.")}
        if own.keys() != ref.keys():
            raise CheckpointError(f"{where}: {task} and {first} have different encoder tensors; not one encoder")
        for k, v in ref.items():
            if own[k].shape != v.shape or not torch.equal(own[k], v):
                raise CheckpointError(
                    f"{where}: {task} and {first} differ in {k}: independent models, not one shared encoder"
                )
