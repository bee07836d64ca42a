"""Task-sharing benchmark: base task only, three independent models, and the shared engine, side by side.

One run measures, per variant: executed GMACs per frame (counted from what ran), wall time per frame
(CPU; CUDA too when present, with the device name), parameters stored, the fraction of tokens the
sub-tasks recomputed, accuracy per task on the held-out synthetic split when it exists, and always the
deviation of each task's output from its independent model. Two settings:

* ``main``: the shipped models (mtshare_ros/weights/default.pt; seeded untrained ones while it does not
  exist, said so), shared by compressing ``dW = W_sub - W_base`` of the independent models;
* ``toy`` (``--toy-steps`` > 0): a small ViT trained here end to end on the procedural toy scenes:
  independent models, then each sub-task trained from the base with the sharing steps
  (mtshare_ros/sharing/train_steps.py), so the deltas are what the method makes them.

A table compares the delta structures (storage, reconstruction error, time of one layer).
Writes bench/results/task_sharing.{json,md}.

    .venv/bin/python bench/task_sharing.py --threads 2  # full run (the committed results; ~20 min on 2 cores)
    .venv/bin/python bench/task_sharing.py --quick    # smoke run (few frames, samples and toy steps)
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from mtshare_ros.inference import load_task_models
from mtshare_ros.models.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_SUBTASKS, load_checkpoint
from mtshare_ros.models.vit import DenseViT, ModelConfig, build_task_models
from mtshare_ros.sharing import SharedMultiTaskModel, compress
from mtshare_ros.sharing.checkpoint import base_fingerprint, load_shared
from mtshare_ros.sharing.train_steps import subtask_from_base, train_subtask
from mtshare_ros.training.evaluate import normalise
from mtshare_ros.training.losses import task_loss
from mtshare_ros.training.metrics import build_metrics
from mtshare_ros.training.toy_data import ToyScenes

log = logging.getLogger("task_sharing")
ROOT = Path(__file__).resolve().parent.parent
TASKS = ("segmentation", "depth", "normals")
GOALS = {"macs_vs_base": 1.35, "time_vs_base": 1.5, "storage_fraction": 0.15, "metric_rel": 0.03}
HEADLINE = {"segmentation": "mIoU", "depth": "rmse", "normals": "mean_deg"}
NODE_DEFAULT = (0.05, 0.1)  # sharing.threshold, sharing.max_token_fraction in config/mtshare.yaml


# ---------------------------------------------------------------- models and data
def load_models(checkpoint: str) -> tuple[dict[str, DenseViT], str, bool]:
    """Independent models from ``checkpoint``; ``auto`` falls back to seeded untrained models, said so."""
    path = DEFAULT_CHECKPOINT if checkpoint in ("auto", "default") else Path(checkpoint)
    if path.is_file():
        models, _ = load_checkpoint(path)
        return {t: models[t].eval() for t in TASKS}, str(path), True
    if checkpoint != "auto":
        raise SystemExit(f"checkpoint not found: {path}")
    torch.manual_seed(0)
    models = build_task_models(ModelConfig(), TASKS).eval()
    return {t: models[t] for t in TASKS}, "UNTRAINED (seed 0): no trained default weights yet", False


def load_eval_samples(root: Path, split: str, size: tuple[int, int], n: int) -> tuple[list[dict], str, bool]:
    """Samples of the held-out split when the dataset is READY, else toy scenes (stated; not ground truth
    for these models, so only deviations are reported)."""
    if (root / "READY").is_file():
        from mtshare_ros.training.datasets import make_dataset

        ds = make_dataset({"dataset": "synthetic", "root": str(root)}, split, size, augment=False)
        n = n if n > 0 else len(ds)
        idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(min(n, len(ds)))]
        return [ds[i] for i in idx], f"synthetic {split} split ({root}), {len(idx)} of {len(ds)} frames", True
    n = n if n > 0 else 40
    ds = ToyScenes(length=n, size=size, seed=1)
    desc = f"no synthetic data ({root / 'READY'} not found): {n} toy scenes as inputs, deviations only"
    return [ds[i] for i in range(n)], desc, False


def load_trained_shared(
    source: str, checkpoint: str, models: dict[str, DenseViT], ckpt_name: str
) -> tuple[SharedMultiTaskModel | None, str | None]:
    """The trained sub-tasks (``--shared``) on the benchmark's own base model, with a note on their origin."""
    if source == "none":
        return None, None
    if source == "default":
        if checkpoint not in ("auto", "default") or not all(f.is_file() for f in DEFAULT_SUBTASKS.values()):
            return None, None
        _, trained, meta = load_task_models("default")
        note = f"'trained shared': {meta['sharing_source']}"
        steps = {}
        for f in DEFAULT_SUBTASKS.values():
            steps.update(torch.load(f, map_location="cpu", weights_only=True)["provenance"].get("train_steps", {}))
    else:
        trained, meta = load_shared(source)
        note = f"'trained shared': {source}"
        steps = meta.get("provenance", {}).get("train_steps", {})
    note += ", sub-tasks trained from the base with the sharing steps: " + (
        ", ".join(f"{k} {v['history'][-1]['step']} steps" for k, v in steps.items() if v.get("history"))
        or "(no training record)"
    )
    if base_fingerprint(trained.base) != base_fingerprint(models["segmentation"]):
        raise SystemExit(f"{source}: its base is not the segmentation model of {ckpt_name}")
    trained.base = models["segmentation"]  # one base module for every variant
    return trained.eval(), note


