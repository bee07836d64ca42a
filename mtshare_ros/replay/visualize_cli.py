"""``mtshare visualize BAG_OR_DIR``: the montage and the video from any bag that holds this package's results.

The bag may be a replay's output bag (or the replay folder itself), or a bag recorded on the robot with
``ros2 bag record`` of the camera and the node's topics. The results are ``<ns>/segmentation`` (mono8),
``<ns>/depth`` (32FC1) and ``<ns>/normals`` (32FC3), matched to the camera image by header stamp (the node
copies it); ground truth, where the bag has it, adds the error columns. No model is loaded.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

PROG = "mtshare visualize"
NUM_CLASSES = 255  # colours for every id the palette has; no checkpoint needed to draw


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ", 1)[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bag", type=Path, metavar="BAG_OR_DIR", help="bag with result topics, or a `mtshare replay` folder")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for montage.png and replay.mp4 (default: the replay folder, or <bag>_visualize)")
    p.add_argument("--results-namespace", default=None, help="namespace of the result topics (default: found)")
    p.add_argument("--image-topic", help="colour image topic (default: found)")
    p.add_argument("--gt-depth-topic", help="ground-truth depth topic (32FC1 metres or 16UC1 millimetres)")
    p.add_argument("--gt-segmentation-topic", help="ground-truth classes topic (mono8)")
    p.add_argument("--gt-normals-topic", help="ground-truth normals topic (32FC3)")
    p.add_argument("--samples", type=int, default=4, help="frames in the montage")
    p.add_argument("--video-fps", type=float, default=None, help="video frame rate (default: the camera's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from mtshare_ros.replay.cli import _camera_fps
    from mtshare_ros.replay.frames import open_reader, read_frames
    from mtshare_ros.replay.sink import Sink
    from mtshare_ros.replay.topics import BagError, choose_topics, find_results, survey

    replay_dir = args.bag.is_dir() and (args.bag / "results" / "metadata.yaml").is_file()
    bag = args.bag / "results" if replay_dir else args.bag
    out = args.out or (args.bag if replay_dir else args.bag.with_name(f"{args.bag.stem}_visualize"))
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        reader = open_reader(bag)
        try:
            topics_found = survey(reader, bag)
            results = find_results(topics_found, args.results_namespace)
            if not results:
                ns = args.results_namespace or "<ns>"
                raise BagError(f"{bag}: no result topics ({ns}/segmentation mono8, {ns}/depth 32FC1, {ns}/normals "
                               f"32FC3); make them with: mtshare replay {bag} --out DIR")
            namespace = next(iter(results.values())).rsplit("/", 1)[0]
            topics = choose_topics(topics_found, bag, args.image_topic, None,
                                   {"depth": args.gt_depth_topic, "segmentation": args.gt_segmentation_topic,
                                    "normals": args.gt_normals_topic}, exclude_prefix=namespace)
            topics = topics.with_results(results)
            topics.notes.append(f"results: {', '.join(results.values())}")
            for note in topics.notes:
                print(f"  {note}", file=sys.stderr)
            stage.mkdir(parents=True)
            sink = Sink(stage, topics, NUM_CLASSES, args.video_fps or _camera_fps(reader, topics), args.samples)
            bar = tqdm(total=topics.count, desc="visualize", unit="frame", disable=args.quiet, dynamic_ncols=True)
            for frame in read_frames(reader, bag, topics):
                bar.update(1)
                sink.add_recorded(frame, results, "no result")
            bar.close()
        finally:
            reader.close()
        written = sink.close()
        if not written:
            raise BagError(f"{bag}: {topics.image} has no frame that decodes")
        out.mkdir(parents=True, exist_ok=True)
        for path in written.values():
            os.replace(path, out / path.name)
    except BagError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    with_results = sum(r.status == "ok" for r in sink.records)
    print(f"{PROG}: {len(sink.records)} frames, {with_results} with results; "
          + ", ".join(f"{kind} {out / p.name}" for kind, p in written.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
