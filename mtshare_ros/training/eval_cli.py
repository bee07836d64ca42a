"""``mtshare eval``: metrics of a checkpoint's task models on a dataset split, as JSON and Markdown."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from mtshare_ros.inference import select_device
from mtshare_ros.models.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from mtshare_ros.training.datasets import make_dataset
from mtshare_ros.training.evaluate import evaluate, write_reports
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
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        models, meta = load_checkpoint(args.checkpoint, tasks=args.tasks)
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
    metrics = evaluate(dict(models.items()), loader, device, cfg.num_classes, amp=False)
    for task, m in models.items():
        metrics[task]["params_M"] = count_parameters(m) / 1e6
        metrics[task]["GMACs"] = count_gmacs(m, size)
        if args.latency_runs:
            lat = time_forward(m, size, args.latency_runs)
            metrics[task]["latency_median_ms"], metrics[task]["latency_p90_ms"] = lat["median_ms"], lat["p90_ms"]
    results = {
        "checkpoint": str(resolve_checkpoint(args.checkpoint)),
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
    json_path, md_path = write_reports(results, args.out, title=f"Evaluation on {args.dataset}/{args.split}")
    for task, res in metrics.items():
        shown = {k: round(v, 4) for k, v in res.items() if isinstance(v, float)}
        print(f"{task}: {shown}")
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
