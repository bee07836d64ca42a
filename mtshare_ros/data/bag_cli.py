"""``mtshare make-bag``: write a rosbag2 camera bag (RGB, camera info, ground-truth depth/classes/normals), or a
Kinect-driver-style bag of real RGB-D frames (``--from-rgbd``)."""

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
                    "rendered dataset (--from-dataset with --sequence). --from-rgbd writes real frames of a "
                    "7-Scenes-layout folder as a Kinect v1 driver records them instead: /camera/rgb/image_raw "
                    "(bgr8), /camera/rgb/camera_info, /camera/depth_registered/image_raw (16UC1 millimetres, 0 "
                    "invalid) and its camera_info.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="bag folder to create")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    p.add_argument("--seed", type=int, default=0, help="room seed of the rendered sequence")
    p.add_argument("--frames", type=int, default=150, help="number of frames to render (or to read: --from-rgbd)")
    p.add_argument("--height", type=int, default=240, help="image height in pixels")
    p.add_argument("--width", type=int, default=320, help="image width in pixels")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate, stamps 1/fps apart (default: 15 rendered, 30 --from-rgbd: Kinect v1)")
    p.add_argument("--from-dataset", type=Path, default=None, help="read frames from this rendered dataset instead")
    p.add_argument("--sequence", default=None, help="sequence name in --from-dataset (default: first val sequence)")
    p.add_argument("--from-rgbd", type=Path, default=None, metavar="DIR",
                   help="real frames of a 7-Scenes-layout folder (frame-%%06d.color.jpg, .depth.png, "
                        "camera-intrinsics.txt) as a Kinect-driver-style bag")
    p.add_argument("--first", type=int, default=0, help="first frame of --from-rgbd")
    p.add_argument("--frame-id", default=None,
                   help="header.frame_id of every message (default: camera_color_optical_frame, "
                        "camera_rgb_optical_frame --from-rgbd)")
    p.add_argument("--no-ground-truth", action="store_true", help="only the camera topics")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.frames <= 0 or args.height <= 0 or args.width <= 0 or (args.fps is not None and args.fps <= 0):
        print("mtshare make-bag: --frames, --height, --width and --fps must be positive", file=sys.stderr)
        return 2
    if args.from_rgbd is not None and args.from_dataset is not None:
        print("mtshare make-bag: --from-rgbd and --from-dataset exclude each other", file=sys.stderr)
        return 2
    if args.out.exists():
        if not args.force:
            print(f"mtshare make-bag: {args.out} exists (use --force to replace it)", file=sys.stderr)
            return 2
        shutil.rmtree(args.out)
    from tqdm import tqdm

    from mtshare_ros.data.bag import KINECT_LAYOUT, PACKAGE_LAYOUT, write_camera_bag
    from mtshare_ros.data.synthetic import list_sequences, load_sequence, render_sequence

    layout = PACKAGE_LAYOUT
    if args.from_rgbd is not None:
        from mtshare_ros.data.rgbd_frames import read_intrinsics, read_rgbd_sequence

        try:
            read_intrinsics(args.from_rgbd)
        except (FileNotFoundError, ValueError) as exc:
            print(f"mtshare make-bag: {exc}", file=sys.stderr)
            return 2
        frames = read_rgbd_sequence(args.from_rgbd, args.first, args.frames, args.fps or 30.0)
        total, layout = args.frames, KINECT_LAYOUT
    elif args.from_dataset is not None:
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
        frames = render_sequence(args.seed, args.frames, args.height, args.width, args.fps or 15.0)
        total = args.frames
    start = time.perf_counter()
    bar = tqdm(frames, total=total, desc="bag", unit="frame", disable=args.quiet)
    try:
        n = write_camera_bag(args.out, bar, storage=args.storage, frame_id=args.frame_id,
                             ground_truth=not args.no_ground_truth, layout=layout)
    except (FileNotFoundError, ValueError) as exc:
        if args.from_rgbd is None:
            raise
        shutil.rmtree(args.out, ignore_errors=True)  # a frame of --from-rgbd missing or unreadable: no half bag
        print(f"mtshare make-bag: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} frames to {args.out} ({args.storage}, {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
