"""``mtshare share-train``: one training step of one sub-task of the shared model, from a YAML config.

    python -m mtshare_ros.training.share_train_cli --config config/train/shared_step1_l1.yaml task=depth

Step ``l1`` starts the sub-task from the base weights of a dense checkpoint (or adds it to the shared
checkpoint ``init``); ``pattern`` and ``activation`` continue from ``init``; ``budget`` does either (when
``init`` has no sub-task of the task, it starts one as ``l1`` does, and only then reads ``head_init``).
From a multi-task checkpoint (``base_checkpoint`` and ``head_init`` both ``mtshare_ros/weights/multitask.pt``),
the base is its segmentation model and the sub-task is the same encoder with ``dW = 0`` and the multi-task
model's head: recomputing nothing is the multi-task model, and every recomputed token can only add what training
makes it add (``config/train/shared_mt_budget_*.yaml``).
The result is a shared checkpoint at ``out`` holding the base and every sub-task of ``init`` plus this one.
``{task}`` in ``init`` / ``out`` is replaced by the task name.
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from mtshare_ros.sharing.checkpoint import load_shared, save_shared, save_subtask
from mtshare_ros.sharing.deltas import DELTA_KINDS
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.loader import load_models
from mtshare_ros.training.config import parse_override
from mtshare_ros.training.datasets import class_names, make_dataset
from mtshare_ros.training.subtask_steps import (
    STEPS,
    delta_sparsity,
    fix_pattern,
    grow_subtask,
    subtask_from_base,
    train_subtask,
)

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "task": "depth",
    "step": "l1",
    "delta": "sparse",
    "rank": 16,
    "start_layer": 0,  # blocks before it (and the embedding) stay the base's: no delta, no token comparison
    "head_channels": None,  # width of the sub-task's head (None: the base's)
    "head_init": None,  # step l1: a dense checkpoint whose model for the task gives the head its start
    "grow": None,  # later steps: {rank: R, start_layer: S} gives the loaded sub-task more capacity first
    "distill": None,  # a dense checkpoint whose model for the task is also a target (weight: train.distill_weight)
    "density": 0.05,
    "row_fraction": 0.1,
    "base_checkpoint": "default",
    "base_task": "segmentation",
    "init": None,
    "out": "runs/shared/{task}.pt",
    "export": None,  # also write the sub-task alone (fp16, tied to its base): mtshare_ros/weights/independent_{task}.pt
    "data": {
        "dataset": "synthetic",
        "root": "data/synthetic",
        "train_split": "train",
        "size": None,
        "augment": True,
        "num_workers": 1,
    },
    "train": {
        "steps": 300,
        "batch_size": 8,
        "lr": 2.0e-4,
        "penalty_weight": 0.0,
        "distill_weight": 1.0,
        "head_lr": None,  # learning rate of the sub-task's head (None: lr)
        "threshold": 0.1,
        "max_token_fraction": 1.0,
        "crop": None,
        "seed": 0,
        "threads": None,
        "device": "auto",
        "log_every": 10,
        "batch_augment": {"hflip": False, "colour": 0.0},  # as in the task models' training (no zoom)
    },
}


class ShareConfigError(ValueError):
    """A sharing training config with an unknown key or a bad value; the message names the key."""


def _merge(base: dict, extra: dict, where: str) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if k not in base:
            raise ShareConfigError(f"unknown config key {where + k!r}; known: {sorted(base)}")
        out[k] = _merge(base[k], v, f"{where}{k}.") if isinstance(base[k], dict) and isinstance(v, dict) else v
    return out


def load_share_config(path: str | None, overrides: list[str]) -> dict[str, Any]:
    """Defaults <- YAML <- ``key.sub=value`` overrides, checked."""
    raw: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ShareConfigError(f"config file not found: {p}")
        raw = yaml.safe_load(p.read_text()) or {}
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    cfg = _merge(DEFAULTS, raw, "")
    if cfg["step"] not in STEPS:
        raise ShareConfigError(f"step {cfg['step']!r} must be one of {STEPS}")
    if cfg["delta"] not in DELTA_KINDS or cfg["delta"] in ("zero", "dense"):
        raise ShareConfigError(f"delta {cfg['delta']!r} must be one of sparse, rows, lowrank")
    if cfg["step"] not in ("l1", "budget") and not cfg["init"]:
        raise ShareConfigError(f"step {cfg['step']!r} continues a shared checkpoint: set 'init'")
    if cfg["head_init"] and cfg["step"] not in ("l1", "budget"):
        raise ShareConfigError("head_init: only step l1 (or budget, when it creates the sub-task) creates a head; "
                               "later steps continue the one they load")
    if cfg["grow"] is not None:
        grow = cfg["grow"]
        if cfg["step"] == "l1" or not isinstance(grow, dict) or not grow or set(grow) - {"rank", "start_layer"}:
            raise ShareConfigError(f"grow: a step after l1 takes {{rank: R, start_layer: S}} (either), got {grow!r}")
        if any(not isinstance(v, int) or v < 0 for v in grow.values()):
            raise ShareConfigError(f"grow: rank and start_layer must be non-negative integers, got {grow!r}")
    t = cfg["train"]
    if t["head_lr"] is not None:
        t["head_lr"] = float(t["head_lr"])
    for key in ("lr", "penalty_weight", "distill_weight", "threshold", "max_token_fraction"):
        t[key] = float(t[key])
    for key in ("steps", "batch_size", "log_every"):
        if not isinstance(t[key], int) or t[key] <= 0:
            raise ShareConfigError(f"train.{key} must be a positive integer, got {t[key]!r}")
    cfg["out"] = str(cfg["out"]).format(task=cfg["task"])
    cfg["init"] = str(cfg["init"]).format(task=cfg["task"]) if cfg["init"] else None
    cfg["export"] = str(cfg["export"]).format(task=cfg["task"]) if cfg["export"] else None
    return cfg


def _init_head(head: torch.nn.Module, checkpoint: str, task: str) -> None:
    """The sub-task's head starts from the independent model's: the same task, trained longer, on features that
    differ only where the sub-task's deltas make them differ. Widths must match (``head_channels``)."""
    models = load_models(checkpoint, tasks=[task], shared=False).dense
    try:
        head.load_state_dict(models[task].head.state_dict())
    except RuntimeError as e:
        raise ShareConfigError(
            f"head_init: the {task} head of {checkpoint} does not fit the sub-task's head; set head_channels to "
            f"its width ({models[task].cfg.head_channels}): {str(e).splitlines()[0]}"
        ) from e
    log.info("sub-task head starts from the %s head of %s", task, checkpoint)


