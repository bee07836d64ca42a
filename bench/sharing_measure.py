"""Measuring for the task-sharing benchmark (bench/task_sharing.py): the variants and how each is timed,
counted and scored; sub-task storage and one layer per delta structure; the toy setting.

Apart from the CLI and the report so that what is measured reads, and changes, in one place. It returns
the plain rows of the JSON result; judging them against the goals and writing them up is
bench/sharing_report.py's. Two seams face the package: every import from ``mtshare_ros`` is in the one
block below (re-point moved modules there), and every number read from the engine's statistics goes
through ``engine_numbers`` (a change in their form is a change of that one function).
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

# --- every import from the package (paths move during the restructuring: re-point them here)
from mtshare_ros.models.checkpoint import (
    CheckpointError,
    load_multitask_checkpoint,
    resolve_checkpoint,
)
from mtshare_ros.models.vit import DenseViT, ModelConfig, build_task_models, run_tasks, shared_encoder_of
from mtshare_ros.runtime.settings import SharingSettings
from mtshare_ros.sharing import SharedMultiTaskModel, compress
from mtshare_ros.sharing.checkpoint import base_fingerprint, is_shared_checkpoint, load_shared
from mtshare_ros.sharing.cost import dense_model_macs, multitask_model_macs
from mtshare_ros.sharing.loader import load_models, subtask_files
from mtshare_ros.training.datasets import make_dataset
from mtshare_ros.training.evaluate import normalise
from mtshare_ros.training.losses import task_loss
from mtshare_ros.training.metrics import build_metrics
from mtshare_ros.training.subtask_steps import subtask_from_base, train_subtask
from mtshare_ros.training.toy_data import ToyScenes

log = logging.getLogger("task_sharing")
TASKS = ("segmentation", "depth", "normals")
HEADLINE = {"segmentation": "mIoU", "depth": "rmse", "normals": "mean_deg"}
NODE_DEFAULT = (SharingSettings.threshold, SharingSettings.max_token_fraction)  # the node's sharing defaults
NOTHING_RECOMPUTED = (1000.0, 1.0)
"""A threshold no token's relative change reaches: the trained sub-tasks recompute nothing, so their heads (and
their own final LayerNorm) read the base encoder's features. Baseline (b) of the verdict."""
BASELINE_NAMES = {
    "baseline_multitask": "baseline (a): multi-task model (1 encoder, 3 heads)",
    "baseline_nothing_recomputed": "baseline (b): nothing recomputed (sub-task heads on the base encoder's features)",
}


# ---------------------------------------------------------------- the engine's statistics
def engine_numbers(stats: Any) -> dict[str, Any]:
    """The numbers the benchmark takes from the shared engine's statistics (the second value its forward
    returns): executed multiply-adds of the frame, and per task the fraction of tokens recomputed.

    The only place that reads those statistics: they are a dict today (``stats["macs_total"]``); when they
    become an object with the same field names, only this function changes."""
    return {"macs_total": stats.macs_total, "recomputed_fraction": dict(stats.recomputed_fraction)}


# ---------------------------------------------------------------- models and data
def load_independent_models(checkpoint: str) -> tuple[dict[str, DenseViT], str, bool]:
    """Independent models from ``checkpoint`` (a file or a shipped name); ``auto`` is the shipped independent
    models, falling back to seeded untrained models, said so."""
    try:
        path = resolve_checkpoint("independent" if checkpoint == "auto" else checkpoint)
    except CheckpointError as exc:
        if checkpoint != "auto":
            raise SystemExit(str(exc)) from None
    else:
        models = load_models(path, shared=False).dense
        return {t: models[t].eval() for t in TASKS}, str(path), True
    torch.manual_seed(0)
    models = build_task_models(ModelConfig(), TASKS).eval()
    return {t: models[t] for t in TASKS}, "UNTRAINED (seed 0): no trained default weights yet", False


def load_eval_samples(root: Path, split: str, size: tuple[int, int], n: int) -> tuple[list[dict], str, bool]:
    """Samples of the held-out split when the dataset is READY, else toy scenes (stated; not ground truth
    for these models, so only deviations are reported)."""
    if (root / "READY").is_file():
        ds = make_dataset({"dataset": "synthetic", "root": str(root)}, split, size, augment=False)
        n = n if n > 0 else len(ds)
        idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(min(n, len(ds)))]
        return [ds[i] for i in idx], f"synthetic {split} split ({root}), {len(idx)} of {len(ds)} frames", True
    n = n if n > 0 else 40
    ds = ToyScenes(length=n, size=size, seed=1)
    desc = f"no synthetic data ({root / 'READY'} not found): {n} toy scenes as inputs, deviations only"
    return [ds[i] for i in range(n)], desc, False