# ---------------------------------------------------------------- variants
class Variant:
    """One way to produce the tasks. ``run(x)`` -> (outputs, executed MACs, engine stats); ``forward(x)``
    is what gets timed (for shared variants it includes the engine's statistics, as the node gets them)."""

    def __init__(self, name: str, kind: str, run, forward, params: int, detail: dict[str, Any]) -> None:
        self.name, self.kind, self.run, self.forward = name, kind, run, forward
        self.params, self.detail = params, detail


def dense_variant(name: str, models: dict[str, DenseViT], kind: str) -> Variant:
    def run(x: torch.Tensor):
        counter = FlopCounterMode(display=False)
        with counter:
            out = {t: m(x) for t, m in models.items()}
        return out, counter.get_total_flops() // 2, {}

    def forward(x: torch.Tensor):
        return {t: m(x) for t, m in models.items()}

    params = sum(p.numel() for m in models.values() for p in m.parameters())
    return Variant(name, kind, run, forward, params, {"tasks": list(models)})


def shared_variant(name: str, shared: SharedMultiTaskModel, thr: float, frac: float, delta: str) -> Variant:
    def run(x: torch.Tensor):
        out, stats = shared(x, thresholds=thr, max_token_fraction=frac)
        return out, stats["macs_total"], stats

    def forward(x: torch.Tensor):
        return shared(x, thresholds=thr, max_token_fraction=frac)[0]

    params = sum(p.numel() for p in shared.base.parameters())
    params += sum(st.storage()["values"] for st in shared.subtasks.values())
    return Variant(name, "shared", run, forward, params, {"delta": delta, "threshold": thr, "max_token_fraction": frac})


def time_variants(variants: list[Variant], x: torch.Tensor, frames: int, warmup: int) -> dict[str, float]:
    """Median ms per frame, variants interleaved frame by frame so that machine load hits all alike."""
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for i in tqdm(range(warmup + frames), desc=f"timing on {x.device.type}", mininterval=10):
            for v in variants:
                sync()
                t0 = time.perf_counter()
                v.forward(x)
                sync()
                if i >= warmup:
                    times[v.name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(t) for k, t in times.items()}


# ---------------------------------------------------------------- accuracy
def deviation(task: str, out: torch.Tensor, ref: torch.Tensor) -> float:
    """Distance to the independent model's output: seg % pixels of another class, depth mean relative
    difference, normals mean angle (deg)."""
    if task == "segmentation":
        return float((out.argmax(1) != ref.argmax(1)).float().mean() * 100)
    if task == "depth":
        return float(((out - ref).abs() / ref.clamp_min(1e-3)).mean())
    cos = (F.normalize(out, dim=1) * F.normalize(ref, dim=1)).sum(1).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos)).mean())


