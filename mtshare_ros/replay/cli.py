"""``mtshare replay BAG... --out OUT_DIR``: evaluate the package on recorded bags, offline or live.

Per bag, OUT_DIR (or OUT_DIR/<bag name> for several bags) receives ``report.md``, ``metrics.json``,
``frames.csv``, ``timeline.png``, ``metrics.png``, ``montage.png``, ``replay.mp4`` and the output bag
``results/``; several bags add ``summary.md`` / ``summary.json``. Everything is written into a hidden folder
beside OUT_DIR and moved into place at the end, so an error (one line on stderr, exit 1) or Ctrl-C leaves no
half-written result behind; of several bags, a failed one is listed as failed in the summary and gets no folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

PROG = "mtshare replay"
USAGE_ERROR, RUN_ERROR = 2, 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Replay rosbag2 bags (MCAP or sqlite3) through the perception node's predictor and parameters: "
                    "an output bag with every result topic for RViz / Foxglove, metrics against the bag's ground "
                    "truth (same definitions as `mtshare eval`), latency, compute, plots, a montage and a video. "
                    "The colour camera topic and its camera_info are found automatically (RealSense, ZED, OAK, "
                    "Isaac Sim and `mtshare make-bag` layouts); other topics are ignored.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("bags", nargs="+", type=Path, metavar="BAG",
                   help="rosbag2 folder, .mcap or .db3 file, or a folder of bags (one report each, plus a summary)")
    p.add_argument("--out", type=Path, required=True, help="output folder (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    t = p.add_argument_group("topics (default: found in the bag)")
    t.add_argument("--image-topic", action="append", default=None,
                   help="colour image topic (sensor_msgs/Image or CompressedImage); repeat it for a bag with several "
                   "cameras: each is replayed through its own stream and reported on its own")
    t.add_argument("--camera-info-topic", help="camera_info topic (default: the one beside the image topic)")
    t.add_argument("--gt-depth-topic", help="ground-truth depth: Image 32FC1 metres or 16UC1 millimetres, 0 invalid")
    t.add_argument("--gt-segmentation-topic",
                   help="ground-truth classes: Image mono8, the checkpoint's ids, 255 ignore")
    t.add_argument("--gt-normals-topic", help="ground-truth normals: Image 32FC3, optical frame")
    t.add_argument("--sync-tolerance", type=float, default=0.03,
                   help="seconds between an image's stamp and its ground truth's or camera_info's")
    r = p.add_argument_group("node parameters (as the node reads them)")
    r.add_argument("--params-file", type=Path, help="ROS params file, e.g. config/mtshare.yaml (/**: ros__parameters:)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="set one parameter (ROS name, YAML value), repeatable: --param sharing.threshold=0.1")
    r.add_argument("--backend", choices=("torch", "onnxruntime", "openvino"), default=None,
                   help="inference backend (the node's backend parameter; same as --param backend=...)")
    lv = p.add_argument_group("live mode")
    lv.add_argument("--live", action="store_true",
                    help="publish the bag at its recorded timing into a node process and record what it publishes "
                         "(drops and latency under real timing); default: offline, every frame, as fast as possible")
    lv.add_argument("--rate", type=float, default=1.0, help="playback speed in live mode (1.0 = recorded timing)")
    lv.add_argument("--node-namespace", help="use the node already running in this namespace instead of starting one")
    o = p.add_argument_group("output")
    o.add_argument("--output-storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    o.add_argument("--output-namespace", default="/mtshare", help="namespace of the result topics in the output bag")
    o.add_argument("--samples", type=int, default=4, help="frames in the montage")
    o.add_argument("--video-fps", type=float, default=None, help="video frame rate (default: the camera's)")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def expand_bags(paths: list[Path]) -> list[Path]:
    """The bags named: rosbag2 folders, .mcap / .db3 files, and the bags inside a folder of bags."""
    from mtshare_ros.replay.topics import BagError

    bags: list[Path] = []
    for path in paths:
        if not path.exists():
            raise BagError(f"{path}: no such bag or folder")
        if path.is_file() or (path / "metadata.yaml").is_file():
            bags.append(path)
            continue
        inner = sorted(d for d in path.iterdir() if d.is_dir() and (d / "metadata.yaml").is_file())
        inner += sorted(f for f in path.iterdir() if f.is_file() and f.suffix in (".mcap", ".db3"))
        if not inner:
            raise BagError(f"{path}: not a rosbag2 bag (no metadata.yaml) and holds no bags")
        bags += inner
    return bags


def _names(bags: list[Path]) -> list[str]:
    names: list[str] = []
    for bag in bags:
        base = bag.stem if bag.is_file() else bag.name
        name, k = base, 2
        while name in names:
            name, k = f"{base}_{k}", k + 1
        names.append(name)
    return names


def _camera_folder(topic: str) -> str:
    """A folder name for one camera's results: its image topic without slashes."""
    return topic.strip("/").replace("/", "_") or "camera"