def build_model(cfg: dict[str, Any]) -> tuple[SharedMultiTaskModel, list[str], dict[str, Any]]:
    """The shared model this step starts from (with the task's sub-task prepared for the step), its class
    names and the training record of the steps before."""
    task = cfg["task"]
    if cfg["init"]:
        shared, meta = load_shared(cfg["init"])
        names = list(meta["class_names"])
    else:
        loaded = load_models(cfg["base_checkpoint"], tasks=[cfg["base_task"]], shared=False)
        shared, meta = SharedMultiTaskModel(loaded.dense[cfg["base_task"]], {}), loaded.meta
        names = list(meta["class_names"])
    creates = cfg["step"] == "l1" or (cfg["step"] == "budget" and cfg["task"] not in shared.subtasks)
    if creates:
        shared.set_subtask(subtask_from_base(
            shared.base, task, cfg["delta"], cfg["rank"], cfg["train"]["seed"], cfg["start_layer"], cfg["head_channels"]
        ))
        if cfg["head_init"]:
            _init_head(shared.subtasks[task].head, cfg["head_init"], task)
    elif task not in shared.subtasks:
        raise ShareConfigError(f"{cfg['init']}: has no sub-task {task!r} to continue (has {list(shared.subtasks)})")
    if cfg["grow"]:
        try:
            grown = grow_subtask(shared.subtasks[task], shared.base, seed=cfg["train"]["seed"], **cfg["grow"])
            shared.set_subtask(grown)
        except ValueError as e:
            raise ShareConfigError(f"grow: {e}") from e
        log.info("grew sub-task %s: %s", task, cfg["grow"])
    if cfg["step"] == "pattern":
        fix_pattern(shared.subtasks[task], cfg["delta"], cfg["density"], cfg["row_fraction"])
    prior = dict(meta.get("provenance", {}).get("train_steps", {})) if cfg["init"] else {}
    return shared, names, prior


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mtshare share-train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="YAML config (see config/train/shared_*.yaml)")
    ap.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. task=normals train.steps=50")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_share_config(args.config, args.overrides)
    t = cfg["train"]
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    device = torch.device(
        "cuda"
        if t["device"] == "auto" and torch.cuda.is_available()
        else ("cpu" if t["device"] == "auto" else t["device"])
    )
    shared, names, record = build_model(cfg)
    shared.to(device)
    teacher = None
    if cfg["distill"]:
        teacher = load_models(cfg["distill"], tasks=[cfg["task"]], shared=False).dense[cfg["task"]].to(device).eval()
        log.info("distilling the %s model of %s (weight %g)", cfg["task"], cfg["distill"], t["distill_weight"])
    data = cfg["data"]
    size = tuple(data["size"] or shared.cfg.img_size)
    ds = make_dataset(data, data["train_split"], size, data["augment"])
    if class_names(data["dataset"], ds) != names:
        raise ShareConfigError(f"dataset {data['dataset']!r} classes differ from the checkpoint's")

    def batches():
        g = torch.Generator().manual_seed(t["seed"])
        while True:
            yield from DataLoader(
                ds,
                batch_size=t["batch_size"],
                shuffle=True,
                drop_last=True,
                generator=g,
                num_workers=data["num_workers"],
            )

    history = train_subtask(
        shared,
        cfg["task"],
        cfg["step"],
        batches(),
        t["steps"],
        lr=t["lr"],
        penalty_weight=t["penalty_weight"],
        delta=cfg["delta"],
        threshold=t["threshold"],
        max_token_fraction=t["max_token_fraction"],
        crop=tuple(t["crop"]) if t["crop"] else None,
        seed=t["seed"],
        log_every=t["log_every"],
        augment=t["batch_augment"],
        teacher=teacher,
        distill_weight=t["distill_weight"],
        head_lr=t["head_lr"],
    )
    st = shared.subtasks[cfg["task"]]
    prov = {"config": cfg, "history": history, "delta_sparsity": delta_sparsity(st), "storage": st.storage()}
    key = f"{cfg['task']}/{cfg['step']}"
    if key in record:  # a step run again (e.g. on full frames) adds a record rather than replacing one
        n = 2
        while f"{key}#{n}" in record:
            n += 1
        key = f"{key}#{n}"
    record[key] = prov
    path = save_shared(cfg["out"], shared.cpu(), names, provenance={"train_steps": record})
    log.info("wrote %s (%s step %s; sub-task stores %d values)", path, cfg["task"], cfg["step"], st.storage()["values"])
    if cfg["export"]:
        sub = save_subtask(cfg["export"], shared, cfg["task"], provenance={"train_steps": record}, half=True)
        log.info("exported sub-task %s to %s (fp16)", cfg["task"], sub)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
