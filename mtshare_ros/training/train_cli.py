"""``mtshare train``: train single-task models, or one multi-task model, from a YAML config (CPU, one GPU, or
torchrun DDP)."""

from __future__ import annotations

import argparse
import logging
import sys

import yaml

from mtshare_ros.training.config import ConfigError, load_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtshare train",
        description="Train independent single-task models (segmentation, depth, normals) from a config, or one "
        "multi-task model (one encoder, a head per task) with train.shared_encoder=true. "
        "Several processes: torchrun --nproc-per-node N -m mtshare_ros.cli train --config ...",
    )
    p.add_argument("--config", required=True, help="YAML file, e.g. config/train/synthetic_small.yaml")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.steps=100 train.lr=5e-4")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")
    p.add_argument("--export-state", metavar="PATH",
                   help="write the models of the run's latest training state (train.out_dir/last.pt, else "
                   "train.snapshot) to PATH and exit, without training: evaluate a long run while it goes on")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"mtshare train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(cfg, sort_keys=False))
        return 0
    from mtshare_ros.training.trainer import Trainer, train

    if args.export_state:
        try:
            step = Trainer(cfg).export_state(args.export_state)
        except ConfigError as exc:
            print(f"mtshare train: {exc}", file=sys.stderr)
            return 2
        print(f"models of step {step} of {cfg['train']['steps']}: {args.export_state}")
        return 0
    command = " ".join(["mtshare train", "--config", args.config, *args.overrides])
    try:
        trainer = train(cfg, command=command)
    except ConfigError as exc:
        print(f"mtshare train: {exc}", file=sys.stderr)
        return 2
    if trainer.info.is_main:
        print(f"model checkpoint: {trainer.out_dir / 'model.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
