"""Model-quality benchmark (issue 16): are the models good enough to judge the task-sharing method by?

Measures, in one run and side by side, up to three ways to produce segmentation, depth and normals:

1. independent models: the three single-task models of ``--checkpoint`` (default: the shipped weights), run
   densely, one after the other (what the node runs with sharing.enabled false);
2. multi-task model (``--multitask CKPT``, optional): one encoder shared by three heads, a checkpoint of
   ``mtshare train ... train.shared_encoder=true``, the encoder run once per frame;
3. the shared engine at the node's defaults: the base task in full, the sub-tasks from their trained deltas,
   with the sharing settings the node starts with (its parameter table's defaults, read from the package).

On each split (``--splits``; default the held-out test split and the generalisation split of
scripts/render_data_v3.sh) it reports every metric ``mtshare eval`` reports (mIoU, pixel accuracy; depth
abs-rel, scale-aligned abs-rel, RMSE, delta<1.25; normals mean and median angle, % within 11.25 / 22.5 / 30
deg), computed by the same code (``mtshare_ros.training.evaluate``), and the executed GMACs per frame of all
three tasks (the engine's counting rules, so the variants compare like with like; the engine's from what it
ran on those frames). Then the goals of issue 16 (listed at the end of ``--help``; bench/models_report.py
holds them), each met or not with the measured value, and per metric how many times worse the generalisation
split is than the test split. Frames per second are medians of
``--frames`` batch-1 forward passes after warm-up, every variant and the base task alone (the reference: a
loaded machine slows it too) timed in the same interleaved rounds on frames of the first split.

Writes bench/results/<out-name>.{json,md} with the torch version and CPU capability (bench/environment.py).
This file loads and measures; the goals and the Markdown are bench/models_report.py's.

    .venv/bin/python bench/models.py                                   # the real run (~5 min on 2 idle cores)
    .venv/bin/python bench/models.py --checkpoint runs/v3_finetune/default.pt --multitask runs/v3_multitask/model.pt
    .venv/bin/python bench/models.py --max-samples 24 --frames 10 --out-name models_quick   # smoke run
    .venv/bin/python bench/models.py --real-root /work/data/7scenes --real-every 10 --frames 0 ...  # real check

With ``--real-root DIR`` (a 7-Scenes-layout folder: mtshare_ros/data/rgbd_frames.py) it also scores depth and
normals on those real frames (``--real-frames``, default 0-599; normals derived from the smoothed depth), each
variant's depth made metric with the frames' focal length where the model has a canonical one
(mtshare_ros/models/focal.py), beside two baselines: a constant depth at each frame's true median, and every
normal facing the camera. Without the folder that part is skipped. Only metrics are stored, never pixels.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from mtshare_ros.data.rgbd_frames import RGBDFrames
from mtshare_ros.models.checkpoint import CheckpointError, checkpoint_shares_encoder, load_multitask_checkpoint
from mtshare_ros.models.vit import DenseViT, run_tasks
from mtshare_ros.ros.params import PARAMS, frame_settings
from mtshare_ros.runtime.settings import FrameSettings
from mtshare_ros.sharing.cost import dense_model_macs, multitask_model_macs
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.loader import BASE_TASK, load_models
from mtshare_ros.training.datasets import make_dataset
from mtshare_ros.training.evaluate import evaluate, evaluate_engine, normalise
from mtshare_ros.training.losses import MIN_VALID_DEPTH
from mtshare_ros.training.metrics import build_metrics

# bench/ is not a package: run as ``python bench/models.py`` its siblings import through sys.path[0]
from environment import environment_record
from models_report import (
    FPS_CONDITIONS,
    TASKS,
    generalisation_goal_rows,
    generalisation_rows,
    goal_rows,
    goals_text,
    markdown,
)

log = logging.getLogger("models")
ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
DEFAULT_SPLITS = ("test=data/v3/test", "generalisation=data/v3/generalisation")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/models.py",
        description=__doc__.split("\n\n    .venv")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=goals_text(),
    )
    node_checkpoint = next(p.default for p in PARAMS if p.name == "checkpoint")
    ap.add_argument("--checkpoint", default="independent",
                    help="checkpoint of the three independent single-task models ('independent': the shipped ones)")
    ap.add_argument("--engine", default=node_checkpoint, metavar="CKPT",
                    help="what the shared engine loads, as the node's 'checkpoint' parameter would (default: the "
                    "node's, %(default)s; a dense checkpoint adds the trained sub-task deltas beside it, "
                    "<stem>_<task>.pt; a shared checkpoint holds its own); a dense checkpoint without trained deltas "
                    "runs exact ones, said so in the notes")
    ap.add_argument("--multitask", default=None, metavar="CKPT",
                    help="a multi-task checkpoint (train.shared_encoder=true), measured as a third variant")
    ap.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), metavar="NAME=ROOT",
                    help="datasets to evaluate on (a folder with READY, NYUD-v2 layout); the generalisation ratios "
                    "are taken between the splits named 'test' and 'generalisation'")
    ap.add_argument("--split", default="val", help="the list inside each dataset (render_data_v3.sh: all in val)")
    ap.add_argument("--max-samples", type=int, default=0,
                    help="evaluate N frames per split, evenly spaced (0: all; the goals are judged on all)")
    ap.add_argument("--frames", type=int, default=50, help="timed frames per forward (the median counts)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed rounds before the timed ones")
    ap.add_argument("--threads", type=int, default=FPS_CONDITIONS["threads"],
                    help="torch CPU threads for everything (the fps goal is judged at 2)")
    ap.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                    help="evaluation size (default: the checkpoint's img_size); timing is at 240x320 always")
    ap.add_argument("--batch-size", type=int, default=8,
                    help="evaluation batch (the outputs do not depend on it: GroupNorm, and the engine selects "
                    "tokens per frame; timing is always batch 1, as the node runs frames)")
    ap.add_argument("--num-workers", type=int, default=1, help="data loading processes")
    ap.add_argument("--real-root", default=None, metavar="DIR",
                    help="real RGB-D frames in the 7-Scenes layout (frame-%%06d.color.jpg / .depth.png, "
                    "camera-intrinsics.txt): depth and normals are scored on them too; skipped when absent")
    ap.add_argument("--real-frames", nargs=2, type=int, default=[0, 599], metavar=("FIRST", "LAST"),
                    help="the real frames scored (7-Scenes: 600-999 are reserved for an independent check)")
    ap.add_argument("--real-every", type=int, default=1, help="every N-th real frame (10 for quick checks)")
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--out-name", default="models", help="writes OUT_DIR/OUT_NAME.json and .md")
    args = ap.parse_args(argv)
    args.splits = [_split_arg(ap, s) for s in args.splits]
    return args


def _split_arg(ap: argparse.ArgumentParser, text: str) -> tuple[str, Path]:
    """``NAME=ROOT``, or a bare ROOT named by its folder."""
    name, _, root = text.rpartition("=") if "=" in text else ("", "", text)
    root_path = Path(root)
    name = name or root_path.name
    if not name or not root:
        ap.error(f"--splits {text!r}: expected NAME=ROOT")
    return name, root_path if root_path.is_absolute() or root_path.exists() else ROOT / root_path


# ---------------------------------------------------------------- what runs
def node_settings() -> FrameSettings:
    """The settings the node starts with: its parameter table's defaults, resolved as the node resolves them."""
    return frame_settings({p.name: p.default for p in PARAMS})


