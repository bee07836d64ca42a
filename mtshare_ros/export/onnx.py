"""Export a checkpoint's models as ONNX graphs: the normalised float32 (1, 3, H, W) image that
``Predictor.preprocess`` builds in, every task's output out, with a dynamic width.

Three kinds of graph, each one file with every task of it (one graph, not one per task: the runtime makes one
call per frame, and a multi-task model's encoder or the engine's base task is computed once for all heads):

* ``independent``: the checkpoint's dense models (``run_tasks``: three encoders for independent models).
* ``multitask``: the shipped multi-task model (``checkpoint: multitask``): one encoder, a head per task.
* ``engine``: the checkpoint's shared engine in the fixed-budget mode (``sharing/engine.py``): each block
  recomputes exactly ``k = ceil(cap * N)`` tokens per sub-task, ``N`` the tokens of the frame, so the graph
  selects by top-k with a k that follows the width. Per frame: temporal sharing is not exported.

The width is dynamic (a multiple of the patch size; the positional embedding is resampled inside the graph,
``models/vit.py`` ``resize_pos_embed``); the height is fixed (the model's rows by default). Exported with the
dynamo exporter (``torch.onnx.export(dynamo=True)``, i.e. ``torch.export``): it keeps the token count
symbolic through the engine's top-k and gathers. Outputs are named after the tasks and are what the PyTorch
model returns: segmentation logits (1, classes, H, W), depth (1, 1, H, W) (relative to the canonical focal
length when the checkpoint has one, as in PyTorch), unit normals (1, 3, H, W).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtshare_ros.models.checkpoint import resolve_checkpoint
from mtshare_ros.models.vit import run_tasks
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.loader import LoadedModels, load_models
from mtshare_ros.sharing.tokens import token_budget

log = logging.getLogger(__name__)

KINDS = ("independent", "multitask", "engine")
INPUT_NAME = "image"
OPSET = 18


class TasksGraph(nn.Module):
    """The dense models of some tasks as one module returning a tuple (ONNX outputs are positional)."""

    def __init__(self, models: nn.ModuleDict) -> None:
        super().__init__()
        self.models = models

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = run_tasks(dict(self.models.items()), x)
        return tuple(out[t] for t in self.models)


class EngineGraph(nn.Module):
    """The shared engine in the fixed-budget mode at token cap ``cap``, every task, as one module."""

    def __init__(self, engine: SharedMultiTaskModel, cap: float) -> None:
        super().__init__()
        self.engine, self.cap = engine, cap

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.engine.run(x, 0.0, self.cap, mode="fixed").outputs
        return tuple(out[t] for t in self.engine.tasks)


def file_hash(path: Path) -> str:
    """First 16 hex digits of the file's SHA-256: names the cache entry of a checkpoint's graphs."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def graph_of(loaded: LoadedModels, kind: str, cap: float) -> tuple[nn.Module, list[str]]:
    """The module to export for ``kind`` and the names of its outputs (the tasks, in output order)."""
    if kind == "engine":
        if loaded.shared is None:
            raise ValueError(f"{loaded.path}: no shared engine (it needs a base task and sub-tasks)")
        return EngineGraph(loaded.shared, cap).eval(), list(loaded.shared.tasks)
    return TasksGraph(loaded.dense).eval(), list(loaded.dense)


def _checkpoint_for(checkpoint: str, kind: str) -> str:
    """``multitask`` graphs are of the shipped multi-task model whatever ``checkpoint`` says; the ``independent``
    graph of ``default`` (a multi-task model since the engine shares its encoder) is of the shipped independent
    models."""
    if kind == "multitask":
        return "multitask"
    return "independent" if kind == "independent" and checkpoint == "default" else checkpoint


