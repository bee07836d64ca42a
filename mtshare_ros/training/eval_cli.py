"""``mtshare eval``: metrics of a checkpoint's task models on a dataset split, as JSON and Markdown."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from mtshare_ros.models.checkpoint import CheckpointError
from mtshare_ros.models.device import select_device
from mtshare_ros.sharing.loader import load_models
from mtshare_ros.training.datasets import make_dataset
from mtshare_ros.training.evaluate import evaluate, evaluate_engine, write_reports
from mtshare_ros.training.model_stats import count_gmacs, count_parameters, time_forward


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mtshare eval", description="Evaluate a checkpoint on a dataset split.")
    p.add_argument("--checkpoint", default="default", help="checkpoint file, or 'default' for the shipped weights")
    p.add_argument("--dataset", default="synthetic", help="dataset name for mtshare_ros.data.build_dataset")
    p.add_argument("--root", default="data/synthetic", help="dataset root folder")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="results.json", help="JSON output; the Markdown report goes beside it (.md)")
    p.add_argument("--tasks", nargs="+", default=None, help="subset of the checkpoint's tasks")
    p.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"), help="default: model img_size")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-samples", type=int, default=None, help="evaluate the first N samples only")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--latency-runs", type=int, default=0, help="also time N batch-1 forward passes per task")
    p.add_argument(
        "--sharing",
        default=None,
        metavar="THR:FRAC",
        help="evaluate the shared engine (base task in full, sub-tasks from their deltas) at token threshold THR "
        "and max_token_fraction FRAC, e.g. 0.05:0.1 (the node's default); default: the independent models",
    )
    return p


def _sharing_setting(text: str) -> tuple[float, float]:
    try:
        thr, frac = (float(v) for v in text.split(":"))
    except ValueError as exc:
        raise ValueError(f"--sharing {text!r}: expected THR:FRAC, e.g. 0.05:0.1") from exc
    if thr < 0 or not 0 < frac <= 1:
        raise ValueError(f"--sharing {text!r}: threshold >= 0 and 0 < max_token_fraction <= 1")
    return thr, frac


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        thr, frac = _sharing_setting(args.sharing) if args.sharing else (0.0, 1.0)
        loaded = load_models(args.checkpoint, tasks=None if args.sharing else args.tasks, shared=bool(args.sharing))
        shared, models, meta = loaded.shared, loaded.dense, loaded.meta
        if args.sharing:
            if shared is None:
                raise ValueError(f"{args.checkpoint}: no base task plus sub-tasks to share")
            models = torch.nn.ModuleDict({t: models[t] for t in shared.tasks if not args.tasks or t in args.tasks})
        device = select_device(args.device)
    except (CheckpointError, ValueError) as exc:
        print(f"mtshare eval: {exc}", file=sys.stderr)
        return 2
    cfg = meta["model_config"]
    size = tuple(args.size) if args.size else tuple(cfg.img_size)
    dataset = make_dataset({"dataset": args.dataset, "root": args.root}, args.split, size, augment=False)
    if args.max_samples:
        dataset = Subset(dataset, range(min(args.max_samples, len(dataset))))
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers)
    models.to(device)
    sharing = None
    if shared is not None:
        shared.to(device)
        run = evaluate_engine(shared, list(models), loader, device, cfg.num_classes, thr, frac,
                              canonical_focal=cfg.canonical_focal)  # depth made metric with each sample's focal
        metrics = run.metrics
        sharing = {
            "threshold": thr,
            "max_token_fraction": frac,
            "source": loaded.sharing_source,
            "recomputed_fraction": run.recomputed_fraction,
            "macs_vs_independent": run.macs_vs_independent,
        }
    else:
        metrics = evaluate(dict(models.items()), loader, device, cfg.num_classes, amp=False,
                           canonical_focal=cfg.canonical_focal)
    for task, m in models.items():
        if shared is not None:  # what the engine stores and executed per frame, not a dense model's
            subs = shared.subtasks
            stored = subs[task].storage()["values"] if task in subs else count_parameters(shared.base)
            metrics[task]["params_M"] = stored / 1e6
            metrics[task]["GMACs"] = run.gmacs[task]
            continue
        metrics[task]["params_M"] = count_parameters(m) / 1e6
        metrics[task]["GMACs"] = count_gmacs(m, size)
        if args.latency_runs:
            lat = time_forward(m, size, args.latency_runs)
            metrics[task]["latency_median_ms"], metrics[task]["latency_p90_ms"] = lat["median_ms"], lat["p90_ms"]
    results = {
        "checkpoint": str(loaded.path),
        "dataset": args.dataset,
        "root": str(Path(args.root)),
        "split": args.split,
        "samples": len(dataset),
        "size": list(size),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "class_names": meta["class_names"],
        "provenance": {k: v for k, v in meta.get("provenance", {}).items() if k != "config"},
        "metrics": metrics,
    }
    if sharing:
        results["sharing"] = sharing
    json_path, md_path = write_reports(results, args.out, title=f"Evaluation on {args.dataset}/{args.split}")
    for task, res in metrics.items():
        shown = {k: round(v, 4) for k, v in res.items() if isinstance(v, float)}
        print(f"{task}: {shown}")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
