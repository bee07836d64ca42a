"""The training loop: one model per task, trained side by side on the same batches.

By default the task models share nothing (independent single-task models); they sit behind one module only
so that one DistributedDataParallel wrapper keeps them in sync. With ``train.shared_encoder`` they hold one
encoder object (a multi-task model: one encoder, one head per task), which runs once per batch and learns from
every task's loss. Losses are normalised by the global number of valid pixels, and the data order and crop
positions derive from the seed and step alone, so N processes with a global batch B follow the same
trajectory as one process with batch B.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, Subset
from tqdm import tqdm

from mtshare_ros.models.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from mtshare_ros.models.device import select_device
from mtshare_ros.models.focal import canonical_depth
from mtshare_ros.models.pretrained import load_pretrained_models
from mtshare_ros.models.vit import ModelConfig, build_task_models, is_embedding_key, run_tasks, shared_encoder_of
from mtshare_ros.sharing.loader import load_models
from mtshare_ros.tasks import task_spec
from mtshare_ros.training.config import ConfigError, model_config
from mtshare_ros.training.datasets import class_names, make_dataset
from mtshare_ros.training.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, shutdown
from mtshare_ros.training.evaluate import evaluate, normalise
from mtshare_ros.training.losses import task_loss
from mtshare_ros.training.model_stats import count_gmacs, count_parameters
from mtshare_ros.training.sensor import SensorEffects, apply_sensor_effects

log = logging.getLogger(__name__)

STATE_FILE = "last.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.jsonl"


class TaskModels(nn.Module):
    """Runs every task model on the same input; one module for one DDP wrapper.

    A shared encoder (multi-task model) runs once and feeds every head (``run_tasks``), so a step costs one
    encoder pass and its backward pass carries the sum of the tasks' gradients into the encoder.
    """

    def __init__(self, models: nn.ModuleDict) -> None:
        super().__init__()
        self.models = models

    def forward(self, x: torch.Tensor, offset: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
        return run_tasks(self.models, x, offset)


def training_units(models: nn.ModuleDict) -> list[tuple[str, nn.Module]]:
    """The parts of ``models`` that own disjoint parameters, in a fixed order: the task models when they are
    independent; the shared encoder, then each task's head, for a multi-task model (its task models overlap).

    Optimizer parameter groups and gradient clipping are built per unit, so no parameter is in two groups
    (AdamW would step it twice) or clipped twice. Clipping a multi-task model's encoder and each head on their
    own, rather than the union, keeps the independent models' rule that a task's large gradient does not shrink
    another task's head update; the encoder, which takes the sum of all tasks' gradients, is clipped as one.
    """
    encoder = shared_encoder_of(models)
    if encoder is None:
        return list(models.items())
    return [("encoder", encoder), *((f"{task}.head", m.head) for task, m in models.items())]


class _SkipSampler(Sampler):
    """The first ``skip`` indices of ``base`` dropped: resumes mid-epoch without loading skipped samples."""

    def __init__(self, base: DistributedSampler, skip: int) -> None:
        self.base, self.skip = base, skip

    def __iter__(self):
        return islice(iter(self.base), self.skip, None)

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def snapshot_of(state: dict[str, Any], steps: int) -> dict[str, Any]:
    """The committed form of a training state (``train.snapshot``): every floating-point tensor in bf16, half
    the size; for a finished run (``step >= steps``) also without the optimizer's moments, two thirds of the
    rest: nothing is left to optimise, and a fresh checkout needs only the models, the step and the schedule."""
    if state["step"] >= steps:
        state = {**state, "optimizer": None}
    return _to_bf16(state)


def _to_bf16(obj: Any, memo: dict | None = None) -> Any:
    """``obj`` with every floating-point tensor in bf16 (nested dicts and lists; other values unchanged).

    bf16 keeps fp32's exponent range, so Adam's second moments (~1e-12) survive, at 3 significant digits.
    Tensors that share memory (a shared encoder's weights, listed under every task) stay shared, so that
    ``torch.save`` writes them once.
    """
    memo = {} if memo is None else memo
    if isinstance(obj, torch.Tensor):
        if not (obj.is_floating_point() and obj.dim() > 0):
            return obj
        key = (obj.untyped_storage().data_ptr(), obj.storage_offset(), tuple(obj.shape), obj.stride())
        if key not in memo:
            memo[key] = obj.to(torch.bfloat16)
        return memo[key]
    if isinstance(obj, dict):
        return {k: _to_bf16(v, memo) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_bf16(v, memo) for v in obj)
    return obj


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def crop_offset(step: int, seed: int, full: tuple[int, int], crop: tuple[int, int], patch: int) -> tuple[int, int]:
    """Patch offset of this step's crop: the same on every process (derived from seed and step only)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    oy = int(torch.randint(0, (full[0] - crop[0]) // patch + 1, (1,), generator=g))
    ox = int(torch.randint(0, (full[1] - crop[1]) // patch + 1, (1,), generator=g))
    return oy, ox


def batch_augment(
    image: torch.Tensor, targets: dict[str, torch.Tensor], step: int, seed: int, info: DistInfo,
    hflip: bool, colour: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Random horizontal flip (normals' x negated) and brightness/contrast/saturation jitter, per sample.

    No zoom: a zoomed view looks closer while its metric depth is unchanged, which a monocular model
    cannot tell apart. Random numbers are drawn for the whole global batch from (seed, step) and each
    process takes the rows of its own samples (DistributedSampler interleaves ranks), so the result does
    not depend on the number of processes.
    """
    b = image.shape[0]
    g = torch.Generator().manual_seed(seed * 7_919 + 2 * step + 1)
    draws = torch.rand(b * info.world_size, 4, generator=g)[info.rank :: info.world_size].to(image.device)
    if hflip:
        flip = draws[:, 0] < 0.5
        fl = flip.view(b, 1, 1, 1)
        image = torch.where(fl, image.flip(-1), image)
        out = {}
        for key, t in targets.items():
            m = flip.view(b, *([1] * (t.dim() - 1)))
            out[key] = torch.where(m, task_spec(key).flip_target(t), t)
        targets = out
    if colour:
        f = 1.0 + colour * (2.0 * draws[:, 1:] - 1.0)  # brightness, contrast, saturation factors
        image = image * f[:, 0].view(b, 1, 1, 1)
        mean = image.mean(dim=(1, 2, 3), keepdim=True)
        image = (image - mean) * f[:, 1].view(b, 1, 1, 1) + mean
        grey = image.mean(dim=1, keepdim=True)
        image = ((image - grey) * f[:, 2].view(b, 1, 1, 1) + grey).clamp(0.0, 1.0)
    return image, targets


def warm_start(models: nn.ModuleDict, source: str) -> None:
    """Start every task model from the same task in mtshare checkpoint ``source`` (``train.init``).

    Tensors the checkpoint lacks keep their fresh initialisation and are logged (a head that gained a
    branch since); anything of another shape, or a task the checkpoint does not have, is an error.
    Either kind of checkpoint starts either kind of model: a multi-task checkpoint starts independent models
    (single-task fine-tuning, each from the shared encoder and its own head); independent models start a
    shared encoder from the first task's encoder (the others' are logged as unused), with every task's head.
    The checkpoint's stem, when the model has another one (``model.stem``), is not used and logged: the blocks
    see the same token grid from either stem, so a new stem starts under the checkpoint's blocks and heads.
    """
    ckpt = read_checkpoint(source)
    absent = [t for t in models if t not in ckpt["weights"]]
    if absent:
        raise ConfigError(f"train.init {source}: no weights for task(s) {absent}; it has {list(ckpt['weights'])}")
    for task, model in models.items():
        own = model.state_dict()
        state = {k: v.float() for k, v in ckpt["weights"][task].items()}
        other_stem = sorted(k for k in state if k not in own and is_embedding_key(k.removeprefix("encoder.")))
        state = {k: v for k, v in state.items() if k not in other_stem}
        bad = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and
               v.shape != own[k].shape] + [f"unexpected {k}" for k in state if k not in own]
        if bad:
            raise ConfigError(f"train.init {source} [{task}] does not fit the model: " + "; ".join(bad[:5]))
        fresh = sorted(set(own) - set(state))
        model.load_state_dict({**own, **state})
        log.info("train.init: %s from %s%s%s", task, source, f" (fresh: {', '.join(fresh)})" if fresh else "",
                 f" (another stem, not used: {', '.join(other_stem)})" if other_stem else "")
    encoder = shared_encoder_of(models)
    if encoder is not None:  # each task above loaded its own encoder into the one shared: the last one won
        first = next(iter(models))
        mine = encoder.state_dict()
        ref = {k.removeprefix("encoder."): v.float() for k, v in ckpt["weights"][first].items()
               if k.startswith("encoder.") and k.removeprefix("encoder.") in mine}

        def same(task: str) -> bool:
            w = ckpt["weights"][task]
            return all(f"encoder.{k}" in w and torch.equal(w[f"encoder.{k}"].float(), v) for k, v in ref.items())

        differ = [t for t in models if not same(t)]
        encoder.load_state_dict({**mine, **ref})
        if differ:
            log.warning("train.init: %s holds a different encoder per task; the shared encoder starts from %s's "
                        "(those of %s are not used)", source, first, ", ".join(differ))


def git_commit() -> str:
    """HEAD of the source checkout, with ``-dirty`` when tracked files differ (``unknown`` outside git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], cwd=root, capture_output=True, text=True)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def merge_models(
    source: str, trained: nn.ModuleDict, cfg: ModelConfig, class_names: list[str], prov: dict[str, Any]
) -> tuple[nn.ModuleDict, dict[str, Any]]:
    """The models of checkpoint ``source`` with those of ``trained`` in place of their tasks, and a provenance
    that keeps ``source``'s record for the tasks taken from it. The architecture and classes must match."""
    try:
        loaded = load_models(source, cfg=cfg, shared=False)
    except CheckpointError as exc:
        raise ConfigError(f"export.merge: {exc}") from exc
    kept, meta = loaded.dense, loaded.meta
    if list(meta["class_names"]) != list(class_names):
        raise ConfigError(f"export.merge: {source} has other classes than this run's models")
    models = nn.ModuleDict({**kept, **trained})
    others = [t for t in kept if t not in trained]
    record = dict(prov, merged={"source": str(source), "tasks_from_source": others,
                                "source_provenance": meta.get("provenance", {})})
    return models, record


class Trainer:
    """Builds models, data and optimiser from a config dict and runs the loop (see ``train``)."""

    def __init__(
        self,
        cfg: dict[str, Any],
        train_set: Dataset | None = None,
        val_set: Dataset | None = None,
        command: str | None = None,
    ) -> None:
        self.cfg = cfg
        t = cfg["train"]
        self.tasks: list[str] = list(t["tasks"])
        if t["threads"]:
            torch.set_num_threads(int(t["threads"]))
        self.device = select_device(t["device"])
        self.info: DistInfo = init_distributed(self.device.type)
        if self.device.type == "cuda" and self.info.enabled:
            self.device = torch.device("cuda", self.info.local_rank)
        self.amp = self.device.type == "cuda" if t["amp"] == "auto" else bool(t["amp"])
        if self.amp and self.device.type != "cuda":
            raise ConfigError("train.amp=true needs a CUDA device; mixed precision is GPU-only here")
        if t["batch_size"] % self.info.world_size:
            raise ConfigError(f"train.batch_size {t['batch_size']} does not split over {self.info.world_size} ranks")
        self.local_batch = t["batch_size"] // self.info.world_size
        self.sensor = SensorEffects.from_config(cfg["sensor"])
        self.command = command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
        self.out_dir = Path(t["out_dir"])

        data = cfg["data"]
        size = tuple(data["size"] or cfg["model"].get("img_size") or ModelConfig().img_size)
        self.size = size
        if train_set is None:
            train_set = make_dataset(data, data["train_split"], size, data["augment"])
        self.train_set, self.val_set = train_set, val_set  # the validation set is opened when first needed
        self.class_names = class_names(data["dataset"], train_set)
        self.mcfg: ModelConfig = model_config(cfg, len(self.class_names))
        if len(self.train_set) < t["batch_size"]:
            raise ConfigError(f"training set has {len(self.train_set)} samples, fewer than train.batch_size")
        self.crop = tuple(t["crop"]) if t["crop"] else None
        if self.crop is not None:
            p = self.mcfg.patch_size
            if any(c % p for c in self.crop) or any(c > s for c, s in zip(self.crop, size, strict=True)):
                raise ConfigError(f"train.crop {list(self.crop)}: multiples of {p} within data size {list(size)}")
            if tuple(size) != tuple(self.mcfg.img_size):
                raise ConfigError(f"train.crop: data.size {list(size)} != model.img_size {list(self.mcfg.img_size)}")

        torch.manual_seed(t["seed"])
        models = build_task_models(self.mcfg, self.tasks, shared_encoder=t["shared_encoder"])
        self.shared_encoder = shared_encoder_of(models) is not None
        if self.mcfg.pretrained:  # first, so that train.init overrides what it holds (the stem stays ImageNet's)
            for report in load_pretrained_models(models, str(self.mcfg.pretrained)):
                log.info(report.summary())
        if t["init"]:
            warm_start(models, str(t["init"]))
        if cfg["export"]["merge"]:  # fail now rather than after the training
            merge_models(str(cfg["export"]["merge"]), models, self.mcfg, self.class_names, {})
        self.models = models.to(self.device)
        net = TaskModels(self.models)
        if self.info.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net: nn.Module = DistributedDataParallel(net, device_ids=ids)
        else:
            self.net = net
        self.units = training_units(self.models)
        groups = []
        for _, unit in self.units:
            decay = [p for n, p in unit.named_parameters() if p.ndim > 1 and "pos_embed" not in n]
            no_decay = [p for n, p in unit.named_parameters() if p.ndim <= 1 or "pos_embed" in n]
            groups += [{"params": decay, "weight_decay": t["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(groups, lr=t["lr"], betas=(0.9, 0.999))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, t["steps"], t["warmup_steps"], t["min_lr_ratio"])
        )
        self.step = 0
        self.elapsed = 0.0

    # ----------------------------------------------------------------- state
    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "elapsed_s": self.elapsed,
            "config": self.cfg,
            "model_config": self.mcfg.to_dict(),
            "models": {task: m.state_dict() for task, m in self.models.items()},
            "shared_encoder": self.shared_encoder,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
        }

    def save_state(self) -> None:
        """Training state for resume (rank 0 writes; atomic rename), and its compact snapshot when
        ``train.snapshot`` names one: the same state with float tensors in bf16 (half the size, small
        enough to commit), which a fresh checkout resumes from when ``out_dir`` holds no state."""
        if not self.info.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        _atomic_save(state, self.out_dir / STATE_FILE)
        snapshot = self.cfg["train"]["snapshot"]
        if snapshot:
            _atomic_save(snapshot_of(state, self.cfg["train"]["steps"]), Path(snapshot))

    def _state_path(self) -> Path | None:
        """The latest training state: ``out_dir``'s, else the ``train.snapshot`` (a fresh checkout), else None."""
        path = self.out_dir / STATE_FILE
        snapshot = self.cfg["train"]["snapshot"]
        if not path.is_file() and snapshot and Path(snapshot).is_file():
            path = Path(snapshot)
        return path if path.is_file() else None

    def maybe_resume(self) -> None:
        """Continue from the latest state (``_state_path``) when ``train.resume`` allows."""
        path = self._state_path()
        if self.cfg["train"]["resume"] and path is not None:
            self._load_state(path)

    def _load_state(self, path: Path) -> None:
        """Models, optimizer, scheduler and step of a saved state (a bf16 snapshot too: the optimizer casts its
        moments back to the parameters' fp32 and the models copy into fp32 parameters)."""
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["model_config"] != self.mcfg.to_dict() or sorted(state["models"]) != sorted(self.tasks):
            raise ConfigError(
                f"{path}: cannot resume, its model config/tasks differ from this config "
                f"({state['model_config']} {sorted(state['models'])}); use another train.out_dir or train.resume=false"
            )
        if state.get("shared_encoder", False) != self.shared_encoder:  # the optimizer's groups differ too
            raise ConfigError(
                f"{path}: cannot resume, it was trained with train.shared_encoder={state.get('shared_encoder', False)}"
                f"; use another train.out_dir or train.resume=false"
            )
        # load_state_dict copies into the existing parameters, so a shared encoder stays one object (its
        # weights, equal in every task's entry, are written once per task)
        for task, sd in state["models"].items():
            self.models[task].load_state_dict(sd)
        self.step, self.elapsed = state["step"], state["elapsed_s"]
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        elif self.step < self.cfg["train"]["steps"] and self.info.is_main:  # snapshot_of a finished run
            log.warning("%s is the snapshot of a finished run, without the optimizer's moments: training on from "
                        "step %d to %d with fresh ones", path, self.step, self.cfg["train"]["steps"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.info.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    def provenance(self, val_metrics: dict[str, Any] | None) -> dict[str, Any]:
        data = self.cfg["data"]
        return {
            "command": self.command,
            "config": self.cfg,
            "steps": self.step,
            "train_time_s": round(self.elapsed, 1),
            "git_commit": git_commit(),
            "dataset": {
                "name": data["dataset"],
                "root": str(data["root"]),
                "val_root": str(data["val_root"] or data["root"]),
                "train_split": data["train_split"],
                "train_samples": len(self.train_set),
                "val_split": data["val_split"],
                "val_samples": len(self.val_set) if self.val_set is not None else 0,
            },
            "world_size": self.info.world_size,
            "shared_encoder": self.shared_encoder,
            "device": str(self.device),
            "torch": str(torch.__version__),
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "val_metrics": val_metrics,
        }

    def save_models(self, val_metrics: dict[str, Any] | None) -> None:
        if not self.info.is_main:
            return
        prov = self.provenance(val_metrics)
        save_checkpoint(self.out_dir / MODEL_FILE, self.models, self.mcfg, self.class_names, prov)
        export = self.cfg["export"]
        if export["path"]:
            models = self.models
            if export["merge"]:
                models, prov = merge_models(export["merge"], self.models, self.mcfg, self.class_names, prov)
            save_checkpoint(export["path"], models, self.mcfg, self.class_names, prov, half=export["half"])
            log.info("exported %s (half=%s, tasks %s)", export["path"], export["half"], ", ".join(models))

    def export_state(self, path: str | Path) -> int:
        """Write the models of the latest training state (``_state_path``, whatever ``train.resume`` says) as a
        checkpoint at ``path``, without training; returns its step. A long run can be evaluated (``mtshare eval``)
        while it goes on, or where it stopped, without waiting for its end."""
        state = self._state_path()
        if state is None:
            raise ConfigError(f"no training state to export: neither {self.out_dir / STATE_FILE} nor a snapshot")
        self._load_state(state)
        prov = self.provenance(None)
        prov["exported_from_state"] = True  # an intermediate model, not the end of the run
        save_checkpoint(path, self.models, self.mcfg, self.class_names, prov)
        return self.step

    # ------------------------------------------------------------------ loop
    def _batches(self):
        """Endless batches; the order depends on seed and epoch only (identical for any process count)."""
        t = self.cfg["train"]
        steps_per_epoch = len(self.train_set) // t["batch_size"]
        epoch, skip = divmod(self.step, steps_per_epoch)
        while True:
            sampler = DistributedSampler(
                self.train_set, self.info.world_size, self.info.rank, shuffle=True, seed=t["seed"], drop_last=True
            )
            sampler.set_epoch(epoch)
            loader = DataLoader(
                self.train_set,
                batch_size=self.local_batch,
                sampler=_SkipSampler(sampler, skip * self.local_batch),
                num_workers=self.cfg["data"]["num_workers"],
                drop_last=True,
                pin_memory=self.device.type == "cuda",
            )
            # DistributedSampler interleaves ranks: global batch k = indices [kB, (k+1)B) for any world size
            yield from loader
            epoch, skip = epoch + 1, 0

    def _val_loader(self) -> DataLoader | None:
        data = self.cfg["data"]
        if self.val_set is None and data["val_split"]:
            root = data["val_root"] or data["root"]
            self.val_set = make_dataset({**data, "root": root}, data["val_split"], self.size, False)
        if self.val_set is None:
            return None
        n = len(self.val_set)
        cap = self.cfg["data"]["max_val_samples"]
        n = min(n, cap) if cap else n
        share = Subset(self.val_set, list(range(self.info.rank, n, self.info.world_size)))
        return DataLoader(share, batch_size=max(1, self.local_batch), num_workers=self.cfg["data"]["num_workers"])

    def validate(self) -> dict[str, Any] | None:
        loader = self._val_loader()
        if loader is None:
            return None
        forward = (lambda x: run_tasks(self.models, x)) if self.shared_encoder else None  # the encoder once
        return evaluate(self.models, loader, self.device, self.mcfg.num_classes, self.info, self.amp, forward=forward,
                        canonical_focal=self.mcfg.canonical_focal)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimiser step on one (local) batch; returns the global mean loss per task."""
        t = self.cfg["train"]
        image = batch["image"].to(self.device, non_blocking=True)
        targets = {task: batch[task].to(self.device, non_blocking=True) for task in self.tasks if task in batch}
        aug = t["batch_augment"]
        if aug.get("hflip") or aug.get("colour"):
            image, targets = batch_augment(
                image, targets, self.step, t["seed"], self.info, bool(aug.get("hflip")), float(aug.get("colour", 0.0))
            )
        for task in self.tasks:  # ground truth made from the (augmented) image itself, for tasks that define it
            spec = task_spec(task)
            if task not in targets and spec.target_from_image is not None:
                targets[task] = spec.target_from_image(image)
        # sensor effects after the targets made from the image: the model sees through them, its targets do not
        image = apply_sensor_effects(image, self.sensor, t["seed"], self.step, self.info.rank, self.info.world_size)
        if "depth" in targets and self.mcfg.canonical_focal is not None and "focal" in batch:
            # the depth a camera of the canonical focal length would see (models/focal.py)
            targets["depth"] = canonical_depth(targets["depth"], self.mcfg.canonical_focal, batch["focal"])
        offset = None
        full_res = self.step >= t["steps"] - t["full_res_steps"]
        if self.crop is not None and not full_res:
            p = self.mcfg.patch_size
            offset = crop_offset(self.step, t["seed"], tuple(image.shape[-2:]), self.crop, p)
            ys = slice(offset[0] * p, offset[0] * p + self.crop[0])
            xs = slice(offset[1] * p, offset[1] * p + self.crop[1])
            image = image[..., ys, xs]
            targets = {k: v[..., ys, xs] for k, v in targets.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            outputs = self.net(normalise(image), offset)
        sums, counts = [], []
        for task in self.tasks:
            s, c = task_loss(task, outputs[task], targets)
            sums.append(s)
            counts.append(c)
        stats = torch.cat([torch.stack(counts).double(), torch.stack(sums).detach().double()])
        all_reduce_sum(stats, self.info)
        n = len(self.tasks)
        total = sum(
            t["loss_weights"].get(task, 1.0) * sums[i] * self.info.world_size / stats[i].clamp_min(1).float()
            for i, task in enumerate(self.tasks)
        )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if t["grad_clip"]:
            for _, unit in self.units:  # each parameter once (``training_units``)
                nn.utils.clip_grad_norm_(unit.parameters(), t["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return {task: float(stats[n + i] / stats[i].clamp_min(1)) for i, task in enumerate(self.tasks)}

    def _log(self, record: dict[str, Any]) -> None:
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / METRICS_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    def run(self) -> dict[str, Any] | None:
        """Train to ``train.steps`` (resuming when possible), evaluate, save; returns validation metrics."""
        t = self.cfg["train"]
        self.maybe_resume()
        for m in self.models.values():
            m.train()
        bar = tqdm(total=t["steps"], initial=self.step, desc="train", disable=not self.info.is_main, mininterval=10)
        window: dict[str, list[float]] = {task: [] for task in self.tasks}
        batches = self._batches()
        t_last, seen = time.perf_counter(), 0
        val = None
        while self.step < t["steps"]:
            t0 = time.perf_counter()
            losses = self.train_step(next(batches))
            self.elapsed += time.perf_counter() - t0
            seen += t["batch_size"]
            for task, v in losses.items():
                window[task].append(v)
            bar.update(1)
            if self.step % t["log_every"] == 0 or self.step == t["steps"]:
                now = time.perf_counter()
                record = {
                    "step": self.step,
                    "lr": self.scheduler.get_last_lr()[0],
                    **{f"loss/{k}": sum(v) / len(v) for k, v in window.items() if v},
                    "imgs_per_s": seen / max(1e-9, now - t_last),
                    "elapsed_s": round(self.elapsed, 1),
                }
                self._log(record)
                bar.set_postfix({k[5:8]: f"{v:.3f}" for k, v in record.items() if k.startswith("loss/")})
                window = {task: [] for task in self.tasks}
                t_last, seen = now, 0
            if self.step % t["ckpt_every"] == 0 and self.step < t["steps"]:
                self.save_state()
            if t["eval_every"] and self.step % t["eval_every"] == 0 and self.step < t["steps"]:
                val = self.validate()
                self._log({"step": self.step, "val": val})
        bar.close()
        self.save_state()
        try:
            val = self.validate()
        except (FileNotFoundError, ValueError) as exc:  # keep the trained models even if validation data is absent
            log.warning("final validation skipped: %s", exc)
            val = None
        if val is not None:
            for task, m in self.models.items():
                val[task]["params_M"] = count_parameters(m) / 1e6
                val[task]["GMACs"] = count_gmacs(m, tuple(self.mcfg.img_size))
            self._log({"step": self.step, "val": val})
        self.save_models(val)
        barrier(self.info)
        return val


def train(
    cfg: dict[str, Any],
    train_set: Dataset | None = None,
    val_set: Dataset | None = None,
    command: str | None = None,
) -> Trainer:
    """Train per ``cfg`` (see ``config.DEFAULTS``); datasets default to the configured loaders."""
    trainer = Trainer(cfg, train_set, val_set, command)
    try:
        trainer.run()
    finally:
        shutdown(trainer.info)
    return trainer
