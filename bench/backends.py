"""Backends benchmark (issue 27): every way to run the models on this machine, side by side in one run.

Rows: backend x model x input size. Models: the independent models (the shipped default checkpoint run
densely), the multi-task model (weights/multitask.pt, its one encoder run once), and the shared engine at the
node's sharing defaults in ``threshold`` mode (per-frame token counts) and ``fixed`` mode (exactly
ceil(cap x N) tokens per sub-task and layer: fixed shapes, what exports). Backends: torch eager float32 (the
reference), torch bfloat16 (autocast; run only where the CPU's bf16 GEMM is at least half as fast as its fp32
one, else reported as skipped with the measured ratio), ``torch.compile``, ONNX Runtime (CPU execution
provider) and OpenVINO (CPU), the last two on the graphs ``mtshare export`` writes.

Per row: ms per frame (median of rounds interleaved across every row of one size, so that machine load hits
all alike), frames per second for all three tasks, executed GMACs (the engine's counting rules,
mtshare_ros/sharing/cost.py) and the GMAC/s achieved, against this machine's dense GEMM throughput measured in
the same run (fp32 and bf16 matmuls of the transformer's shapes and of a large square), and accuracy against
torch float32 of the same model on ``--samples`` frames of the held-out synthetic split (labels equal,
depth relative difference, normals angle) with each task's headline metric against ground truth.

Writes bench/results/<out>.{json,md} with the torch version and CPU capability (bench/environment.py).

    .venv/bin/python bench/backends.py --threads 2              # the committed run (~10 min on 2 idle cores)
    .venv/bin/python bench/backends.py --quick                  # smoke run (one size, few frames and samples)
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from mtshare_ros.models.vit import run_tasks
from mtshare_ros.runtime.settings import SharingSettings
from mtshare_ros.sharing.cost import dense_model_macs, multitask_model_macs
from mtshare_ros.sharing.loader import load_models
from mtshare_ros.training.evaluate import normalise
from mtshare_ros.training.metrics import build_metrics

from environment import environment_line, environment_record, write_result
from sharing_measure import HEADLINE, TASKS, load_eval_samples

log = logging.getLogger("backends")
ROOT = Path(__file__).resolve().parent.parent
MODELS = ("independent", "multitask", "engine_threshold", "engine_fixed")
BACKENDS = ("torch", "torch_bf16", "torch_compile", "onnxruntime", "openvino")
Outputs = dict[str, torch.Tensor]


# ---------------------------------------------------------------- GEMM peak
def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 0.5) -> float:
    """GMAC/s of ``(m, k) @ (k, n)`` in ``dtype`` at torch's thread count: repeated for ``seconds``."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    reps, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or reps < 3:
        a @ b
        reps += 1
    return m * k * n * reps / elapsed / 1e9


def gemm_peak(tokens: int, dim: int, quick: bool) -> dict[str, Any]:
    """The dense GEMM throughput a variant is judged against: the transformer's own products (tokens x dim x
    4 dim and back, qkv) and a 1024 square, fp32 and bf16; ``peak`` is the best of each dtype."""
    shapes = {"square_1024": (1024, 1024, 1024), "mlp_fc1": (tokens, dim, 4 * dim), "mlp_fc2": (tokens, 4 * dim, dim),
              "qkv": (tokens, dim, 3 * dim)}
    res: dict[str, Any] = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rates = {s: gemm_rate(*shape, dtype, 0.2 if quick else 0.6) for s, shape in shapes.items()}
        res[name] = {"gmac_per_s": rates, "peak": max(rates.values())}
    res["bf16_vs_fp32"] = res["bf16"]["peak"] / res["fp32"]["peak"]
    return res


# ---------------------------------------------------------------- variants
@dataclass
class Row:
    """One backend x model: ``run(x)`` gives the three tasks' outputs as the torch model returns them."""

    backend: str
    model: str
    run: Callable[[torch.Tensor], Outputs]
    gmacs: Callable[[torch.Tensor], float]
    note: str = ""
    times: dict[str, list[float]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.backend}/{self.model}"


@dataclass
class Loaded:
    dense: dict[str, torch.nn.Module]
    multitask: dict[str, torch.nn.Module]
    engine: Any
    sharing: SharingSettings


