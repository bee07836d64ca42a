"""Task-sharing benchmark: base task only, three independent models, and the shared engine, side by side.

One run measures, per variant: executed GMACs per frame (counted from what ran), wall time per frame
(CPU; CUDA too when present, with the device name), parameters stored, the fraction of tokens the
sub-tasks recomputed, and accuracy per task on the held-out synthetic split when it exists (and always
the deviation of each task's output from its independent model). A second table compares the delta
structures (storage, reconstruction error, time of one layer). Writes bench/results/task_sharing.{json,md}.

    .venv/bin/python bench/task_sharing.py            # full run
    .venv/bin/python bench/task_sharing.py --quick    # smoke run (few frames, few samples)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from mtshare_ros.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD, DenseViT, ModelConfig, build_task_models
from mtshare_ros.sharing import SharedMultiTaskModel, compress
from mtshare_ros.sharing.checkpoint import load_shared

log = logging.getLogger("task_sharing")
ROOT = Path(__file__).resolve().parent.parent
TASKS = ("segmentation", "depth", "normals")
GOALS = {"macs_vs_base": 1.35, "time_vs_base": 1.5, "storage_fraction": 0.15, "metric_rel": 0.03}


# ---------------------------------------------------------------- models and data
def load_models(checkpoint: str) -> tuple[dict[str, DenseViT], str, bool]:
    """Independent models from ``checkpoint``; ``auto`` falls back to seeded untrained models, said so."""
    path = DEFAULT_CHECKPOINT if checkpoint in ("auto", "default") else Path(checkpoint)
    if path.is_file():
        models, _ = load_checkpoint(path)
        return {t: models[t].eval() for t in TASKS}, str(path), True
    if checkpoint not in ("auto",):
        raise SystemExit(f"checkpoint not found: {path}")
    torch.manual_seed(0)
    models = build_task_models(ModelConfig(), TASKS).eval()
    return {t: models[t] for t in TASKS}, "UNTRAINED (seed 0): no trained default weights yet", False


def load_eval_images(root: Path, split: str, size: tuple[int, int], n: int) -> tuple[list[dict], str]:
    """Samples of the held-out split when the dataset is READY, else the toy scenes (stated)."""
    if (root / "READY").is_file():
        from mtshare_ros.training.datasets import make_dataset

        ds = make_dataset({"dataset": "synthetic", "root": str(root)}, split, size, augment=False)
        idx = [round(i * (len(ds) - 1) / max(1, n - 1)) for i in range(min(n, len(ds)))]
        return [ds[i] for i in idx], f"synthetic {split} split ({root}), {len(idx)} of {len(ds)} frames"
    from mtshare_ros.training.toy_data import ToyScenes

    ds = ToyScenes(length=n, size=size, seed=1)
    return [ds[i] for i in range(n)], f"TOY scenes ({n}): {root / 'READY'} not found, no synthetic data yet"


def normalise(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1).to(image)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1).to(image)
    return (image - mean) / std


# ---------------------------------------------------------------- variants
class Variant:
    """A way to produce the three tasks (or only the base); ``run`` returns outputs and executed MACs."""

    def __init__(self, name: str, kind: str, run, forward, params: int, detail: dict[str, Any]) -> None:
        self.name, self.kind, self.run, self.forward = name, kind, run, forward
        self.params, self.detail = params, detail


def dense_variant(name: str, models: dict[str, DenseViT], kind: str) -> Variant:
    def run(x: torch.Tensor) -> tuple[dict[str, torch.Tensor], int, dict]:
        counter = FlopCounterMode(display=False)
        with counter:
            out = {t: m(x) for t, m in models.items()}
        return out, counter.get_total_flops() // 2, {}

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {t: m(x) for t, m in models.items()}

    params = sum(p.numel() for m in models.values() for p in m.parameters())
    return Variant(name, kind, run, forward, params, {"tasks": list(models)})


def shared_variant(name: str, shared: SharedMultiTaskModel, thr: float, frac: float, delta: str) -> Variant:
    def run(x: torch.Tensor) -> tuple[dict[str, torch.Tensor], int, dict]:
        out, stats = shared(x, thresholds=thr, max_token_fraction=frac)
        return out, stats["macs_total"], stats

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        return shared(x, thresholds=thr, max_token_fraction=frac)[0]  # stats included: the node gets them too

    params = sum(p.numel() for p in shared.base.parameters())
    params += sum(st.storage()["values"] for st in shared.subtasks.values())
    detail = {"delta": delta, "threshold": thr, "max_token_fraction": frac}
    return Variant(name, "shared", run, forward, params, detail)


def time_variants(variants: list[Variant], x: torch.Tensor, frames: int, warmup: int) -> dict[str, float]:
    """Median ms per frame, variants interleaved frame by frame so that machine load hits all alike."""
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for i in tqdm(range(warmup + frames), desc=f"timing on {x.device.type}", mininterval=5):
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
    """How far an output is from the independent model's: seg % pixels whose class differs, depth mean
    relative difference, normals mean angle (deg)."""
    if task == "segmentation":
        return float((out.argmax(1) != ref.argmax(1)).float().mean() * 100)
    if task == "depth":
        return float(((out - ref).abs() / ref.clamp_min(1e-3)).mean())
    cos = (F.normalize(out, dim=1) * F.normalize(ref, dim=1)).sum(1).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos)).mean())


def evaluate(
    variants: list[Variant], independent: dict[str, DenseViT], samples: list[dict], num_classes: int, with_metrics: bool
) -> dict[str, dict]:
    from mtshare_ros.training.metrics import build_metrics

    res: dict[str, dict] = {}
    metrics = {v.name: {t: build_metrics(t, num_classes) for t in TASKS} for v in variants}
    dev = {v.name: {t: [] for t in TASKS} for v in variants}
    rec = {v.name: {t: [] for t in TASKS} for v in variants}
    with torch.no_grad():
        for s in tqdm(samples, desc="accuracy", mininterval=5):
            x = normalise(s["image"][None])
            ref = {t: m(x) for t, m in independent.items()}
            for v in variants:
                out, _, stats = v.run(x)
                for t, o in out.items():
                    dev[v.name][t].append(deviation(t, o, ref[t]))
                    if with_metrics and t in s:
                        metrics[v.name][t].update(o.float(), s[t][None])
                    if stats:
                        rec[v.name][t].append(stats["recomputed_fraction"].get(t, 1.0))
    headline = {"segmentation": "mIoU", "depth": "rmse", "normals": "mean_deg"}
    for v in variants:
        entry: dict[str, Any] = {
            "deviation_vs_independent": {t: statistics.mean(d) for t, d in dev[v.name].items() if d}
        }
        if rec[v.name]["depth"]:
            entry["recomputed_fraction"] = {t: statistics.mean(r) for t, r in rec[v.name].items() if r}
        if with_metrics:
            entry["metrics"] = {}
            for t in dev[v.name]:
                if dev[v.name][t]:
                    m = metrics[v.name][t].compute()
                    entry["metrics"][t] = {k: m[k] for k in m if isinstance(m[k], float)}
            entry["headline"] = {t: entry["metrics"][t][headline[t]] for t in entry["metrics"]}
        res[v.name] = entry
    return res


# ---------------------------------------------------------------- delta structures
def delta_structures(
    models: dict[str, DenseViT], rank: int, density: float, row_fraction: float, reps: int
) -> list[dict]:
    """Storage, reconstruction error and time of one sub-task layer (block 0 fc1, 300 rows) per structure."""
    base_w = models["segmentation"].encoder.blocks[0].mlp.fc1.weight.detach()
    sub_w = models["depth"].encoder.blocks[0].mlp.fc1.weight.detach()
    dw = sub_w - base_w
    n = math.prod(models["segmentation"].encoder.grid_size)
    x = torch.randn(n, base_w.shape[1])
    rows = []

    def bench(fn) -> float:
        for _ in range(3):
            fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps * 1e3

    full = sub_w.numel()
    rows.append(
        {
            "structure": "dense W_sub (independent)",
            "stored_values": full,
            "rel_error": 0.0,
            "macs": n * full,
            "ms": bench(lambda: x @ sub_w.t()),
        }
    )
    for kind, kw in [
        ("sparse", {"density": density}),
        ("rows", {"row_fraction": row_fraction}),
        ("lowrank", {"rank": rank}),
        ("lowrank", {"rank": rank * 2}),
    ]:
        d = compress(dw, kind, **kw)
        err = float((d.dense() - dw).norm() / dw.norm().clamp_min(1e-12))
        label = f"{kind} ({', '.join(f'{k}={v}' for k, v in kw.items())})"
        if d.fused:
            w = base_w + d.dense()
            t_fused = bench(lambda w=w: x @ w.t())
            rows.append(
                {
                    "structure": f"{label}: fused W_base+dW",
                    "stored_values": d.stored_values(),
                    "stored_bytes": d.stored_bytes(),
                    "rel_error": err,
                    "macs": n * full,
                    "ms": t_fused,
                }
            )
            csr = d.dense().to_sparse_csr()
            t_sparse = bench(lambda csr=csr: x @ base_w.t() + (csr @ x.t()).t())
            rows.append(
                {
                    "structure": f"{label}: base + torch.sparse dW",
                    "stored_values": d.stored_values(),
                    "stored_bytes": d.stored_bytes(),
                    "rel_error": err,
                    "macs": n * full + n * d.stored_values(),
                    "ms": t_sparse,
                }
            )
        else:
            t = bench(lambda d=d: x @ base_w.t() + d.apply(x))
            t_delta = bench(lambda d=d: d.apply(x))
            rows.append(
                {
                    "structure": f"{label}: base + delta",
                    "stored_values": d.stored_values(),
                    "stored_bytes": d.stored_bytes(),
                    "rel_error": err,
                    "macs": n * full + d.apply_macs(n),
                    "ms": t,
                    "ms_delta_term_alone": t_delta,
                }
            )
    return rows


def v_goals(v: dict[str, Any], ind: dict[str, Any], store: dict[str, float]) -> dict[str, Any]:
    """The issue's goals checked for one shared variant, all at once (cheap but wrong does not count)."""
    delta = v.get("delta", "")
    g: dict[str, Any] = {
        "variant": v["name"],
        "macs_vs_base": v["ratios"]["macs_vs_base"],
        "macs_ok": v["ratios"]["macs_vs_base"] <= GOALS["macs_vs_base"],
        "time_vs_base": v["ratios"]["time_vs_base"],
        "time_ok": v["ratios"]["time_vs_base"] <= GOALS["time_vs_base"],
        "storage_fraction": store.get(delta),
        "storage_ok": store.get(delta, 1.0) <= GOALS["storage_fraction"],
    }
    if "headline" in v and "headline" in ind:
        rel = {}
        for t in ("depth", "normals"):
            a, b = v["headline"][t], ind["headline"][t]
            rel[t] = (a - b) / abs(b) if b else float("inf")  # rmse and mean angle: lower is better
        g["metric_rel_worse"] = rel
        g["accuracy_ok"] = all(r <= GOALS["metric_rel"] for r in rel.values())
    else:
        g["accuracy_ok"] = None  # no ground truth: unknown, never counted as met
    g["all_met"] = bool(g["macs_ok"] and g["time_ok"] and g["storage_ok"] and g["accuracy_ok"])
    return g