def load_trained_shared(
    source: str, checkpoint: str, models: dict[str, DenseViT], ckpt_name: str,
    multitask_base: DenseViT | None = None,
) -> tuple[SharedMultiTaskModel | None, str | None]:
    """The trained sub-tasks (``--shared``) on the benchmark's own base model, with a note on their origin.

    Sub-tasks trained on the multi-task base (share-train step ``budget`` from ``multitask.pt``) keep that base
    when it is the segmentation model of ``--multitask`` (``multitask_base``): their heads-only point is then the
    multi-task model itself, which is what they are compared with."""
    if source == "none":
        return None, None
    if source == "beside":
        source = "independent" if checkpoint == "auto" else checkpoint
    target = resolve_checkpoint(source)
    if is_shared_checkpoint(target):
        trained, meta = load_shared(target)
        note = f"'trained shared': {source}"
        steps = meta.get("provenance", {}).get("train_steps", {})
    else:  # a dense or multi-task checkpoint with its sub-task files beside it, loaded as the node loads it
        loaded = load_models(target)
        files = [f for f in subtask_files(loaded.path).values() if f.is_file()]
        if not loaded.sharing_source.startswith("trained") or not files:
            return None, None
        trained = loaded.shared
        note = f"'trained shared': {source} = {loaded.sharing_source}"
        steps = {}
        for f in files:
            steps.update(torch.load(f, map_location="cpu", weights_only=True)["provenance"].get("train_steps", {}))
    note += ", sub-tasks trained from the base with the sharing steps: " + (
        ", ".join(f"{k} {v['history'][-1]['step']} steps" for k, v in steps.items() if v.get("history"))
        or "(no training record)"
    )
    fingerprint = base_fingerprint(trained.base)
    if multitask_base is not None and fingerprint == base_fingerprint(multitask_base):
        trained.base = multitask_base
        return trained.eval(), note + "; base: the multi-task model's segmentation model"
    if fingerprint != base_fingerprint(models["segmentation"]):
        raise SystemExit(f"{source}: its base is not the segmentation model of {ckpt_name} (nor of --multitask)")
    trained.base = models["segmentation"]  # one base module for every variant
    return trained.eval(), note


def load_multitask(path: str, cfg: ModelConfig) -> tuple[dict[str, DenseViT], str]:
    """Baseline (a)'s multi-task model (``--multitask``): a checkpoint trained with ``train.shared_encoder``, its
    task models built around one encoder (run once per frame), with a line saying what it is. Refused, said why,
    when it is not one or cannot be compared with the benchmark's models (other classes, a task missing)."""
    try:
        models, meta = load_multitask_checkpoint(path, list(TASKS))
    except CheckpointError as exc:
        raise SystemExit(f"--multitask: {exc}") from None
    mc = meta["model_config"]
    if mc.num_classes != cfg.num_classes:
        raise SystemExit(f"--multitask {path}: {mc.num_classes} classes, the benchmark's models have {cfg.num_classes}")
    prov = meta.get("provenance", {})
    desc = (
        f"{path}: ViT {mc.depth} x {mc.embed_dim}, trained at {mc.img_size[0]}x{mc.img_size[1]} for "
        f"{prov.get('steps', '?')} steps on {prov.get('dataset', {}).get('name', '?')} data "
        f"({prov.get('dataset', {}).get('root', '?')})"
    )
    return {t: models[t].eval() for t in TASKS}, desc


def token_count(model: DenseViT) -> int:
    return math.prod(model.encoder.grid_size)


# ---------------------------------------------------------------- variants
class Variant:
    """One way to produce the tasks. ``run(x)`` -> (outputs, executed MACs, ``engine_numbers`` for shared
    variants, else {}); ``forward(x)`` is what gets timed (for shared variants it includes the engine's
    statistics, as the node gets them)."""

    def __init__(self, name: str, kind: str, run, forward, params: int, detail: dict[str, Any]) -> None:
        self.name, self.kind, self.run, self.forward = name, kind, run, forward
        self.params, self.detail = params, detail


def dense_variant(name: str, models: dict[str, DenseViT], kind: str) -> Variant:
    def run(x: torch.Tensor):  # counted by the engine's rules (sharing/cost.py), so the ratios compare like with like
        out = {t: m(x) for t, m in models.items()}
        size = tuple(x.shape[-2:])
        return out, sum(dense_model_macs(m, size, x.shape[0]) for m in models.values()), {}

    def forward(x: torch.Tensor):
        return {t: m(x) for t, m in models.items()}

    params = sum(p.numel() for m in models.values() for p in m.parameters())
    return Variant(name, kind, run, forward, params, {"tasks": list(models)})