def _camera_fps(reader, topics) -> float:
    """The camera's frame rate from the bag's index (count over duration), for the video."""
    conns = [c for c in reader.connections if c.topic == topics.image]
    duration = reader.duration * 1e-9
    count = sum(c.msgcount for c in conns)
    fps = (count - 1) / duration if duration > 0 and count > 1 else 10.0
    return float(min(max(fps, 1.0), 60.0))


def replay_bag(bag: Path, out: Path, args: argparse.Namespace, values: dict[str, Any], engine: Engine) -> dict:
    """Replay one bag into ``out`` (an empty staging folder); returns what metrics.json holds. The bag is read
    and its topics resolved before the model is needed, so a bag that cannot work fails at once."""
    from mtshare_ros.replay import live, offline, plots, report
    from mtshare_ros.replay.frames import open_reader
    from mtshare_ros.replay.outbag import OutputBag
    from mtshare_ros.replay.sink import Sink
    from mtshare_ros.replay.topics import choose_topics, survey

    reader = open_reader(bag)
    try:
        topics = choose_topics(survey(reader, bag), bag, args.image_topic, args.camera_info_topic,
                               {"depth": args.gt_depth_topic, "segmentation": args.gt_segmentation_topic,
                                "normals": args.gt_normals_topic})
        for note in topics.notes:
            print(f"  {note}", file=sys.stderr)
        fps = args.video_fps or _camera_fps(reader, topics)
        engine.start()
        sink = Sink(out, topics, engine.num_classes, fps, args.samples)
        bag_out = OutputBag(out / "results", args.output_storage, args.output_namespace)
        result: dict[str, Any] = {"bag": str(bag), "mode": "live" if args.live else "offline",
                                  "model": engine.model, "output_namespace": bag_out.namespace,
                                  "output_storage": args.output_storage}
        try:
            if args.live:
                playback = live.play(engine.session, reader, bag, topics, values, bag_out, args.rate,
                                     args.node_namespace, engine.log, not args.quiet, desc=bag.name)
                summary = live.score(playback, bag_out.path, topics, sink, bag_out.namespace, args.sync_tolerance,
                                     not args.quiet)
                result.update(rate=args.rate, node_namespace=playback["namespace"],
                              started_node=playback["started_node"],
                              device=playback["diagnostics"].get("device", "-"))
            else:
                summary = offline.run_offline(reader, bag, topics, engine.predictor, values, sink, bag_out,
                                              args.sync_tolerance, not args.quiet, desc=bag.name)
                result["device"] = str(engine.predictor.device)
        finally:
            bag_out.close()
    finally:
        reader.close()
    files: dict[str, Path] = {"bag": bag_out.path, **sink.close()}
    title = f"{bag.name}: {result['mode']}"
    for key, fn, name in (("timeline", plots.timeline, "timeline.png"), ("metrics_plot", plots.metrics_plot,
                                                                         "metrics.png")):
        made = fn(sink.records, out / name, title)
        if made is not None:
            files[key] = made
    from mtshare_ros.replay.params import changed

    result.update(topics={"image": topics.image, "camera_info": topics.info, "ground_truth": topics.gt,
                          "notes": topics.notes},
                  parameters_changed=changed(values), parameters=values, summary=summary,
                  metrics=sink.evaluation.compute(), files={k: v.name for k, v in files.items()},
                  per_frame=report.frame_rows(sink.records))
    report.write_csv(out / "frames.csv", result["per_frame"])
    report.write_json(out / "metrics.json", result)
    (out / "report.md").write_text(report.markdown(result) + "\n")
    return result


class ModelLoadError(Exception):
    """The checkpoint or device cannot be used: no bag of the run can be replayed."""