def load_all() -> Loaded:
    independent = load_models("independent", shared=False)
    multitask = load_models("multitask", shared=False)
    return Loaded({t: independent.dense[t].eval() for t in TASKS}, {t: multitask.dense[t].eval() for t in TASKS},
                  load_models("default").shared.eval(), SharingSettings())


def torch_runs(m: Loaded) -> dict[str, tuple[Callable[[torch.Tensor], Outputs], Callable[[torch.Tensor], float]]]:
    """The reference forward of each model kind and its executed GMACs (counted, not timed)."""
    s = m.sharing
    thr = s.thresholds(list(TASKS[1:]))

    def engine(mode: str) -> Callable[[torch.Tensor], Outputs]:
        if mode == "fixed":  # exactly ceil(cap x N) rows per sub-task and layer, no host synchronisation
            return lambda x: m.engine(x, 0.0, s.max_token_fraction, sync_free=True)[0]
        return lambda x: m.engine(x, thr, s.max_token_fraction)[0]

    def engine_gmacs(mode: str) -> Callable[[torch.Tensor], float]:
        def count(x: torch.Tensor) -> float:
            args = (0.0, s.max_token_fraction) if mode == "fixed" else (thr, s.max_token_fraction)
            return m.engine(x, *args, sync_free=mode == "fixed")[1].macs_total / 1e9
        return count

    size = lambda x: tuple(x.shape[-2:])  # noqa: E731
    return {
        "independent": (lambda x: {t: mod(x) for t, mod in m.dense.items()},
                        lambda x: sum(dense_model_macs(mod, size(x)) for mod in m.dense.values()) / 1e9),
        "multitask": (lambda x: run_tasks(m.multitask, x), lambda x: multitask_model_macs(m.multitask, size(x)) / 1e9),
        "engine_threshold": (engine("threshold"), engine_gmacs("threshold")),
        "engine_fixed": (engine("fixed"), engine_gmacs("fixed")),
    }


def bf16_run(run: Callable[[torch.Tensor], Outputs]) -> Callable[[torch.Tensor], Outputs]:
    def f(x: torch.Tensor) -> Outputs:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return {t: o.float() for t, o in run(x).items()}
    return f


def compiled_run(run: Callable[[torch.Tensor], Outputs], model: str) -> Callable[[torch.Tensor], Outputs]:
    """``torch.compile`` of the forward (dynamic shapes off: one graph per input size, compiled on first use). The
    threshold engine's token counts depend on the data: it graph-breaks there, which is what it measures."""
    return torch.compile(run, dynamic=False, fullgraph=False)


_EXPORTED: dict[tuple[str, int, str], Path] = {}


def onnx_rows(m: Loaded, backend: str, export_dir: Path, height: int) -> dict[str, Callable[[torch.Tensor], Outputs]]:
    """The graphs ``mtshare export`` writes, run by ``backend``: every model kind that exports (the threshold engine
    does not: its shapes change per frame)."""
    from mtshare_ros.export.onnx import export_onnx
    from mtshare_ros.runtime.onnx_backend import OnnxRunner

    runs = {}
    s = m.sharing
    for kind, model in (("independent", "independent"), ("multitask", "multitask"), ("engine", "engine_fixed")):
        key = (kind, height, str(export_dir))
        if key not in _EXPORTED:  # one export per graph and height, shared by ONNX Runtime and OpenVINO
            # each kind of 'default' is its shipped file (export's _checkpoint_for)
            _EXPORTED[key] = export_onnx("default", kind, export_dir, height=height, mode="fixed",
                                         cap=s.max_token_fraction)
        path = _EXPORTED[key]
        runner = OnnxRunner(path, backend=backend, threads=torch.get_num_threads())
        runs[model] = runner.run
    return runs


def build_rows(m: Loaded, backends: list[str], export_dir: Path, height: int, bf16_ok: bool) -> tuple[list[Row], dict]:
    ref = torch_runs(m)
    rows, skipped = [], {}
    for backend in backends:
        if backend == "torch_bf16" and not bf16_ok:
            skipped[backend] = "this CPU's bf16 GEMM is under half its fp32 throughput (see gemm): no native bf16"
            continue
        if backend in ("onnxruntime", "openvino"):
            try:
                graphs = onnx_rows(m, backend, export_dir, height)
            except ImportError as exc:
                skipped[backend] = f"not installed: {exc}"
                continue
            rows += [Row(backend, model, run, ref[model][1]) for model, run in graphs.items()]
            skipped[f"{backend}/engine_threshold"] = "threshold mode has per-frame shapes: it does not export"
            continue
        for model in MODELS:
            run, gmacs = ref[model]
            if backend == "torch_bf16":
                run = bf16_run(run)
            elif backend == "torch_compile":
                run = compiled_run(run, model)
            rows.append(Row(backend, model, run, gmacs))
    return rows, skipped