def multitask_variant(name: str, models: dict[str, DenseViT], source: str) -> Variant:
    """A multi-task model: the one encoder runs once, then every head (``run_tasks``); counted by the engine's
    rules, so its MACs compare with the other variants'."""
    if shared_encoder_of(models) is None:
        raise ValueError("a multi-task variant needs task models that hold one encoder")

    def run(x: torch.Tensor):
        return run_tasks(models, x), multitask_model_macs(models, tuple(x.shape[-2:]), x.shape[0]), {}

    def forward(x: torch.Tensor):
        return run_tasks(models, x)

    params = sum(p.numel() for p in torch.nn.ModuleDict(models).parameters())  # the shared encoder once
    detail = {"tasks": list(models), "role": "baseline_multitask", "checkpoint": source}
    return Variant(name, "multitask", run, forward, params, detail)


def shared_variant(name: str, shared: SharedMultiTaskModel, thr: float, frac: float, delta: str) -> Variant:
    def run(x: torch.Tensor):
        out, stats = shared(x, thresholds=thr, max_token_fraction=frac)
        numbers = engine_numbers(stats)
        return out, numbers["macs_total"], numbers

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
                    out, _, numbers = v.run(x)
                else:  # dense variants: same outputs without the operator counter's overhead
                    out, numbers = v.forward(x), {}
                for t, o in out.items():
                    dev[v.name][t].append(deviation(t, o, ref[t]))
                    if gt:
                        metrics[v.name][t].update(o.float(), s[t][None])
                    if numbers:
                        rec[v.name][t].append(numbers["recomputed_fraction"].get(t, 1.0))
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