# ---------------------------------------------------------------- report
def markdown(r: dict[str, Any]) -> str:
    L = ["# Task sharing benchmark", ""]
    L += [
        f"- checkpoint: {r['checkpoint']}",
        f"- accuracy data: {r['eval_data']}",
        f"- image {r['image_size'][0]}x{r['image_size'][1]}, {r['tokens']} tokens, batch 1",
        f"- CPU: {r['machine']['cpu']} torch threads ({r['machine']['cpu_count']} cores visible, machine shared "
        "with other jobs: timings are medians of interleaved runs)",
        f"- CUDA: {r['machine'].get('cuda', 'not available on this machine: not measured')}",
        "",
    ]
    L += [
        "## Variants",
        "",
        "| variant | GMACs/frame | ms/frame CPU | params stored (M) | tokens recomputed (depth / normals) |"
        " MACs vs base | time vs base | MACs vs indep. | time vs indep. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in r["variants"]:
        rf = v.get("recomputed_fraction", {})
        rec = f"{rf['depth']:.2f} / {rf['normals']:.2f}" if "depth" in rf else "-"
        ra = v["ratios"]
        L.append(
            f"| {v['name']} | {v['gmacs']:.3f} | {v['ms_cpu']:.1f} | {v['params'] / 1e6:.3f} | {rec} | "
            f"{ra['macs_vs_base']:.2f} | {ra['time_vs_base']:.2f} | {ra['macs_vs_independent']:.2f} | "
            f"{ra['time_vs_independent']:.2f} |"
        )
    if any("ms_cuda" in v for v in r["variants"]):
        L += ["", "| variant | ms/frame CUDA |", "|---|---|"]
        L += [f"| {v['name']} | {v['ms_cuda']:.2f} |" for v in r["variants"] if "ms_cuda" in v]
    L += [
        "",
        "## Accuracy",
        "",
        "Deviation from the independent model's output: segmentation % pixels with another "
        "class, depth mean relative difference, normals mean angle (deg).",
    ]
    has_metrics = any("headline" in v for v in r["variants"])
    head = "| variant | seg dev % | depth dev | normals dev deg |" + (
        " mIoU | depth RMSE (m) | normals mean (deg) |" if has_metrics else ""
    )
    L += ["", head, "|" + "---|" * (head.count("|") - 1)]
    for v in r["variants"]:
        d = v["deviation_vs_independent"]
        cells = [f"{d.get(t, float('nan')):.3f}" if t in d else "-" for t in TASKS]
        row = f"| {v['name']} | " + " | ".join(cells) + " |"
        if has_metrics:
            h = v.get("headline", {})
            row += " " + " | ".join(f"{h[t]:.4f}" if t in h else "-" for t in TASKS) + " |"
        L.append(row)
    L += [
        "",
        "## Sub-task storage",
        "",
        "| delta | task | stored values | fraction of a full model | relative weight error |",
        "|---|---|---|---|---|",
    ]
    for s in r["storage"]:
        L.append(f"| {s['delta']} | {s['task']} | {s['values']} | {s['fraction_of_full']:.3f} | {s['rel_error']:.3f} |")
    L += [
        "",
        "## Delta structures (block 0 MLP fc1, one sub-task, all tokens)",
        "",
        "| structure | stored values | rel. error of dW | MACs (M) | ms |",
        "|---|---|---|---|---|",
    ]
    for s in r["delta_structures"]:
        L.append(
            f"| {s['structure']} | {s['stored_values']} | {s['rel_error']:.3f} | {s['macs'] / 1e6:.1f} | "
            f"{s['ms']:.3f} |"
        )
    L += [
        "",
        "## Goals (each shared variant checked on all of them at once)",
        "",
        f"Goals: MACs <= {GOALS['macs_vs_base']}x base, time <= {GOALS['time_vs_base']}x base, sub-task storage <= "
        f"{GOALS['storage_fraction']:.0%} of a full model, depth RMSE and normals mean angle within "
        f"{GOALS['metric_rel']:.0%} (relative) of the independent models.",
        "",
        "| variant | MACs vs base | time vs base | storage / full | depth, normals metric worse by | all met |",
        "|---|---|---|---|---|---|",
    ]
    for g in r["goals"]["per_variant"]:
        rel = g.get("metric_rel_worse")
        acc = ", ".join(f"{x:+.1%}" for x in rel.values()) if rel else "unknown (no ground truth)"
        sf = g["storage_fraction"]
        L.append(
            f"| {g['variant']} | {g['macs_vs_base']:.2f} {'ok' if g['macs_ok'] else 'no'} | "
            f"{g['time_vs_base']:.2f} {'ok' if g['time_ok'] else 'no'} | "
            f"{'-' if sf is None else f'{sf:.3f}'} {'ok' if g['storage_ok'] else 'no'} | {acc} "
            f"{'' if g['accuracy_ok'] is None else ('ok' if g['accuracy_ok'] else 'no')} | "
            f"{'YES' if g['all_met'] else 'no'} |"
        )
    L += ["", f"**{r['goals']['summary']}**"]
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
    ap.add_argument("--shared", default=None, help="a shared checkpoint (trained deltas) to benchmark as well")
    ap.add_argument("--data-root", default=str(ROOT / "data" / "synthetic"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--samples", type=int, default=40, help="frames of the split used for accuracy")
    ap.add_argument("--frames", type=int, default=15, help="timed frames per variant")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--delta", default="lowrank", choices=["lowrank", "rows", "sparse", "dense"])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--row-fraction", type=float, default=0.1)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.25, 0.5, 1.0, 2.0])
    ap.add_argument(
        "--token-fractions",
        type=float,
        nargs="+",
        default=[0.25],
        help="extra shared variants at threshold 0 with this max_token_fraction",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "task_sharing"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 timed frames, 3 samples")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.quick:
        args.frames, args.warmup, args.samples = 2, 1, 3
    if args.threads:
        torch.set_num_threads(args.threads)

    models, ckpt_name, trained = load_models(args.checkpoint)
    cfg = models["segmentation"].cfg
    n_tokens = math.prod(models["segmentation"].encoder.grid_size)
    full_params = sum(p.numel() for p in models["depth"].parameters())
    compress_args = {"rank": args.rank, "density": args.density, "row_fraction": args.row_fraction}
    log.info("building shared models (%s)", args.delta)
    shared = SharedMultiTaskModel.from_dense(
        models["segmentation"], {t: models[t] for t in TASKS[1:]}, args.delta, **compress_args
    ).eval()
    exact = SharedMultiTaskModel.from_dense(models["segmentation"], {t: models[t] for t in TASKS[1:]}, "dense").eval()
    variants = [
        dense_variant("base only (segmentation)", {"segmentation": models["segmentation"]}, "base_only"),
        dense_variant("independent x3", models, "independent"),
        shared_variant("shared dense-delta thr=0", exact, 0.0, 1.0, "dense"),
    ]
    for thr in args.thresholds:
        variants.append(shared_variant(f"shared {args.delta} thr={thr:g}", shared, thr, 1.0, args.delta))
    for frac in args.token_fractions:
        variants.append(shared_variant(f"shared {args.delta} top {frac:g}", shared, 0.0, frac, args.delta))
    if args.shared:
        trained_shared, _ = load_shared(args.shared)
        for thr in args.thresholds:
            variants.append(shared_variant(f"trained-shared thr={thr:g}", trained_shared, thr, 1.0, "checkpoint"))
    samples, data_desc = load_eval_images(Path(args.data_root), args.split, cfg.img_size, args.samples)
    with torch.no_grad():
        x = normalise(samples[0]["image"][None])
        macs = {v.name: v.run(x)[1] for v in variants}
    ms_cpu = time_variants(variants, x, args.frames, args.warmup)
    ms_cuda, cuda_name = None, None
    if torch.cuda.is_available():
        cuda_name = torch.cuda.get_device_name()
        log.info("CUDA timing (fp16) on %s", cuda_name)
        for m in [*models.values(), shared, exact]:
            m.to("cuda", torch.float16)
        ms_cuda = time_variants(variants, x.to("cuda", torch.float16), args.frames * 4, args.warmup * 4)
        for m in [*models.values(), shared, exact]:
            m.to("cpu", torch.float32)
    acc = evaluate(variants, models, samples, cfg.num_classes, with_metrics=all(t in samples[0] for t in TASKS))

    base_name, ind_name = variants[0].name, variants[1].name
    out_variants = []
    for v in variants:
        entry = {
            "name": v.name,
            "kind": v.kind,
            **v.detail,
            "gmacs": macs[v.name] / 1e9,
            "ms_cpu": ms_cpu[v.name],
            "params": v.params,
            **acc[v.name],
        }
        if ms_cuda:
            entry["ms_cuda"] = ms_cuda[v.name]
        entry["ratios"] = {
            "macs_vs_base": macs[v.name] / macs[base_name],
            "time_vs_base": ms_cpu[v.name] / ms_cpu[base_name],
            "macs_vs_independent": macs[v.name] / macs[ind_name],
            "time_vs_independent": ms_cpu[v.name] / ms_cpu[ind_name],
        }
        out_variants.append(entry)

    storage = []
    for kind in ("lowrank", "rows", "sparse", "dense"):
        sm = (
            shared
            if kind == args.delta
            else SharedMultiTaskModel.from_dense(
                models["segmentation"], {t: models[t] for t in TASKS[1:]}, kind, **compress_args
            )
        )
        for t, st in sm.subtasks.items():
            num = den = 0.0
            for name, p in models[t].encoder.named_parameters():
                if p.ndim >= 2:
                    dw = (p - dict(models["segmentation"].encoder.named_parameters())[name]).reshape(
                        st.delta(name).dense().shape
                    )
                    num += float((st.delta(name).dense() - dw).pow(2).sum())
                    den += float(dw.pow(2).sum())
            s = st.storage()
            arg = {"lowrank": "rank", "rows": "row_fraction", "sparse": "density"}.get(kind)
            label = f"{kind} ({arg}={compress_args[arg]})" if arg else kind
            storage.append(
                {
                    "delta": label,
                    "task": t,
                    "values": s["values"],
                    "bytes": s["bytes"],
                    "fraction_of_full": s["values"] / full_params,
                    "rel_error": math.sqrt(num / max(den, 1e-30)),
                }
            )
    structures = delta_structures(models, args.rank, args.density, args.row_fraction, reps=5 if args.quick else 30)

    store_by_delta = {
        s["delta"].split(" ")[0]: max(
            x["fraction_of_full"] for x in storage if x["delta"].split(" ")[0] == s["delta"].split(" ")[0]
        )
        for s in storage
    }
    ind = next(v for v in out_variants if v["kind"] == "independent")
    goals = {"per_variant": [v_goals(v, ind, store_by_delta) for v in out_variants if v["kind"] == "shared"]}
    met = [g["variant"] for g in goals["per_variant"] if g["all_met"]]
    goals["summary"] = (
        f"all goals met by: {', '.join(met)}"
        if met
        else "NO shared variant meets all goals at once (see per-variant checks)"
    )
    notes = [
        "MACs: shared variants report the engine's own count of rows that went through each product (equal to "
        "torch's FlopCounterMode in test/test_sharing_engine.py); dense variants are counted by FlopCounterMode.",
        "Shared variants compute the base task in full, then only the sub-task tokens whose relative activation "
        "change vs the base exceeds the threshold (or the top fraction); see mtshare_ros/sharing/engine.py.",
        "Heads run in full for every task; their MACs are part of every count.",
    ]
    if not trained:
        notes.append(
            "The models are UNTRAINED and independent: dW is not low-rank or sparse and activation deltas "
            "are not small, so compressed deltas and skipped tokens change outputs a lot. The sharing "
            "training steps (L1 on dW, fixed pattern, activation-delta sparsity) are what make them small."
        )
    result = {
        "machine": {
            "cpu": torch.get_num_threads(),
            "cpu_count": __import__("os").cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cuda": cuda_name,
        },
        "checkpoint": ckpt_name,
        "trained": trained,
        "eval_data": data_desc,
        "image_size": list(cfg.img_size),
        "tokens": n_tokens,
        "full_model_params": full_params,
        "variants": out_variants,
        "storage": storage,
        "delta_structures": structures,
        "goals": goals,
        "notes": notes,
    }
    if result["machine"]["cuda"] is None:
        result["machine"].pop("cuda")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    log.info("wrote %s.json and .md", out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