# ---------------------------------------------------------------- measuring
def time_rows(rows: list[Row], x: torch.Tensor, key: str, frames: int, warmup: int) -> None:
    """Median-ready ms per frame into ``row.times[key]``: rounds interleaved over every row."""
    with torch.inference_mode():
        for r in rows:  # first calls compile / build: not timed
            r.run(x)
        for i in tqdm(range(warmup + frames), desc=f"timing {key}", mininterval=10):
            for r in rows:
                t0 = time.perf_counter()
                r.run(x)
                if i >= warmup:
                    r.times.setdefault(key, []).append((time.perf_counter() - t0) * 1e3)


def deviation(task: str, out: torch.Tensor, ref: torch.Tensor) -> float:
    """From torch float32: segmentation % labels equal, depth mean relative difference, normals mean deg."""
    out, ref = out.float(), ref.float()
    if task == "segmentation":
        return float((out.argmax(1) == ref.argmax(1)).float().mean() * 100)
    if task == "depth":
        return float(((out - ref).abs() / ref.abs().clamp_min(1e-3)).mean())
    cos = (F.normalize(out, dim=1) * F.normalize(ref, dim=1)).sum(1).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos)).mean())


def accuracy(rows: list[Row], refs: dict[str, Callable], samples: list[dict], num_classes: int, gt: bool
             ) -> dict[str, dict]:
    metrics = {r.name: {t: build_metrics(t, num_classes) for t in TASKS} for r in rows}
    dev: dict[str, dict[str, list[float]]] = {r.name: {t: [] for t in TASKS} for r in rows}
    with torch.inference_mode():
        for s in tqdm(samples, desc="accuracy", mininterval=10):
            x = normalise(s["image"][None])
            ref = {model: run(x) for model, run in refs.items()}
            for r in rows:
                out = r.run(x)
                for t in TASKS:
                    dev[r.name][t].append(deviation(t, out[t], ref[r.model][t]))
                    if gt:
                        metrics[r.name][t].update(out[t].float(), s[t][None])
    res = {}
    for r in rows:
        entry: dict[str, Any] = {"vs_torch_fp32": {
            "segmentation_labels_equal_pct": statistics.mean(dev[r.name]["segmentation"]),
            "depth_mean_rel_diff": statistics.mean(dev[r.name]["depth"]),
            "normals_mean_deg": statistics.mean(dev[r.name]["normals"])}}
        if gt:
            entry["headline"] = {t: float(metrics[r.name][t].compute()[HEADLINE[t]]) for t in TASKS}
        res[r.name] = entry
    return res