def export_onnx(
    checkpoint: str = "default", kind: str = "engine", out_dir: str | Path = ".", height: int | None = None,
    mode: str = "fixed", cap: float = 0.1, loaded: LoadedModels | None = None,
) -> Path:
    """Export ``kind`` (``KINDS``) of ``checkpoint`` to ``out_dir/<kind>.onnx`` with ``<kind>.json`` beside it
    and return the graph's path. ``height``: the graph's fixed input rows (default: the model's). ``mode`` must
    be ``fixed`` (the threshold mode's shapes depend on the frame: it cannot be a static graph); ``cap``: the
    engine's token cap (ignored by the dense kinds). ``loaded``: the checkpoint already loaded (saves a read)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if mode != "fixed":
        raise ValueError(f"only the fixed-budget mode exports (shapes fixed per input size), got mode {mode!r}")
    ckpt = _checkpoint_for(checkpoint, kind)
    if loaded is None or loaded.path != resolve_checkpoint(ckpt):
        loaded = load_models(ckpt)
    cfg = loaded.cfg
    p = cfg.patch_size
    h = height or cfg.img_size[0]
    if h % p:
        raise ValueError(f"height {h} is not a multiple of the patch size {p}")
    module, outputs = graph_of(loaded, kind, cap)
    # traced at a width other than the trained one, so that no branch taken only at the trained grid is baked in
    width = cfg.img_size[1] + p
    x = torch.zeros(1, 3, h, width)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{kind}.onnx"
    wp = torch.export.Dim("width_patches", min=2, max=4096 // p)
    log.info("exporting %s of %s to %s", kind, loaded.path, path)
    module.to("cpu")
    with torch.no_grad():
        torch.onnx.export(module, (x,), str(path), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=outputs, dynamic_shapes={"x": {3: p * wp}}, external_data=False,
                          verbose=False)
    write_metadata(path, metadata(loaded, kind, outputs, h, cap))
    return path


def metadata(loaded: LoadedModels, kind: str, outputs: list[str], height: int, cap: float) -> dict[str, Any]:
    """What a user of the graph needs besides the graph: inputs, outputs, the model's facts, provenance."""
    import onnx

    cfg = loaded.cfg
    grid_h = height // cfg.patch_size
    trained_w = cfg.img_size[1] // cfg.patch_size
    return {
        "kind": kind,
        "input": {"name": INPUT_NAME, "shape": [1, 3, height, "W"], "dtype": "float32",
                  "normalisation": "ImageNet mean/std of RGB in [0, 1] (Predictor.preprocess)",
                  "width": f"dynamic, a multiple of {cfg.patch_size}, {2 * cfg.patch_size}..4096"},
        "tasks": outputs,
        "outputs": {t: {"name": t, "meaning": _meaning(t)} for t in outputs},
        "input_height": height,
        "patch_size": cfg.patch_size,
        "classes": list(loaded.class_names),
        "canonical_focal": cfg.canonical_focal,
        "mode": "fixed" if kind == "engine" else "dense",
        "cap": cap if kind == "engine" else None,
        "k": "ceil(cap * N) tokens per block and sub-task, N = tokens of the frame" if kind == "engine" else None,
        "k_at_trained_width": token_budget(grid_h * trained_w, cap) if kind == "engine" else None,
        "checkpoint": str(loaded.path),
        "checkpoint_sha256_16": file_hash(loaded.path),
        "sharing_source": loaded.sharing_source if kind == "engine" else None,
        "exporter": "torch.onnx.export(dynamo=True)",
        "opset": OPSET,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }


def _meaning(task: str) -> str:
    return {"segmentation": "logits (1, classes, H, W)",
            "depth": "metres (1, 1, H, W); relative to canonical_focal when set (scale by fx / canonical_focal)",
            "normals": "unit normals (1, 3, H, W), camera optical frame"}.get(task, "the task's model output")


def write_metadata(path: Path, meta: dict[str, Any]) -> Path:
    out = path.with_suffix(".json")
    out.write_text(json.dumps(meta, indent=2) + "\n")
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata beside an exported graph."""
    return json.loads(Path(path).with_suffix(".json").read_text())