class Engine:
    """What every bag of a run shares, made at the first bag that gets that far: the predictor (offline) or
    the ROS session (live), the class count and the model's description."""

    def __init__(self, args: argparse.Namespace, values: dict[str, Any], stage: Path) -> None:
        self.args, self.values, self.log = args, values, stage / "node.log"
        self.predictor = self.session = None
        self.model, self.num_classes = "", 0

    def start(self) -> None:
        if self.model:
            return
        from mtshare_ros.models.checkpoint import CheckpointError
        from mtshare_ros.sharing.loader import describe_checkpoint, load_models

        try:
            if self.args.live:
                self.num_classes = len(load_models(self.values["checkpoint"], shared=False).class_names)
            else:
                from mtshare_ros.runtime.predictor import Predictor

                self.predictor = Predictor(self.values["checkpoint"], self.values["device"], self.values["backend"])
                self.num_classes = len(self.predictor.class_names)
            self.model = describe_checkpoint(self.values["checkpoint"])
        except (CheckpointError, RuntimeError, ValueError) as exc:
            raise ModelLoadError(f"cannot load the model {self.values['checkpoint']!r}: {exc}") from None
        if self.args.live:
            from mtshare_ros.replay.live import LiveSession

            self.session = LiveSession()

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


def _fail(message: str, code: int = RUN_ERROR) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mtshare_ros.replay.params import ParamError, resolve
    from mtshare_ros.replay.topics import BagError

    if args.rate <= 0 or args.sync_tolerance < 0 or args.samples < 1:
        return _fail("--rate must be > 0, --sync-tolerance >= 0 and --samples >= 1", USAGE_ERROR)
    if args.node_namespace and not args.live:
        return _fail("--node-namespace needs --live", USAGE_ERROR)
    if args.node_namespace and (args.params_file or args.param):
        return _fail("--params-file/--param set the parameters of a node that replay starts; the node running in "
                     f"{args.node_namespace} keeps its own (set them there, e.g. with ros2 param set)", USAGE_ERROR)
    topics = args.image_topic or [None]
    if len(topics) != len(set(topics)):
        return _fail(f"--image-topic names a topic twice: {topics}", USAGE_ERROR)
    if len(topics) > 1 and args.camera_info_topic:
        return _fail("--camera-info-topic names one camera's; with several --image-topic each camera's camera_info "
                     "is the one beside its image topic", USAGE_ERROR)
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        return _fail(f"{args.out} exists and is not empty (use --force to replace it)", USAGE_ERROR)
    try:
        backend = [f"backend={args.backend}"] if args.backend else []
        values, warnings = resolve(args.params_file, [*args.param, *backend])
        bags = expand_bags(args.bags)
    except (ParamError, BagError) as exc:
        return _fail(str(exc), USAGE_ERROR)
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    stage = args.out.parent / f".{args.out.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    units = [(bag, name if len(topics) == 1 else f"{name}/{_camera_folder(t)}", t)
             for bag, name in zip(bags, _names(bags), strict=True) for t in topics]
    single = len(units) == 1
    rows: list[dict] = []
    lines: list[str] = []
    engine = Engine(args, values, stage)
    start = time.perf_counter()
    try:
        for bag, name, topic in units:
            out = stage if single else stage / name
            out.mkdir(parents=True, exist_ok=True)
            if not single:
                print(f"{PROG}: {bag}" + (f" {topic}" if topic else ""), file=sys.stderr)
            try:
                result = replay_bag(bag, out, argparse.Namespace(**{**vars(args), "image_topic": topic}), values,
                                    engine)
            except BagError as exc:
                if single:
                    return _fail(str(exc))
                shutil.rmtree(out, ignore_errors=True)
                print(f"{PROG}: {exc}", file=sys.stderr)
                rows.append({"bag": name, "status": "failed", "error": str(exc)})
                continue
            from mtshare_ros.replay.report import summary_line

            lines.append(f"{summary_line(name, result['summary'], result['metrics'])}; report: "
                         f"{(args.out if single else args.out / name) / 'report.md'}")
            rows.append({"bag": name, "status": "ok", "summary": result["summary"], "metrics": result["metrics"],
                         "report": f"{name}/report.md"})
        if not single:
            from mtshare_ros.replay.report import summary_table, write_json

            (stage / "summary.md").write_text(summary_table(rows))
            write_json(stage / "summary.json", {"bags": rows})
        if args.out.exists():
            shutil.rmtree(args.out)
        stage.rename(args.out)
    except ModelLoadError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted; nothing written", 130)
    finally:
        engine.close()
        shutil.rmtree(stage, ignore_errors=True)
    print("\n".join(lines))
    failed = [r for r in rows if r["status"] != "ok"]
    if not single:
        print(f"{PROG}: {len(rows) - len(failed)} of {len(rows)} bags (cameras) replayed in "
              f"{time.perf_counter() - start:.0f} s"
              f"{', ' + str(len(failed)) + ' failed' if failed else ''}; summary: {args.out / 'summary.md'}")
    return RUN_ERROR if failed else 0


if __name__ == "__main__":
    sys.exit(main())