# ---------------------------------------------------------------- report
def markdown(result: dict[str, Any]) -> str:
    g = result["gemm"]
    lines = [
        "# Backends (issue 27)", "",
        f"Machine: {environment_line(result['environment'])}.", "",
        f"Command: `{result['command']}`. Accuracy on {result['samples']}.", "",
        f"Dense GEMM on this machine, same run: fp32 peak {g['fp32']['peak']:.1f} GMAC/s, bf16 peak "
        f"{g['bf16']['peak']:.1f} GMAC/s ({g['bf16_vs_fp32']:.2f}x fp32); per shape: "
        + ", ".join(f"{k} {v:.1f}/{g['bf16']['gmac_per_s'][k]:.1f}" for k, v in g["fp32"]["gmac_per_s"].items())
        + " (fp32/bf16).", "",
    ]
    for size, rows in result["sizes"].items():
        lines += [f"## {size}", "",
                  "| backend | model | ms/frame | fps (3 tasks) | vs torch fp32 | GMACs | GMAC/s | of fp32 peak | "
                  "labels = torch % | depth rel diff | normals deg | mIoU | depth RMSE | normals deg |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            acc = r.get("accuracy", {})
            v, h = acc.get("vs_torch_fp32", {}), acc.get("headline", {})
            fmt = lambda d, k, f: (f.format(d[k]) if k in d else "")  # noqa: E731
            lines.append(
                f"| {r['backend']} | {r['model']} | {r['ms']:.1f} | {r['fps']:.1f} | {r['time_vs_torch']:.2f}x | "
                f"{r['gmacs']:.2f} | {r['gmac_per_s']:.1f} | {r['of_fp32_peak']:.0%} | "
                f"{fmt(v, 'segmentation_labels_equal_pct', '{:.2f}')} | {fmt(v, 'depth_mean_rel_diff', '{:.1e}')} | "
                f"{fmt(v, 'normals_mean_deg', '{:.3f}')} | {fmt(h, 'segmentation', '{:.4f}')} | "
                f"{fmt(h, 'depth', '{:.4f}')} | {fmt(h, 'normals', '{:.2f}')} |")
        lines.append("")
    if result["skipped"]:
        lines += ["Not run: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items()) + ".", ""]
    lines += [result.get("notes", "")]
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="backends", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime / OpenVINO) threads")
    ap.add_argument("--sizes", nargs="+", default=["240x320", "480x640"], help="HxW input sizes")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    ap.add_argument("--frames", type=int, default=20, help="timed rounds per size (each times every row)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--samples", type=int, default=24, help="held-out frames for accuracy (at the first size)")
    ap.add_argument("--test-root", default=str(ROOT / "data" / "v3" / "test"), help="synthetic split with READY")
    ap.add_argument("--split", default="val")
    ap.add_argument("--export-dir", default=None, help="where the ONNX graphs go (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 240x320, 3 frames, 4 samples")
    ap.add_argument("--out", default="backends", help="bench/results/<out>.{json,md}")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.sizes, args.frames, args.warmup, args.samples = args.sizes[:1], 3, 1, 4
    torch.set_num_threads(args.threads)
    m = load_all()
    cfg = m.engine.cfg
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes]
    tokens = math.prod(cfg.img_size) // cfg.patch_size**2
    gemm = gemm_peak(tokens, cfg.embed_dim, args.quick)
    log.info("GEMM peak fp32 %.1f GMAC/s, bf16 %.1f GMAC/s", gemm["fp32"]["peak"], gemm["bf16"]["peak"])
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(args.export_dir or tmp)
        bf16_ok = gemm["bf16_vs_fp32"] >= 0.5
        rows, skipped = build_rows(m, args.backends, export_dir / f"h{sizes[0][0]}", sizes[0][0], bf16_ok)
        samples, desc, gt = load_eval_samples(Path(args.test_root), args.split, sizes[0], args.samples)
        result: dict[str, Any] = {"environment": environment_record(), "command": " ".join(["bench/backends.py",
                                  *(argv if argv is not None else sys.argv[1:])]), "gemm": gemm, "samples": desc,
                                  "skipped": skipped, "sizes": {}}
        refs = {model: run for model, (run, _) in torch_runs(m).items()}
        acc = accuracy(rows, refs, samples, cfg.num_classes, gt)
        for h, w in sizes:
            if h != sizes[0][0]:  # the exported graphs have the model's rows fixed: export again at this height
                rows, _ = build_rows(m, args.backends, export_dir / f"h{h}", h, bf16_ok)
            x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
            if samples and tuple(samples[0]["image"].shape[-2:]) == (h, w):
                x = normalise(samples[0]["image"][None])
            key = f"{h}x{w}"
            time_rows(rows, x, key, args.frames, args.warmup)
            out = []
            torch_ms = {r.model: statistics.median(r.times[key]) for r in rows if r.backend == "torch"}
            for r in rows:
                ms = statistics.median(r.times[key])
                with torch.inference_mode():
                    gmacs = r.gmacs(x)
                entry = {"backend": r.backend, "model": r.model, "ms": ms, "fps": 1e3 / ms,
                         "time_vs_torch": ms / torch_ms.get(r.model, ms), "gmacs": gmacs,
                         "gmac_per_s": gmacs / ms * 1e3, "of_fp32_peak": gmacs / ms * 1e3 / gemm["fp32"]["peak"]}
                if (h, w) == sizes[0]:
                    entry["accuracy"] = acc[r.name]
                out.append(entry)
            result["sizes"][key] = out
    write_result(args.out, result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
