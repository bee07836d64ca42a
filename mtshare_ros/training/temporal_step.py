"""The method's temporal step: fine-tune the base task so that its activations change less between neighbouring
frames, which is what lets temporal sharing skip more tokens at the same threshold.

Loss per pair of neighbouring frames (t, t+1) of a rendered camera motion: the task loss on both frames, plus
``penalty_weight`` times the mean over blocks and tokens of the relative L1 change of each block's input,
``|x_l(t+1) - x_l(t)|_1 / |x_l(t)|_1`` (relative, like the engine's threshold). Optionally the frozen starting
model's outputs are a second target (``distill_weight``), so accuracy stays where it was.

    mtshare temporal-train --config config/train/temporal_base.yaml

Fine-tuning the base changes every sub-task delta's base: a checkpoint written here runs its independent
models and exact deltas; trained sub-task deltas must be trained again on it (``scripts/train_shared.sh``).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from mtshare_ros.data.motion import KINDS, render_motion
from mtshare_ros.models.checkpoint import save_checkpoint
from mtshare_ros.models.device import select_device
from mtshare_ros.models.vit import DenseViT
from mtshare_ros.sharing.loader import load_models
from mtshare_ros.training.evaluate import normalise
from mtshare_ros.training.losses import as_target, task_loss

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "checkpoint": "default",
    "task": "segmentation",
    "out": "runs/temporal/base.pt",
    "data": {"rooms": [1000, 1001, 1002, 1003], "kinds": ["slow_pan", "walking"], "fps": 30.0, "frames": 40,
             "size": [240, 320]},
    "train": {"steps": 200, "batch_size": 4, "lr": 2.0e-5, "penalty_weight": 1.0, "distill_weight": 1.0,
              "seed": 0, "threads": None, "device": "auto", "log_every": 10},
}


def block_inputs(model: DenseViT, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every block's input (the tokens the engine compares between frames) and the model's output."""
    walk = model.encoder.forward_intermediates(x, keep_inputs=True)
    return walk.inputs, model.head(walk.features, walk.grid, x)


def temporal_penalty(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """Mean over blocks and tokens of ``|b - a|_1 / |a|_1`` per token."""
    terms = [((y - x).abs().sum(-1) / (x.abs().sum(-1) + 1e-6)).mean() for x, y in zip(a, b, strict=True)]
    return torch.stack(terms).mean()


def render_pairs(data: dict[str, Any]) -> list[dict[str, torch.Tensor]]:
    """Neighbouring frame pairs of the configured motions: image (2, 3, H, W) in [0, 1] and labels."""
    pairs = []
    jobs = [(seed, kind) for seed in data["rooms"] for kind in data["kinds"]]
    for seed, kind in tqdm(jobs, desc="rendering motions", unit="sequence"):
        frames = list(render_motion(int(seed), kind, int(data["frames"]), float(data["fps"]), *data["size"]))
        for f0, f1 in zip(frames[:-1], frames[1:], strict=True):
            image = torch.from_numpy(np.stack([f0.rgb, f1.rgb])).permute(0, 3, 1, 2).float() / 255.0
            seg = torch.from_numpy(np.stack([f0.segmentation, f1.segmentation]).astype(np.int64))
            depth = torch.from_numpy(np.stack([f0.depth, f1.depth]))
            normals = torch.from_numpy(np.stack([f0.normals, f1.normals])).permute(0, 3, 1, 2)
            pairs.append({"image": image, "segmentation": seg, "depth": depth, "normals": normals})
    return pairs


def train_temporal(
    model: DenseViT, pairs: list[dict[str, torch.Tensor]], steps: int, batch_size: int, lr: float,
    penalty_weight: float, distill_weight: float, seed: int = 0, log_every: int = 10,
) -> list[dict[str, float]]:
    """Fine-tune ``model`` (its task) on neighbouring frame pairs; returns the logged history."""
    device = next(model.parameters()).device
    teacher = copy.deepcopy(model).eval() if distill_weight > 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    g = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    model.train()
    t0 = time.monotonic()
    task = model.task
    for i in range(steps):
        idx = torch.randint(0, len(pairs), (batch_size,), generator=g).tolist()
        batch = {k: torch.cat([pairs[j][k] for j in idx]).to(device) for k in pairs[0]}  # (2B, ...): t, t+1
        x = normalise(batch["image"])
        inputs, out = block_inputs(model, x)
        loss_sum, count = task_loss(task, out, batch)
        loss = loss_sum / count.clamp_min(1)
        if teacher is not None:
            with torch.no_grad():
                soft = as_target(task, teacher(x))
            s_sum, s_count = task_loss(task, out, {task: soft})
            loss = loss + distill_weight * s_sum / s_count.clamp_min(1)
        # frames t and t+1 alternate in the batch: pair each with its neighbour
        pen = temporal_penalty([t[0::2] for t in inputs], [t[1::2] for t in inputs])
        total = loss + penalty_weight * pen
        opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (i + 1) % log_every == 0 or i == steps - 1 or i == 0:
            rec = {"step": i + 1, "loss": float(loss.detach()), "penalty": float(pen.detach()),
                   "elapsed_s": round(time.monotonic() - t0, 1)}
            history.append(rec)
            log.info("temporal step %d/%d loss %.4f penalty %.4f", i + 1, steps, rec["loss"], rec["penalty"])
    model.eval()
    return history


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if k not in base:
            raise ValueError(f"unknown config key {k!r}; known: {sorted(base)}")
        out[k] = _merge(base[k], v) if isinstance(base[k], dict) and isinstance(v, dict) else v
    return out


def load_temporal_config(path: str | None) -> dict[str, Any]:
    """Defaults <- YAML, checked (an unknown key or a bad value fails before any rendering or training)."""
    cfg = _merge(DEFAULTS, (yaml.safe_load(Path(path).read_text()) or {}) if path else {})
    t, d = cfg["train"], cfg["data"]
    for key in ("steps", "batch_size", "log_every"):
        if not isinstance(t[key], int) or t[key] <= 0:
            raise ValueError(f"train.{key} must be a positive integer, got {t[key]!r}")
    unknown = [k for k in d["kinds"] if k not in KINDS]
    if unknown or not d["rooms"] or int(d["frames"]) < 2:
        raise ValueError(f"data: motions from {list(KINDS)}, at least one room and two frames; got {d}")
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mtshare temporal-train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="YAML config (see config/train/temporal_base.yaml)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_temporal_config(args.config)
    t = cfg["train"]
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    loaded = load_models(cfg["checkpoint"], shared=False)
    model = loaded.dense[cfg["task"]].to(select_device(t["device"]))
    log.info("rendering neighbouring frames: %s", cfg["data"])
    pairs = render_pairs(cfg["data"])
    history = train_temporal(model, pairs, t["steps"], t["batch_size"], t["lr"], t["penalty_weight"],
                             t["distill_weight"], t["seed"], t["log_every"])
    models = loaded.dense
    models[cfg["task"]] = model.cpu()
    prov = dict(loaded.meta.get("provenance", {}), temporal_step={"config": cfg, "history": history})
    path = save_checkpoint(cfg["out"], models, loaded.cfg, loaded.class_names, prov, half=True)
    log.info("wrote %s (the %s model fine-tuned for temporal sparsity; other tasks unchanged)", path, cfg["task"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