def accuracy(
    variants: list[Variant], independent: dict[str, DenseViT], samples: list[dict], num_classes: int, gt: bool
) -> dict[str, dict]:
    """Per variant: deviation from the independent models, recomputed fractions, metrics when ``gt``."""
    metrics = {v.name: {t: build_metrics(t, num_classes) for t in TASKS} for v in variants}
    dev = {v.name: {t: [] for t in TASKS} for v in variants}
    rec = {v.name: {t: [] for t in TASKS} for v in variants}
    with torch.no_grad():
        for s in tqdm(samples, desc="accuracy", mininterval=10):
            x = normalise(s["image"][None])
            ref = {t: m(x) for t, m in independent.items()}
            for v in variants:
                if v.kind == "shared":
                    out, _, stats = v.run(x)
                else:  # dense variants: same outputs without the operator counter's overhead
                    out, stats = v.forward(x), {}
                for t, o in out.items():
                    dev[v.name][t].append(deviation(t, o, ref[t]))
                    if gt:
                        metrics[v.name][t].update(o.float(), s[t][None])
                    if stats:
                        rec[v.name][t].append(stats["recomputed_fraction"].get(t, 1.0))
    res = {}
    for v in variants:
        entry: dict[str, Any] = {
            "deviation_vs_independent": {t: statistics.mean(d) for t, d in dev[v.name].items() if d}
        }
        if rec[v.name]["depth"]:
            entry["recomputed_fraction"] = {t: statistics.mean(r) for t, r in rec[v.name].items() if r}
        if gt:
            entry["metrics"] = {}
            for t in TASKS:
                if dev[v.name][t]:
                    m = metrics[v.name][t].compute()
                    entry["metrics"][t] = {k: val for k, val in m.items() if isinstance(val, float)}
            entry["headline"] = {t: entry["metrics"][t][HEADLINE[t]] for t in entry["metrics"]}
        res[v.name] = entry
    return res