@dataclass
class Variant:
    """One way to produce all three tasks. ``measure(loader, size, num_classes)`` -> metrics per task and executed
    GMACs per frame (plus the engine's statistics for the engine); ``forward(x)`` is what gets timed;
    ``gmacs_on(frames)``: executed GMACs per frame on those frames (counted, not timed)."""

    key: str
    source: str
    measure: Callable[[DataLoader, tuple[int, int], int], dict[str, Any]]
    forward: Callable[[torch.Tensor], Any]
    gmacs_on: Callable[[list[torch.Tensor]], float]
    canonical_focal: float | None = None  # the depth model's (models/focal.py): None predicts metric depth

    def outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every task's output of ``forward`` (the engine returns its statistics beside them)."""
        out = self.forward(x)
        return out[0] if isinstance(out, tuple) else out


def _size(frames: list[torch.Tensor]) -> tuple[int, int]:
    return tuple(frames[0].shape[-2:])


def independent_variant(models: dict[str, DenseViT], source: str) -> Variant:
    focal = models["depth"].cfg.canonical_focal

    def measure(loader: DataLoader, size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        metrics = evaluate(models, loader, CPU, num_classes, canonical_focal=focal)
        gmacs = {t: dense_model_macs(m, size) / 1e9 for t, m in models.items()}
        return {"metrics": metrics, "gmacs": gmacs, "gmacs_total": sum(gmacs.values())}

    def gmacs_on(frames: list[torch.Tensor]) -> float:
        return sum(dense_model_macs(m, _size(frames)) for m in models.values()) / 1e9

    return Variant("independent", source, measure, lambda x: {t: m(x) for t, m in models.items()}, gmacs_on, focal)


def multitask_variant(models: dict[str, DenseViT], source: str) -> Variant:
    focal = models["depth"].cfg.canonical_focal

    def measure(loader: DataLoader, size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        metrics = evaluate(models, loader, CPU, num_classes, forward=lambda x: run_tasks(models, x),
                           canonical_focal=focal)
        return {"metrics": metrics, "gmacs_total": multitask_model_macs(models, size) / 1e9}

    def gmacs_on(frames: list[torch.Tensor]) -> float:
        return multitask_model_macs(models, _size(frames)) / 1e9

    return Variant("multitask", source, measure, lambda x: run_tasks(models, x), gmacs_on, focal)


def engine_variant(shared: SharedMultiTaskModel, settings: FrameSettings, source: str) -> Variant:
    """The engine as the node calls it (``runtime/predictor.py``): the sub-tasks of the frame's tasks, each at its
    threshold, one token cap; it returns its statistics with the outputs, as the node gets them."""
    subtasks = [t for t in settings.tasks if t != BASE_TASK]
    thresholds = settings.sharing.thresholds(subtasks)
    cap = settings.sharing.max_token_fraction
    focal = shared.base.cfg.canonical_focal

    def measure(loader: DataLoader, size: tuple[int, int], num_classes: int) -> dict[str, Any]:
        run = evaluate_engine(shared, list(TASKS), loader, CPU, num_classes, thresholds, cap, canonical_focal=focal)
        # not run.macs_vs_independent: its reference is the sub-tasks run densely from their start layer, not
        # the independent models measured beside it (the report compares with those)
        return {"metrics": run.metrics, "gmacs": run.gmacs, "gmacs_total": run.gmacs_total,
                "recomputed_fraction": run.recomputed_fraction}

    def forward(x: torch.Tensor) -> Any:
        return shared(x, thresholds, cap, tasks=subtasks)

    @torch.inference_mode()
    def gmacs_on(frames: list[torch.Tensor]) -> float:  # what it executes depends on the frame
        return statistics.fmean(forward(x)[1].macs_total for x in frames) / 1e9

    return Variant("engine", source, measure, forward, gmacs_on, focal)


def load_variants(args: argparse.Namespace, settings: FrameSettings) -> tuple[list[Variant], DenseViT, dict, list[str]]:
    """The variants to measure, the engine's base model (the timing reference), the independent checkpoint's
    metadata and notes on what was loaded. Exits with one line when a checkpoint cannot serve its role."""
    notes: list[str] = []
    engine_ckpt = args.engine or args.checkpoint
    multitask = load_multitask(args.multitask) if args.multitask else None  # first: refused before other loads
    try:
        loaded = load_models(args.checkpoint, shared=engine_ckpt == args.checkpoint)
        if loaded.sharing_source == "shared checkpoint":
            raise SystemExit(f"--checkpoint {args.checkpoint}: a shared checkpoint (base + deltas), not independent "
                             "models; pass it as --engine")
        if checkpoint_shares_encoder(loaded.meta):
            notes.append(f"--checkpoint {loaded.path} holds a multi-task model; here its tasks run as three models")
        engine = loaded if engine_ckpt == args.checkpoint else load_models(engine_ckpt, shared=True)
    except CheckpointError as exc:
        raise SystemExit(f"bench/models.py: {exc}") from None
    missing = [t for t in TASKS if t not in loaded.dense]
    if missing:
        raise SystemExit(f"--checkpoint {args.checkpoint}: no model for {missing}")
    if engine.shared is None or set(engine.shared.tasks) != set(TASKS):
        raise SystemExit(f"--engine {engine_ckpt}: no base task plus sub-tasks for {list(TASKS)}")
    if engine.cfg.num_classes != loaded.cfg.num_classes:
        raise SystemExit(f"--engine {engine_ckpt}: {engine.cfg.num_classes} classes, --checkpoint has "
                         f"{loaded.cfg.num_classes}")
    if engine.sharing_source.startswith("exact deltas"):
        notes.append(f"the engine runs exact deltas of {engine.path} (no trained sub-tasks for it): skipped tokens "
                     "are approximated by deltas that were never trained to be skipped")
    dense = {t: loaded.dense[t].eval() for t in TASKS}
    shared = engine.shared.eval()
    variants = [independent_variant(dense, str(loaded.path)),
                engine_variant(shared, settings, f"{engine.path}: {engine.sharing_source}")]
    if multitask is not None:
        variant, classes = multitask
        if classes != loaded.cfg.num_classes:
            raise SystemExit(f"--multitask {args.multitask}: {classes} classes, --checkpoint has "
                             f"{loaded.cfg.num_classes}")
        variants.insert(1, variant)
    else:
        notes.append("no --multitask checkpoint: the multi-task model was not measured")
    return variants, shared.base, loaded.meta, notes


def load_multitask(path: str) -> tuple[Variant, int]:
    """The multi-task variant and its number of classes; refused, said why, when ``path`` is not a multi-task
    checkpoint."""
    try:
        models, meta = load_multitask_checkpoint(path, list(TASKS))
    except CheckpointError as exc:
        raise SystemExit(f"--multitask: {exc}") from None
    cfg = meta["model_config"]
    prov = meta.get("provenance", {})
    h, w = cfg.img_size
    source = f"{path} (ViT {cfg.depth} x {cfg.embed_dim}, trained at {h}x{w}, {prov.get('steps', '?')} steps)"
    return multitask_variant({t: models[t].eval() for t in TASKS}, source), cfg.num_classes


# ---------------------------------------------------------------- data
def require_ready(root: Path) -> None:
    """Exit unless ``root`` is a complete dataset (READY is written last, scripts/render_data_v3.sh)."""
    if not (root / "READY").is_file():
        raise SystemExit(f"{root}: no READY file (not rendered, or still rendering: scripts/render_data_v3.sh)")


def load_split(root: Path, split: str, size: tuple[int, int], max_samples: int) -> tuple[Dataset, int]:
    """The split's frames (``max_samples`` evenly spaced, so that a quick run still sees every part of it) and
    how many it has; exits when the dataset is not complete (READY is written last, render_data_v3.sh)."""
    require_ready(root)
    ds = make_dataset({"dataset": "synthetic", "root": str(root)}, split, size, augment=False)
    n = len(ds)
    if n == 0:
        raise SystemExit(f"{root}: split {split!r} is empty")
    if 0 < max_samples < n:
        ds = Subset(ds, [round(i * (n - 1) / max(1, max_samples - 1)) for i in range(max_samples)])
    return ds, n


# ---------------------------------------------------------------- real frames
REAL_TASKS = ("depth", "normals")


def measure_real(variants: list[Variant], args: argparse.Namespace, size: tuple[int, int]) -> dict[str, Any]:
    """Depth and normals of every variant on the real frames of ``--real-root``, and the two baselines."""
    root = Path(args.real_root)
    first, last = args.real_frames
    ds = RGBDFrames(root, size, first, last, args.real_every)
    out: dict[str, Any] = {"root": str(root), "frames": [first, last], "every": args.real_every, "samples": len(ds),
                           "focal_px": float(ds.K[0, 0]), "variants": {}}
    for v in variants:
        log.info("real frames: %s (%d frames)", v.key, len(ds))
        loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.num_workers)
        stand_in = {t: torch.nn.Identity() for t in REAL_TASKS}  # ``evaluate`` only names the tasks by them
        metrics = evaluate(stand_in, loader, CPU, 1, forward=lambda x, v=v: {t: v.outputs(x)[t] for t in REAL_TASKS},
                           canonical_focal=v.canonical_focal)
        out["variants"][v.key] = {"metrics": metrics, "canonical_focal": v.canonical_focal}
    out["baselines"] = real_baselines(ds, args)
    return out


def real_baselines(ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """A constant depth at each frame's true median and every normal facing the camera, scored as the models."""
    depth, normals = build_metrics("depth", 1), build_metrics("normals", 1)
    for batch in DataLoader(ds, batch_size=args.batch_size, num_workers=args.num_workers):
        gt = batch["depth"]
        med = torch.stack([d[d > MIN_VALID_DEPTH].median() if (d > MIN_VALID_DEPTH).any() else torch.tensor(1.0)
                           for d in gt])
        depth.update(med.view(-1, 1, 1, 1).expand(-1, 1, *gt.shape[-2:]).clone(), gt)
        facing = torch.zeros_like(batch["normals"])
        facing[:, 2] = -1.0
        normals.update(facing, batch["normals"])
    return {"constant_median_depth": depth.compute(), "facing_camera_normals": normals.compute()}


# ---------------------------------------------------------------- timing
@torch.inference_mode()
def time_interleaved(
    forwards: dict[str, Callable[[torch.Tensor], Any]], frames: list[torch.Tensor], n: int, warmup: int
) -> dict[str, list[float]]:
    """Milliseconds of each forward on the same frames, in rounds: every round runs each forward once on the next
    frame, in an order rotated per round (none always first after another's caches), so a change of load hits
    all of them alike."""
    order = list(forwards)
    times: dict[str, list[float]] = {k: [] for k in order}
    for i in range(warmup + n):
        x = frames[i % len(frames)]
        k = i % len(order)
        for name in order[k:] + order[:k]:
            t0 = time.perf_counter()
            forwards[name](x)
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def timing(variants: list[Variant], base: DenseViT, first_split: Path, split: str, args: argparse.Namespace) -> dict:
    """Frames per second of every variant and of the base task alone at the goal's size, batch 1."""
    size = tuple(FPS_CONDITIONS["size"])
    ds, _ = load_split(first_split, split, size, max(1, args.frames))
    frames = [normalise(ds[i]["image"][None]) for i in range(len(ds))]
    forwards = {"base": base, **{v.key: v.forward for v in variants}}
    loads = [os.getloadavg()[0]]
    times = time_interleaved(forwards, frames, args.frames, args.warmup)
    loads.append(os.getloadavg()[0])
    gmacs = {"base": dense_model_macs(base, size) / 1e9, **{v.key: v.gmacs_on(frames) for v in variants}}
    med = {k: statistics.median(v) for k, v in times.items()}
    p90 = {k: sorted(v)[min(len(v) - 1, int(0.9 * len(v)))] for k, v in times.items()}
    return {
        "size": list(size), "threads": torch.get_num_threads(), "frames": args.frames, "warmup": args.warmup,
        "frames_from": str(first_split), "median_ms": med, "p90_ms": p90,
        "fps": {k: 1e3 / v for k, v in med.items()}, "vs_base": {k: v / med["base"] for k, v in med.items()},
        "gmacs": gmacs, "loadavg": [round(v, 2) for v in loads],
    }


# ---------------------------------------------------------------- the run
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    settings = node_settings()
    for _, root in args.splits:  # before loading anything: a split still rendering stops the run at once
        require_ready(root)
    variants, base, meta, notes = load_variants(args, settings)
    cfg = meta["model_config"]
    size = tuple(args.size) if args.size else tuple(cfg.img_size)
    results: dict[str, dict[str, Any]] = {v.key: {} for v in variants}
    splits = {}
    t_eval = time.perf_counter()
    for name, root in args.splits:
        ds, available = load_split(root, args.split, size, args.max_samples)
        splits[name] = {"root": str(root), "split": args.split, "samples": len(ds), "available": available}
        for v in variants:
            log.info("%s split: %s (%d frames)", name, v.key, len(ds))
            loader = DataLoader(ds, batch_size=args.batch_size, num_workers=args.num_workers)
            results[v.key][name] = v.measure(loader, size, cfg.num_classes)
    real = None
    if args.real_root and Path(args.real_root).is_dir():
        real = measure_real(variants, args, size)
    elif args.real_root:
        notes.append(f"--real-root {args.real_root}: no such folder, the real frames were skipped")
    eval_s = time.perf_counter() - t_eval
    log.info("timing %d frames per forward", args.frames)
    timed = timing(variants, base, args.splits[0][1], args.split, args) if args.frames > 0 else None
    if not settings.sharing.enabled:
        notes.append("the node's default is sharing.enabled false (it runs the independent models); the engine is "
                     "measured at its default sharing settings all the same")
    if args.max_samples:
        notes.append(f"quick run: {args.max_samples} frames per split, not the whole splits the goals are judged on")
    ratios = generalisation_rows(results)
    result = {
        "benchmark": "models",
        "command": "python bench/models.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "environment": environment_record(),
        "settings": {
            "size": list(size), "batch_size": args.batch_size, "max_samples": args.max_samples,
            "node_sharing": {"enabled": settings.sharing.enabled,
                             "thresholds": settings.sharing.thresholds([t for t in TASKS if t != BASE_TASK]),
                             "max_token_fraction": settings.sharing.max_token_fraction},
            "node_temporal_enabled": settings.temporal.enabled,
            "evaluation_s": round(eval_s, 1),
            "wall_s": round(time.perf_counter() - t_start, 1),
        },
        "variants": {v.key: {"source": v.source} for v in variants},
        "splits": splits,
        "class_names": list(meta["class_names"]),
        "results": results,
        "timing": timed,
        "generalisation": ratios,
        "real": real,
        "goals": goal_rows(results, timed) + generalisation_goal_rows(ratios),
        "notes": notes,
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{args.out_name}.json", out / f"{args.out_name}.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(markdown(result))
    for g in result["goals"]:
        print(f"{g['goal']:<60} {g['variant']:<12} {g['split'] or '-':<24} {g['value']:.3f}  {g['met']}")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
