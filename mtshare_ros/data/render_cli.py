"""``mtshare render``: render the synthetic indoor dataset (NYUD-v2 layout plus ordered sequences)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtshare render",
        description="Render procedural indoor rooms with MuJoCo (offscreen, CPU: MUJOCO_GL=egl, or osmesa) into a "
                    "multi-task dataset: RGB, semantic classes (mtshare_ros.classes.SYNTHETIC_CLASSES), instances, "
                    "metric depth, surface normals in the optical frame, intrinsics and camera poses. Each room is "
                    "one video sequence along a smooth robot or hand-held camera trajectory. Rooms are split into "
                    "train and val (gt_sets/train.txt, gt_sets/val.txt). Total frames = rooms x frames-per-room.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("data/synthetic"), help="output dataset folder")
    p.add_argument("--rooms", type=int, default=40, help="number of rooms (= number of sequences)")
    p.add_argument("--frames-per-room", type=int, default=30, help="sequence length in frames")
    p.add_argument("--height", type=int, default=240, help="image height in pixels")
    p.add_argument("--width", type=int, default=320, help="image width in pixels")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate of the sequences (camera at walking speed)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; the same seed gives the same dataset")
    p.add_argument("--val-fraction", type=float, default=0.15,
                   help="fraction of rooms held out for validation (1: a test set, every room held out)")
    p.add_argument("--domain", default="train", choices=["train", "generalisation"],
                   help="room kinds and asset sources: 'train' (living rooms, offices, bedrooms, corridors) or "
                        "'generalisation' (kitchens and an asset source that training never sees)")
    p.add_argument("--workers", type=int, default=1, help="rendering processes (one per core)")
    p.add_argument("--force", action="store_true",
                   help="re-render from scratch even if OUT holds a complete or partly rendered dataset "
                        "(without it, an interrupted render resumes where it stopped)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name, value in (("--rooms", args.rooms), ("--frames-per-room", args.frames_per_room),
                        ("--height", args.height), ("--width", args.width)):
        if value <= 0:
            print(f"mtshare render: {name} must be positive, got {value}", file=sys.stderr)
            return 2
    if args.height > 960 or args.width > 1280:
        print("mtshare render: --height/--width at most 960x1280", file=sys.stderr)
        return 2
    if not 0.0 <= args.val_fraction <= 1.0:
        print(f"mtshare render: --val-fraction must be in [0, 1], got {args.val_fraction}", file=sys.stderr)
        return 2
    from mtshare_ros.data.synthetic import ensure_synthetic_dataset, write_dataset

    start = time.perf_counter()
    kwargs = dict(num_rooms=args.rooms, frames_per_room=args.frames_per_room, height=args.height, width=args.width,
                  seed=args.seed, val_fraction=args.val_fraction, fps=args.fps, progress=not args.quiet,
                  domain=args.domain, workers=max(1, args.workers))
    if args.force:
        write_dataset(args.out, resume=False, **kwargs)
    else:
        ensure_synthetic_dataset(args.out, **kwargs)
    total = args.rooms * args.frames_per_room
    print(f"dataset at {args.out} ({total} frames, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
