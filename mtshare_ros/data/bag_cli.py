"""``mtshare make-bag``: write a rosbag2 camera bag (RGB, camera info, ground-truth depth/classes/normals)."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mtshare make-bag",
        description="Write a rosbag2 (MCAP by default) with /camera/image_raw (rgb8), /camera/camera_info and "
                    "ground truth on /camera/depth/image_raw (32FC1, metres, NaN invalid), /gt/segmentation "
                    "(mono8 class ids, 255 ignore) and /gt/normals (32FC3, optical frame). Frames come from a "
                    "freshly rendered synthetic sequence (--seed, --frames, ...) or from a stored sequence of a "
                    "rendered dataset (--from-dataset with --sequence).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="bag folder to create")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    p.add_argument("--seed", type=int, default=0, help="room seed of the rendered sequence")
    p.add_argument("--frames", type=int, default=150, help="number of frames to render")
    p.add_argument("--height", type=int, default=240, help="image height in pixels")
    p.add_argument("--width", type=int, default=320, help="image width in pixels")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate (stamps are 1/fps apart)")
    p.add_argument("--from-dataset", type=Path, default=None, help="read frames from this rendered dataset instead")
    p.add_argument("--sequence", default=None, help="sequence name in --from-dataset (default: first val sequence)")
    p.add_argument("--frame-id", default="camera_color_optical_frame", help="header.frame_id of every message")
    p.add_argument("--no-ground-truth", action="store_true", help="only the camera topics")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames <= 0 or args.height <= 0 or args.width <= 0:
        print("mtshare make-bag: --frames, --height and --width must be positive", file=sys.stderr)
        return 2
    if args.out.exists():
        if not args.force:
            print(f"mtshare make-bag: {args.out} exists (use --force to replace it)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    from tqdm import tqdm

    from mtshare_ros.data.bag import write_camera_bag
    from mtshare_ros.data.synthetic import list_sequences, load_sequence, render_sequence

    if args.from_dataset is not None:
        names = list_sequences(args.from_dataset)
        if not names:
            print(f"mtshare make-bag: {args.from_dataset} has no sequences/*/cameras.json", file=sys.stderr)
            return 2
        seq = args.sequence or (list_sequences(args.from_dataset, "val") or names)[0]
        if seq not in names:
            print(f"mtshare make-bag: sequence {seq!r} not in {args.from_dataset} (have {names[:5]}...)",
                  file=sys.stderr)
            return 2
        frames = load_sequence(args.from_dataset, seq)
        total = None
    else:
        frames = render_sequence(args.seed, args.frames, args.height, args.width, args.fps)
        total = args.frames
    start = time.perf_counter()
    bar = tqdm(frames, total=total, desc="bag", unit="frame", disable=args.quiet)
    n = write_camera_bag(args.out, bar, storage=args.storage, frame_id=args.frame_id,
                         ground_truth=not args.no_ground_truth)
    print(f"wrote {n} frames to {args.out} ({args.storage}, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
