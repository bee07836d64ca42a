"""Training configuration: YAML file + ``key.sub=value`` overrides, checked against known keys.

Defaults live here so that a config file only states what differs; an unknown or ill-typed key fails
with the key's dotted name and what was expected, before any work starts.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from mtshare_ros.models.stem import MOBILENETV2_STRIDE, STEMS
from mtshare_ros.models.vit import ModelConfig
from mtshare_ros.tasks import BUILTIN_TASKS, task_names
from mtshare_ros.training.sensor import SensorEffects

DEFAULTS: dict[str, Any] = {
    # ModelConfig fields; num_classes defaults to the dataset's class count; model.pretrained: weights the encoder
    # starts from (models/pretrained.py), model.stem: patch or mobilenetv2 (models/stem.py)
    "model": {},
    "data": {
        "dataset": "synthetic",
        "root": "data/synthetic",
        "val_root": None,  # None -> root; lets a separately rendered training set be validated on the standard split
        "train_split": "train",
        "val_split": "val",
        "size": None,  # [H, W] loader output size; None -> model.img_size
        "augment": True,  # the loader's augmentation (mtshare_ros.data: zoom-crop, flip, colour jitter)
        "num_workers": 1,
        "max_val_samples": None,
    },
    "train": {
        "tasks": list(BUILTIN_TASKS),
        "steps": 1000,
        "batch_size": 16,  # global batch, split evenly over processes
        "lr": 1.0e-3,
        "weight_decay": 0.05,
        "warmup_steps": 100,
        "min_lr_ratio": 0.01,
        "grad_clip": 1.0,
        "loss_weights": {},
        "batch_augment": {"hflip": False, "colour": 0.0},  # in-loop flip / colour jitter (no zoom: keeps metric depth)
        "crop": None,  # [h, w] patch-aligned random crops (scale kept, positions exact) for the first steps
        "full_res_steps": 0,  # the last N steps train on full frames
        "amp": "auto",  # auto: bf16 autocast on CUDA, none on CPU
        "device": "auto",
        "threads": None,  # torch CPU threads per process
        "seed": 0,
        "log_every": 10,
        "eval_every": 0,  # 0: only at the end
        "ckpt_every": 200,
        "out_dir": "runs/train",
        "resume": True,  # continue from out_dir/last.pt when it exists
        # bf16 copy of the training state written beside last.pt, resumed from when out_dir has none: commit
        # it so that training continues from a fresh checkout (another machine, the next session)
        "snapshot": None,
        "init": None,  # mtshare checkpoint ('default' or a path) to start the task models from (warm start)
        # true: one encoder shared by every task's head (a multi-task model: each labelled frame teaches all the
        # tasks through one encoder, run once per batch); false: independent single-task models
        "shared_encoder": False,
    },
    # sensor effects on the training images (training/sensor.py: noise, blur, exposure, white balance, gamma,
    # JPEG, vignetting); each key of SensorEffects may be set, ``enabled`` switches them all
    "sensor": asdict(SensorEffects()),
    # where to also write the final model checkpoint; ``merge``: a checkpoint whose other tasks' models the
    # exported file keeps (fine-tune one task of the shipped default and export it back beside the others)
    "export": {"path": None, "half": True, "merge": None},
}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key."""