def measure(
    variants: list[Variant],
    independent: dict[str, DenseViT],
    samples: list[dict],
    num_classes: int,
    gt: bool,
    frames: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """Cost, time and accuracy of every variant; ratios against the first (base only) and second
    (independent) variants."""
    x = normalise(samples[0]["image"][None])
    with torch.no_grad():
        macs = {v.name: v.run(x)[1] for v in variants}
    ms = time_variants(variants, x, frames, warmup)
    acc = accuracy(variants, independent, samples, num_classes, gt)
    base, ind = variants[0].name, variants[1].name
    rows = []
    for v in variants:
        entry = {
            "name": v.name,
            "kind": v.kind,
            **v.detail,
            "gmacs": macs[v.name] / 1e9,
            "ms_cpu": ms[v.name],
            "params": v.params,
            **acc[v.name],
        }
        entry["ratios"] = {
            "macs_vs_base": macs[v.name] / macs[base],
            "time_vs_base": ms[v.name] / ms[base],
            "macs_vs_independent": macs[v.name] / macs[ind],
            "time_vs_independent": ms[v.name] / ms[ind],
        }
        rows.append(entry)
    return rows


def cuda_times(variants: list[Variant], modules: list[torch.nn.Module], x: torch.Tensor, frames: int) -> dict:
    """fp16 CUDA medians (the engine runs sync-free there); models go back to CPU fp32 afterwards."""
    for m in modules:
        m.to("cuda", torch.float16)
    try:
        return time_variants(variants, x.to("cuda", torch.float16), frames, max(3, frames // 4))
    finally:
        for m in modules:
            m.to("cpu", torch.float32)


# ---------------------------------------------------------------- goals
def check_goals(v: dict[str, Any], ind: dict[str, Any], storage_fraction: float | None) -> dict[str, Any]:
    """The issue's goals for one shared variant, all at once: cheap but inaccurate does not count."""
    g: dict[str, Any] = {
        "variant": v["name"],
        "macs_vs_base": v["ratios"]["macs_vs_base"],
        "macs_ok": v["ratios"]["macs_vs_base"] <= GOALS["macs_vs_base"],
        "time_vs_base": v["ratios"]["time_vs_base"],
        "time_ok": v["ratios"]["time_vs_base"] <= GOALS["time_vs_base"],
        "storage_fraction": storage_fraction,
        "storage_ok": storage_fraction is not None and storage_fraction <= GOALS["storage_fraction"],
    }
    if "headline" in v and "headline" in ind:
        rel = {t: (v["headline"][t] - ind["headline"][t]) / abs(ind["headline"][t]) for t in ("depth", "normals")}
        g["metric_rel_change"] = rel  # rmse and mean angle: positive = worse
        g["accuracy_ok"] = all(r <= GOALS["metric_rel"] for r in rel.values())  # better is fine
    else:
        g["accuracy_ok"] = None  # no ground truth: unknown, never counted as met
    g["all_met"] = bool(g["macs_ok"] and g["time_ok"] and g["storage_ok"] and g["accuracy_ok"])
    return g


def goals_for(rows: list[dict[str, Any]], storage: dict[str, float]) -> dict[str, Any]:
    ind = next(v for v in rows if v["kind"] == "independent")
    per = [check_goals(v, ind, storage.get(v.get("delta", ""))) for v in rows if v["kind"] == "shared"]
    met = [g["variant"] for g in per if g["all_met"]]
    summary = f"all goals met by: {', '.join(met)}" if met else "NO shared variant meets all goals at once"
    return {"per_variant": per, "summary": summary}


# ---------------------------------------------------------------- storage and delta structures
def storage_table(models: dict[str, DenseViT], compress_args: dict[str, Any]) -> list[dict[str, Any]]:
    """Stored values of each sub-task per delta structure, with the relative error of the compressed dW."""
    full = sum(p.numel() for p in models["depth"].parameters())
    base_p = dict(models["segmentation"].encoder.named_parameters())
    out = []
    for kind, arg in (("lowrank", "rank"), ("rows", "row_fraction"), ("sparse", "density"), ("dense", None)):
        sm = SharedMultiTaskModel.from_dense(
            models["segmentation"], {t: models[t] for t in TASKS[1:]}, kind, **compress_args
        )
        for t, st in sm.subtasks.items():
            num = den = 0.0
            for name, p in models[t].encoder.named_parameters():
                if p.ndim >= 2:
                    d = st.delta(name).dense().detach()
                    dw = (p - base_p[name]).detach().reshape(d.shape)
                    num += float((d - dw).pow(2).sum())
                    den += float(dw.pow(2).sum())
            s = st.storage()
            out.append(
                {
                    "delta": kind,
                    "setting": f"{arg}={compress_args[arg]}" if arg else "-",
                    "task": t,
                    "values": s["values"],
                    "bytes": s["bytes"],
                    "fraction_of_full": s["values"] / full,
                    "rel_error": math.sqrt(num / max(den, 1e-30)),
                }
            )
    return out


def delta_structures(models: dict[str, DenseViT], compress_args: dict[str, Any], reps: int) -> list[dict]:
    """Storage, reconstruction error and time of one sub-task layer (block 0 fc1, all tokens) per structure."""
    base_w = models["segmentation"].encoder.blocks[0].mlp.fc1.weight.detach()
    sub_w = models["depth"].encoder.blocks[0].mlp.fc1.weight.detach()
    dw = sub_w - base_w
    n = math.prod(models["segmentation"].encoder.grid_size)
    x = torch.randn(n, base_w.shape[1])

    def bench(fn) -> float:
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e3

    full = sub_w.numel()
    rows = [
        {
            "structure": "dense W_sub (independent model)",
            "stored_values": full,
            "rel_error": 0.0,
            "macs": n * full,
            "ms": bench(lambda: x @ sub_w.t()),
        }
    ]
    r = compress_args["rank"]
    for kind, kw in [
        ("sparse", {"density": compress_args["density"]}),
        ("rows", {"row_fraction": compress_args["row_fraction"]}),
        ("lowrank", {"rank": r}),
        ("lowrank", {"rank": 2 * r}),
    ]:
        d = compress(dw, kind, **kw)
        err = float((d.dense() - dw).norm() / dw.norm().clamp_min(1e-12))
        label = f"{kind} ({', '.join(f'{k}={v}' for k, v in kw.items())})"
        common = {"stored_values": d.stored_values(), "stored_bytes": d.stored_bytes(), "rel_error": err}
        w = base_w + d.dense()
        rows.append(
            {
                "structure": f"{label}: fused W_base + dW (how the engine runs it)",
                **common,
                "macs": n * full,
                "ms": bench(lambda w=w: x @ w.t()),
            }
        )
        if d.fused:
            csr = d.dense().to_sparse_csr()
            rows.append(
                {
                    "structure": f"{label}: base product + torch.sparse dW",
                    **common,
                    "macs": n * full + n * d.stored_values(),
                    "ms": bench(lambda csr=csr: x @ base_w.t() + (csr @ x.t()).t()),
                }
            )
        else:
            rows.append(
                {
                    "structure": f"{label}: base product + delta term",
                    **common,
                    "macs": n * full + d.apply_macs(n),
                    "ms": bench(lambda d=d: d.add_to(x @ base_w.t(), x)),
                    "ms_delta_term_alone": bench(lambda d=d: d.apply(x)),
                }
            )
    return rows


# ---------------------------------------------------------------- toy setting
def _train_dense(model: DenseViT, task: str, batches, steps: int, lr: float) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    model.train()
    loss = torch.zeros(())
    for _ in range(steps):
        batch = next(batches)
        s, c = task_loss(task, model(normalise(batch["image"])), batch)
        loss = s / c.clamp_min(1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    return float(loss.detach())


def toy_setting(args: argparse.Namespace) -> dict[str, Any]:
    """Train a small ViT on toy scenes: independent models, then sub-tasks with the sharing steps."""
    size = (96, 128)
    cfg = ModelConfig(
        img_size=size, embed_dim=96, depth=4, num_heads=3, feature_layers=(1, 3), head_channels=48, num_classes=15
    )
    g = torch.Generator().manual_seed(0)
    data = DataLoader(ToyScenes(512, size, seed=0), batch_size=8, shuffle=True, generator=g, drop_last=True)
    batches = itertools.cycle(data)
    torch.manual_seed(0)
    independent = {t: DenseViT(cfg, t) for t in TASKS}
    t0 = time.monotonic()
    final_loss = {}
    for t, m in independent.items():
        log.info("toy: training independent %s (%d steps)", t, args.toy_steps)
        final_loss[t] = _train_dense(m, t, batches, args.toy_steps, 1e-3)
    base = independent["segmentation"]
    trained = SharedMultiTaskModel(base, {})
    history = {}
    for t in TASKS[1:]:
        log.info("toy: sharing steps for %s", t)
        trained.set_subtask(subtask_from_base(base, t, "lowrank", args.toy_rank, seed=1))
        h1 = train_subtask(
            trained, t, "l1", batches, args.toy_steps, lr=1e-3, delta="lowrank", log_every=max(1, args.toy_steps // 4)
        )
        h3 = train_subtask(
            trained,
            t,
            "activation",
            batches,
            args.toy_steps // 2,
            lr=3e-4,
            penalty_weight=args.toy_penalty,
            threshold=args.toy_threshold,
            log_every=max(1, args.toy_steps // 8),
        )
        history[t] = {"l1": h1, "activation": h3}
    train_s = time.monotonic() - t0
    trained.eval()
    compressed = SharedMultiTaskModel.from_dense(
        base, {t: independent[t] for t in TASKS[1:]}, "lowrank", rank=args.toy_rank
    ).eval()
    variants = [
        dense_variant("base only (segmentation)", {"segmentation": base}, "base_only"),
        dense_variant("independent x3", independent, "independent"),
    ]
    for thr in (0.0, args.toy_threshold / 2, args.toy_threshold, 2 * args.toy_threshold):
        variants.append(shared_variant(f"shared trained thr={thr:g}", trained, thr, 1.0, "lowrank"))
    variants.append(
        shared_variant(
            f"shared trained thr={args.toy_threshold:g} top 0.25", trained, args.toy_threshold, 0.25, "lowrank"
        )
    )
    variants.append(shared_variant("compressed independent thr=0", compressed, 0.0, 1.0, "lowrank"))
    val = ToyScenes(args.toy_samples, size, seed=1)
    samples = [val[i] for i in range(len(val))]
    rows = measure(variants, independent, samples, cfg.num_classes, True, args.frames, args.warmup)
    full = sum(p.numel() for p in independent["depth"].parameters())
    store = max(st.storage()["values"] for st in trained.subtasks.values()) / full
    return {
        "model": cfg.to_dict(),
        "tokens": math.prod(base.encoder.grid_size),
        "train": {
            "steps_per_model": args.toy_steps,
            "activation_steps": args.toy_steps // 2,
            "rank": args.toy_rank,
            "threshold": args.toy_threshold,
            "penalty_weight": args.toy_penalty,
            "train_s": round(train_s, 1),
            "independent_final_loss": final_loss,
            "history": history,
        },
        "storage_fraction": store,
        "variants": rows,
        "goals": goals_for(rows, {"lowrank": store}),
    }


# ---------------------------------------------------------------- report
def _variants_md(rows: list[dict[str, Any]], has_cuda: bool) -> list[str]:
    L = [
        "| variant | GMACs/frame | ms/frame CPU | params stored (M) | tokens recomputed (depth / normals) | "
        "MACs vs base | time vs base | MACs vs indep. | time vs indep. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in rows:
        rf = v.get("recomputed_fraction", {})
        rec = f"{rf['depth']:.2f} / {rf['normals']:.2f}" if "depth" in rf else "-"
        ra = v["ratios"]
        L.append(
            f"| {v['name']} | {v['gmacs']:.3f} | {v['ms_cpu']:.1f} | {v['params'] / 1e6:.3f} | {rec} | "
            f"{ra['macs_vs_base']:.2f} | {ra['time_vs_base']:.2f} | {ra['macs_vs_independent']:.2f} | "
            f"{ra['time_vs_independent']:.2f} |"
        )
    if has_cuda:
        L += ["", "| variant | ms/frame CUDA fp16 |", "|---|---|"]
        L += [f"| {v['name']} | {v['ms_cuda']:.2f} |" for v in rows if "ms_cuda" in v]
    L += [
        "",
        "Accuracy. Deviation from the independent model's output: segmentation % pixels of another class, "
        "depth mean relative difference, normals mean angle (deg).",
    ]
    gt = any("headline" in v for v in rows)
    head = "| variant | seg dev % | depth dev | normals dev (deg) |" + (
        " mIoU | depth RMSE | normals mean (deg) |" if gt else ""
    )
    L += ["", head, "|" + "---|" * (head.count("|") - 1)]
    for v in rows:
        d = v["deviation_vs_independent"]
        row = f"| {v['name']} | " + " | ".join(f"{d[t]:.3f}" if t in d else "-" for t in TASKS) + " |"
        if gt:
            h = v.get("headline", {})
            row += " " + " | ".join(f"{h[t]:.4f}" if t in h else "-" for t in TASKS) + " |"
        L.append(row)
    return L


def _goals_md(goals: dict[str, Any]) -> list[str]:
    L = [
        f"Goals: executed MACs <= {GOALS['macs_vs_base']}x base, wall time <= {GOALS['time_vs_base']}x base, "
        f"sub-task storage <= {GOALS['storage_fraction']:.0%} of a full model, depth RMSE and normals mean angle "
        f"no more than {GOALS['metric_rel']:.0%} (relative) worse than the independent models; all at once.",
        "",
        "| variant | MACs vs base | time vs base | storage / full | depth, normals metric change | all met |",
        "|---|---|---|---|---|---|",
    ]
    for g in goals["per_variant"]:
        rel = g.get("metric_rel_change")
        acc = ", ".join(f"{x:+.1%}" for x in rel.values()) if rel else "unknown (no ground truth)"
        ok = "" if g["accuracy_ok"] is None else (" ok" if g["accuracy_ok"] else " no")
        sf = g["storage_fraction"]
        L.append(
            f"| {g['variant']} | {g['macs_vs_base']:.2f} {'ok' if g['macs_ok'] else 'no'} | "
            f"{g['time_vs_base']:.2f} {'ok' if g['time_ok'] else 'no'} | "
            f"{'-' if sf is None else f'{sf:.3f}'} {'ok' if g['storage_ok'] else 'no'} | {acc}{ok} | "
            f"{'YES' if g['all_met'] else 'no'} |"
        )
    return [*L, "", f"**{goals['summary']}**"]


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    L = [
        "# Task sharing benchmark",
        "",
        f"- CPU: {m['threads']} torch threads, {m['cpu_count']} cores visible; the machine is shared with other "
        "jobs, so timings are medians of interleaved runs and move between runs",
        f"- CUDA: {m.get('cuda') or 'no GPU on this machine: not measured'}",
        "",
        "## Main setting",
        "",
        f"- checkpoint: {r['checkpoint']}",
        f"- accuracy data: {r['eval_data']}",
        f"- image {r['image_size'][0]}x{r['image_size'][1]}, {r['tokens']} tokens, batch 1",
        "",
    ]
    L += _variants_md(r["variants"], bool(m.get("cuda")))
    L += [
        "",
        "### Sub-task storage per delta structure",
        "",
        "| delta | setting | task | stored values | fraction of a full model | relative error of dW |",
        "|---|---|---|---|---|---|",
    ]
    L += [
        f"| {s['delta']} | {s['setting']} | {s['task']} | {s['values']} | {s['fraction_of_full']:.3f} | "
        f"{s['rel_error']:.3f} |"
        for s in r["storage"]
    ]
    L += [
        "",
        "### Delta structures: one layer (block 0 MLP fc1), one sub-task, all tokens",
        "",
        "| structure | stored values | rel. error of dW | MACs (M) | ms |",
        "|---|---|---|---|---|",
    ]
    L += [
        f"| {s['structure']} | {s['stored_values']} | {s['rel_error']:.3f} | {s['macs'] / 1e6:.1f} | {s['ms']:.3f} |"
        for s in r["delta_structures"]
    ]
    L += ["", "### Goals", ""] + _goals_md(r["goals"])
    if r.get("toy"):
        t = r["toy"]
        mc = t["model"]
        tr = t["train"]
        L += [
            "",
            "## Toy setting: the method end to end, trained here",
            "",
            f"- model: ViT dim {mc['embed_dim']}, depth {mc['depth']}, {mc['img_size'][0]}x{mc['img_size'][1]} "
            f"({t['tokens']} tokens); procedural toy scenes (wall, floor, one box), validation on 48 unseen ones",
            f"- independent models: {tr['steps_per_model']} steps each; sub-tasks from the base weights with "
            f"low-rank deltas (rank {tr['rank']}): {tr['steps_per_model']} steps step 1, {tr['activation_steps']} "
            f"steps step 3 (threshold {tr['threshold']}, activation penalty {tr['penalty_weight']}); "
            f"{tr['train_s']} s in all",
            f"- sub-task storage: {t['storage_fraction']:.3f} of a full model",
            "",
        ]
        L += _variants_md(t["variants"], False)
        L += ["", "### Goals (toy)", ""] + _goals_md(t["goals"])
    L += ["", "## Notes", ""] + [f"- {n}" for n in r["notes"]]
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="task_sharing", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--checkpoint",
        default="auto",
        help="dense checkpoint of the independent models (auto: shipped default, else untrained)",
    )
    ap.add_argument(
        "--shared",
        default="default",
        help="trained sub-tasks to benchmark: 'default' (the shipped weights/default_<task>.pt), a shared "
        "checkpoint, or 'none'",
    )
    ap.add_argument(
        "--shared-settings",
        nargs="+",
        default=["0:1", "0.05:0.5", "0.05:0.3", "0.05:0.2", "0.05:0.1", "1000:1"],
        help="threshold:max_token_fraction pairs for the trained sub-tasks (1000:1 = nothing recomputed)",
    )
    ap.add_argument(
        "--data-root",
        default=str(ROOT / "data" / "synthetic_test"),
        help="held-out data for accuracy: the test split, 200 rooms no model was trained or selected on "
        "(mtshare render --out data/synthetic_test --rooms 200 --frames-per-room 3 --fps 1 --seed 3 "
        "--val-fraction 1)",
    )
    ap.add_argument("--split", default="val")
    ap.add_argument(
        "--samples",
        type=int,
        default=0,
        help="frames of the split used for accuracy, evenly spaced (0: all; the goals are judged on all 600)",
    )
    ap.add_argument("--frames", type=int, default=40, help="timed frames per variant (interleaved; the median counts)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--delta", default="lowrank", choices=["lowrank", "rows", "sparse"])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--row-fraction", type=float, default=0.1)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument(
        "--token-fractions",
        type=float,
        nargs="+",
        default=[0.25],
        help="extra shared variants at threshold 0 with this max_token_fraction",
    )
    ap.add_argument("--toy-steps", type=int, default=0, help="toy setting training steps per model (0: skip)")
    ap.add_argument("--toy-rank", type=int, default=6)
    ap.add_argument("--toy-threshold", type=float, default=0.1)
    ap.add_argument("--toy-penalty", type=float, default=0.3)
    ap.add_argument("--toy-samples", type=int, default=48)
    ap.add_argument("--toy-only", action="store_true", help="only the toy setting (for tuning; prints its tables)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "task_sharing"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 timed frames, 3 samples, 20 toy steps")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.frames, args.warmup, args.samples = 2, 1, 3
        args.toy_steps, args.toy_samples = min(args.toy_steps, 20), 4
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.toy_only:
        toy = toy_setting(args)
        print("\n".join(_variants_md(toy["variants"], False) + [""] + _goals_md(toy["goals"])))
        print(json.dumps(toy["train"]["history"], indent=1))
        return 0

    models, ckpt_name, trained = load_models(args.checkpoint)
    cfg = models["segmentation"].cfg
    compress_args = {"rank": args.rank, "density": args.density, "row_fraction": args.row_fraction}
    subs = {t: models[t] for t in TASKS[1:]}
    shared = SharedMultiTaskModel.from_dense(models["segmentation"], subs, args.delta, **compress_args).eval()
    exact = SharedMultiTaskModel.from_dense(models["segmentation"], subs, "dense").eval()
    variants = [
        dense_variant("base only (segmentation)", {"segmentation": models["segmentation"]}, "base_only"),
        dense_variant("independent x3", models, "independent"),
        shared_variant("shared, uncompressed dW, thr=0", exact, 0.0, 1.0, "dense"),
    ]
    variants += [
        shared_variant(f"shared {args.delta} thr={thr:g}", shared, thr, 1.0, args.delta) for thr in args.thresholds
    ]
    variants += [
        shared_variant(f"shared {args.delta} thr=0 top {f:g}", shared, 0.0, f, args.delta) for f in args.token_fractions
    ]
    modules = [*models.values(), shared, exact]
    trained_shared, shared_note = load_trained_shared(args.shared, args.checkpoint, models, ckpt_name)
    if trained_shared is not None:
        modules.append(trained_shared)
        for setting in args.shared_settings:
            thr, frac = (float(v) for v in setting.split(":"))
            mark = " (node default)" if (thr, frac) == NODE_DEFAULT else ""
            name = f"trained shared thr={thr:g} top {frac:g}{mark}"
            variants.append(shared_variant(name, trained_shared, thr, frac, "checkpoint"))
    samples, data_desc, gt = load_eval_samples(Path(args.data_root), args.split, cfg.img_size, args.samples)
    log.info("main setting: %d variants", len(variants))
    rows = measure(variants, models, samples, cfg.num_classes, gt, args.frames, args.warmup)
    cuda_name = None
    if torch.cuda.is_available():
        cuda_name = torch.cuda.get_device_name()
        ms = cuda_times(variants, modules, normalise(samples[0]["image"][None]), args.frames * 4)
        for r in rows:
            r["ms_cuda"] = ms[r["name"]]
    storage = storage_table(models, compress_args)
    fractions = {}
    for s in storage:
        fractions[s["delta"]] = max(fractions.get(s["delta"], 0.0), s["fraction_of_full"])
    if trained_shared is not None:
        full = sum(p.numel() for p in models["depth"].parameters())
        fractions["checkpoint"] = max(st.storage()["values"] for st in trained_shared.subtasks.values()) / full
    structures = delta_structures(models, compress_args, reps=5 if args.quick else 30)

    notes = [
        "MACs: shared variants report the engine's own count of the rows that went through each product "
        "(checked equal to torch's FlopCounterMode in test/test_sharing_engine.py); dense variants are counted "
        "by FlopCounterMode. Heads run in full for every task and are included.",
        "Shared variants run the base task in full, then per layer only the sub-task tokens whose relative "
        "activation change vs the base exceeds the threshold (at most the top fraction); the others take the "
        "base's update (mtshare_ros/sharing/engine.py documents what is exact and what is approximate). The "
        "selected rows of both sub-tasks go through each layer as one batched product (padded to one row "
        "count; padding is counted), with the stored deltas applied to the weights once at load; the sub-task "
        "heads run as one network of grouped convolutions.",
        "'shared, uncompressed dW, thr=0' is the exact shared computation of the independent models "
        "(equal outputs); it shows the engine's overhead at equal work.",
    ]
    if not trained:
        notes.append(
            "Main setting: the models are UNTRAINED and independent: dW is neither low-rank nor sparse and "
            "activation deltas are not small, so compressed deltas and skipped tokens change outputs a lot. "
            "The sharing training steps are what make them small: see the toy setting."
        )
    else:
        notes.append(
            "Main setting, 'shared lowrank' rows: the independently trained sub-task models compressed after the "
            "fact; their dW is not low-rank by construction, hence the accuracy loss."
        )
    if shared_note:
        notes.append(shared_note)
    notes.append(
        "Wall time: at zero recomputed tokens the sub-tasks still run their heads in full; at 2 threads the heads "
        "(3x3 convolutions at 1/8 and 1/4 resolution, bilinear upsampling) take a larger share of time than of "
        "MACs."
    )
    result = {
        "machine": {
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cuda": cuda_name,
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "checkpoint": ckpt_name,
        "trained": trained,
        "eval_data": data_desc,
        "image_size": list(cfg.img_size),
        "tokens": math.prod(models["segmentation"].encoder.grid_size),
        "variants": rows,
        "storage": storage,
        "delta_structures": structures,
        "goals": goals_for(rows, fractions),
        "toy": None,
        "notes": notes,
        "command": "bench/task_sharing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        out.with_suffix(".md").write_text(markdown(result))
        log.info("wrote %s.json and .md", out)

    write()  # the main setting survives an interrupted toy run
    if args.toy_steps > 0:
        result["toy"] = toy_setting(args)
        write()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