def cuda_times(variants: list[Variant], modules: list[torch.nn.Module], samples: list[dict], frames: int) -> dict:
    """fp16 CUDA medians on the first sample (the engine runs sync-free there); models go back to CPU fp32
    afterwards."""
    x = normalise(samples[0]["image"][None])
    for m in modules:
        m.to("cuda", torch.float16)
    try:
        return time_variants(variants, x.to("cuda", torch.float16), frames, max(3, frames // 4))
    finally:
        for m in modules:
            m.to("cpu", torch.float32)


# ---------------------------------------------------------------- main setting
def main_variants(
    models: dict[str, DenseViT],
    delta: str,
    compress_args: dict[str, Any],
    thresholds: list[float],
    token_fractions: list[float],
    trained_shared: SharedMultiTaskModel | None,
    shared_settings: list[str],
    multitask: tuple[dict[str, DenseViT], str] | None = None,
) -> tuple[list[Variant], list[torch.nn.Module]]:
    """The main setting's variants (base only and independent first: the ratios are against them) and every
    module they run (for moving them to CUDA). ``shared_settings``: threshold:max_token_fraction pairs for
    the trained sub-tasks; the nothing-recomputed one (baseline (b)) is added when absent. ``multitask``: the
    models and source of baseline (a), when given.

    Rows carry a ``role`` where the verdict needs them (``node_default``, ``baseline_multitask``,
    ``baseline_nothing_recomputed``), so it finds them by role, not by name."""
    subs = {t: models[t] for t in TASKS[1:]}
    shared = SharedMultiTaskModel.from_dense(models["segmentation"], subs, delta, **compress_args).eval()
    exact = SharedMultiTaskModel.from_dense(models["segmentation"], subs, "dense").eval()
    variants = [
        dense_variant("base only (segmentation)", {"segmentation": models["segmentation"]}, "base_only"),
        dense_variant("independent x3", models, "independent"),
        shared_variant("shared, uncompressed dW, thr=0", exact, 0.0, 1.0, "dense"),
    ]
    variants += [shared_variant(f"shared {delta} thr={thr:g}", shared, thr, 1.0, delta) for thr in thresholds]
    variants += [shared_variant(f"shared {delta} thr=0 top {f:g}", shared, 0.0, f, delta) for f in token_fractions]
    modules = [*models.values(), shared, exact]
    if multitask is not None:
        mt_models, source = multitask
        variants.append(multitask_variant(BASELINE_NAMES["baseline_multitask"], mt_models, source))
        modules.append(torch.nn.ModuleDict(mt_models))
    if trained_shared is not None:
        modules.append(trained_shared)
        settings = [tuple(float(v) for v in setting.split(":")) for setting in shared_settings]
        if NOTHING_RECOMPUTED not in settings:
            settings.append(NOTHING_RECOMPUTED)
        for thr, frac in settings:
            mark = " (node default)" if (thr, frac) == NODE_DEFAULT else ""
            name = f"trained shared thr={thr:g} top {frac:g}{mark}"
            if (thr, frac) == NOTHING_RECOMPUTED:
                name = f"{BASELINE_NAMES['baseline_nothing_recomputed']}, thr={thr:g}"
            v = shared_variant(name, trained_shared, thr, frac, "checkpoint")
            if (thr, frac) == NODE_DEFAULT:
                v.detail["role"] = "node_default"
            elif (thr, frac) == NOTHING_RECOMPUTED:
                v.detail["role"] = "baseline_nothing_recomputed"
            variants.append(v)
    return variants, modules


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
    n = token_count(models["segmentation"])
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


def storage_fractions(
    storage: list[dict[str, Any]], models: dict[str, DenseViT], trained_shared: SharedMultiTaskModel | None
) -> dict[str, float]:
    """Per delta structure (and ``checkpoint`` for the trained sub-tasks): the largest sub-task's stored
    values as a fraction of a full model, what the storage goal is judged on."""
    fractions: dict[str, float] = {}
    for s in storage:
        fractions[s["delta"]] = max(fractions.get(s["delta"], 0.0), s["fraction_of_full"])
    if trained_shared is not None:
        full = sum(p.numel() for p in models["depth"].parameters())
        fractions["checkpoint"] = max(st.storage()["values"] for st in trained_shared.subtasks.values()) / full
    return fractions


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


def toy_setting(
    steps: int, rank: int, threshold: float, penalty: float, samples: int, frames: int, warmup: int
) -> dict[str, Any]:
    """Train a small ViT on toy scenes: independent models (``steps`` each), then sub-tasks from the base
    with the sharing steps (low-rank deltas of ``rank``; ``steps`` step 1, ``steps // 2`` step 3 at
    ``threshold`` with activation penalty ``penalty``); measure its variants on ``samples`` unseen scenes.
    The goals are not judged here (bench/sharing_report.py's ``goals_for``)."""
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
        log.info("toy: training independent %s (%d steps)", t, steps)
        final_loss[t] = _train_dense(m, t, batches, steps, 1e-3)
    base = independent["segmentation"]
    trained = SharedMultiTaskModel(base, {})
    history = {}
    for t in TASKS[1:]:
        log.info("toy: sharing steps for %s", t)
        trained.set_subtask(subtask_from_base(base, t, "lowrank", rank, seed=1))
        h1 = train_subtask(trained, t, "l1", batches, steps, lr=1e-3, delta="lowrank", log_every=max(1, steps // 4))
        h3 = train_subtask(
            trained,
            t,
            "activation",
            batches,
            steps // 2,
            lr=3e-4,
            penalty_weight=penalty,
            threshold=threshold,
            log_every=max(1, steps // 8),
        )
        history[t] = {"l1": h1, "activation": h3}
    train_s = time.monotonic() - t0
    trained.eval()
    compressed = SharedMultiTaskModel.from_dense(
        base, {t: independent[t] for t in TASKS[1:]}, "lowrank", rank=rank
    ).eval()
    variants = [
        dense_variant("base only (segmentation)", {"segmentation": base}, "base_only"),
        dense_variant("independent x3", independent, "independent"),
    ]
    for thr in (0.0, threshold / 2, threshold, 2 * threshold):
        variants.append(shared_variant(f"shared trained thr={thr:g}", trained, thr, 1.0, "lowrank"))
    variants.append(shared_variant(f"shared trained thr={threshold:g} top 0.25", trained, threshold, 0.25, "lowrank"))
    variants.append(shared_variant("compressed independent thr=0", compressed, 0.0, 1.0, "lowrank"))
    val = ToyScenes(samples, size, seed=1)
    rows = measure(variants, independent, [val[i] for i in range(len(val))], cfg.num_classes, True, frames, warmup)
    full = sum(p.numel() for p in independent["depth"].parameters())
    store = max(st.storage()["values"] for st in trained.subtasks.values()) / full
    return {
        "model": cfg.to_dict(),
        "tokens": token_count(base),
        "train": {
            "steps_per_model": steps,
            "activation_steps": steps // 2,
            "rank": rank,
            "threshold": threshold,
            "penalty_weight": penalty,
            "train_s": round(train_s, 1),
            "independent_final_loss": final_loss,
            "history": history,
        },
        "storage_fraction": store,
        "variants": rows,
    }