def _merge(base: dict, extra: dict, where: str) -> dict:
    """``base`` updated with ``extra``; sections recurse, unknown keys fail (``model`` is checked later)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        name = f"{where}.{key}" if where else key
        if key not in base:
            if where != "model":
                raise ConfigError(f"unknown config key {name!r}; known under {where or 'top level'}: {sorted(base)}")
            out[key] = value
        elif isinstance(base[key], dict) and key != "loss_weights" and base[key]:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {name!r} must be a mapping, got {value!r}")
            out[key] = _merge(base[key], value, name)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.lr=3e-4`` -> (['train', 'lr'], 0.0003); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Defaults <- YAML file <- overrides, then validated. Returns a plain nested dict."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        raw = yaml.safe_load(p.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k!r} is not a section")
        node[keys[-1]] = value
    if "backbone" in raw:  # the key of earlier versions: say where it went rather than only that it is unknown
        raise ConfigError("config key 'backbone' is gone: backbone.pretrained is now model.pretrained")
    cfg = _merge(DEFAULTS, raw, "")
    validate(cfg)
    return cfg


def model_config(cfg: dict[str, Any], num_classes: int) -> ModelConfig:
    """The ``model`` section as a ModelConfig (unknown fields named in the error)."""
    fields = dict(cfg["model"])
    fields.setdefault("num_classes", num_classes)
    known = set(ModelConfig.__dataclass_fields__)
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {['model.' + k for k in unknown]}; known: {sorted(known)}")
    for key in ("img_size", "feature_layers"):
        if key in fields:
            fields[key] = tuple(fields[key])
    try:
        mcfg = ModelConfig(**fields)
    except TypeError as exc:
        raise ConfigError(f"model: {exc}") from exc
    if mcfg.stem not in STEMS:
        raise ConfigError(f"model.stem {mcfg.stem!r}: one of {list(STEMS)}")
    if mcfg.stem == "mobilenetv2" and mcfg.patch_size != MOBILENETV2_STRIDE:
        raise ConfigError(f"model.stem mobilenetv2 has stride {MOBILENETV2_STRIDE}: model.patch_size must be "
                          f"{MOBILENETV2_STRIDE}, got {mcfg.patch_size}")
    if any(s % mcfg.patch_size for s in mcfg.img_size):
        raise ConfigError(f"model.img_size {list(mcfg.img_size)} must be multiples of model.patch_size")
    if any(not 0 <= i < mcfg.depth for i in mcfg.feature_layers):
        raise ConfigError(f"model.feature_layers {list(mcfg.feature_layers)} must lie in 0..{mcfg.depth - 1}")
    if mcfg.embed_dim % mcfg.num_heads:
        raise ConfigError(f"model.embed_dim {mcfg.embed_dim} must be divisible by model.num_heads {mcfg.num_heads}")
    return mcfg


def validate(cfg: dict[str, Any]) -> None:
    """Type and range checks that would otherwise fail late, deep inside the loop."""
    if not isinstance(cfg["model"], dict):
        raise ConfigError(f"config key 'model' must be a mapping of ModelConfig fields, got {cfg['model']!r}")
    t = cfg["train"]
    bad = [x for x in t["tasks"] if x not in task_names()]
    if bad or not t["tasks"]:
        raise ConfigError(f"train.tasks {t['tasks']}: each must be one of {list(task_names())}")
    for key in ("steps", "batch_size", "log_every", "ckpt_every"):
        if not isinstance(t[key], int) or t[key] <= 0:
            raise ConfigError(f"train.{key} must be a positive integer, got {t[key]!r}")
    for key in ("warmup_steps", "full_res_steps", "eval_every"):
        if not isinstance(t[key], int) or t[key] < 0:
            raise ConfigError(f"train.{key} must be a non-negative integer, got {t[key]!r}")
    for key in ("lr", "weight_decay", "min_lr_ratio", "grad_clip"):
        if isinstance(t[key], str):  # YAML 1.1 reads 2e-3 (no dot) as a string
            with contextlib.suppress(ValueError):
                t[key] = float(t[key])
        if not isinstance(t[key], (int, float)) or t[key] < 0:
            raise ConfigError(f"train.{key} must be a non-negative number, got {t[key]!r}")
    if t["crop"] is not None and (not isinstance(t["crop"], list) or len(t["crop"]) != 2):
        raise ConfigError(f"train.crop must be [h, w] or null, got {t['crop']!r}")
    if not isinstance(t["shared_encoder"], bool):
        raise ConfigError(f"train.shared_encoder must be true or false, got {t['shared_encoder']!r}")
    if t["amp"] not in ("auto", True, False):
        raise ConfigError(f"train.amp must be auto, true or false, got {t['amp']!r}")
    unknown_w = sorted(set(t["loss_weights"]) - set(task_names()))
    if unknown_w:
        raise ConfigError(f"train.loss_weights has unknown task(s) {unknown_w}")
    try:
        SensorEffects.from_config(cfg["sensor"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sensor: {exc}") from exc
    size = cfg["data"]["size"]
    if size is not None and (not isinstance(size, list) or len(size) != 2):
        raise ConfigError(f"data.size must be [H, W] or null, got {size!r}")
