"""Offline replay: every frame of the bag, in order, as fast as the machine allows, through what the node runs.

Per frame the node's frame pipeline (``runtime/pipeline.py``) without ROS transport: decode, stream-break check (a
stamp going back, a gap, another frame_id or size resets temporal sharing, as in the node), ``Predictor.predict``
with the ``FrameSettings`` of the node's parameters, the outputs with every output wanted, the node's messages
(``ros/publish.py``) into the output bag. Latency is what the worker spends
before publishing (decode + inference + outputs); frames that do not decode are rejected and counted, as the
node does. With ``temporal.motion_frame`` set the bag's /tf and /tf_static go into a TF buffer as they are read
(up to the frame reader's lookahead past each frame, as a live node would have them), and temporal sharing takes
the image motion from the camera's pose as the node does; ``compute.motion_tf_fraction`` says for how many
frames it could.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm

from mtshare_ros.data.bag import _typestore
from mtshare_ros.replay import params as replay_params
from mtshare_ros.replay.evaluation import summarize
from mtshare_ros.replay.frames import read_frames
from mtshare_ros.replay.outbag import OutputBag
from mtshare_ros.replay.sink import Sink
from mtshare_ros.replay.topics import BagError, Topics
from mtshare_ros.runtime.tf_motion import TransformBuffer

TF_TOPICS = ("/tf", "/tf_static")


def _header(frame):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=frame.stamp_ns // 10**9, nanosec=frame.stamp_ns % 10**9), frame_id=frame.frame_id)


def _camera(info):
    """The frame's camera model when its camera_info can project the outputs (as the node checks it)."""
    from mtshare_ros.ros.conversions import camera_model
    from mtshare_ros.runtime.camera import camera_problem

    if info is None:
        return None
    camera = camera_model(info)
    return None if camera_problem(camera) else camera


class DenseCost:
    """GMACs of the independent models at an inference size, counted once per size: what a frame costs when the
    engine does not run (sharing and temporal off) and so reports no count of its own."""

    def __init__(self, predictor) -> None:
        self.predictor, self._cache = predictor, {}

    def __call__(self, tasks: tuple[str, ...], size: tuple[int, int]) -> float:
        from mtshare_ros.training.model_stats import count_gmacs

        key = (tasks, tuple(size))
        if key not in self._cache:
            self._cache[key] = sum(count_gmacs(self.predictor.models[t], size) for t in tasks)
        return self._cache[key]


def run_offline(reader, path, topics: Topics, predictor, values: dict[str, Any], sink: Sink, bag_out: OutputBag,
                tolerance: float = 0.03, progress: bool = True, desc: str = "replay") -> dict:
    """Replay every frame; returns the run's summary (``evaluation.summarize``) with the stream breaks seen."""
    from mtshare_ros.ros.publish import OutputPublishers
    from mtshare_ros.runtime.outputs import output_names
    from mtshare_ros.runtime.pipeline import CameraPipeline

    settings = replay_params.settings(values)
    reason = predictor.check(settings)
    if reason:
        raise BagError(f"parameters: {reason}")
    predictor.prepare(settings)  # an exported backend's graph: not in the first frame's time
    warned: set[str] = set()

    def warn(text: str, cause: str) -> None:  # once per cause, as the node's logger says it
        if cause not in warned:
            warned.add(cause)
            tqdm.write(f"warning: {text}", file=sys.stderr)

    transforms = TransformBuffer() if settings.motion_frame else None
    pipeline = CameraPipeline(predictor, max_stamp_gap=float(values["temporal.max_stamp_gap"]), warn=warn,
                              transforms=transforms)
    ts = _typestore()

    def on_message(conn, log_ns: int, raw: bytes) -> None:
        bag_out.copy(conn, log_ns, raw)
        if transforms is not None and conn.topic in TF_TOPICS:
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:
                raise BagError(f"{path}: message on {conn.topic} at {log_ns} ns does not deserialize as "
                               f"{conn.msgtype} ({exc})") from None
            for link, why in transforms.add_message(msg, conn.topic == "/tf_static"):
                warn(f"{conn.topic}: transform {link} dropped: {why}", f"{conn.topic} {link}")

    dense_cost = DenseCost(predictor)
    wanted = set(output_names())
    breaks, first_error = [], ""
    bar = tqdm(total=topics.count, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True)
    start = time.perf_counter()
    extra = TF_TOPICS if transforms is not None else ()
    for frame in read_frames(reader, path, topics, tolerance, on_message=on_message, extra=extra):
        t0 = time.perf_counter()
        # the node's frame path, without ROS transport; the outputs' buffers are reused: each frame's arrays are
        # written out and scored before the next
        result = pipeline.process(frame.rgb, frame.stamp_ns * 1e-9, frame.frame_id, settings, wanted,
                                  camera=_camera(frame.info))
        if result.status == "rejected":
            first_error = first_error or f"frame {frame.index}: {result.error}"
            sink.add(frame, None, {}, status="rejected", note=result.error)
            bar.update(1)
            continue
        if result.status != "ok":
            raise BagError(f"frame {frame.index}: {result.error}")
        if result.stream_break:
            breaks.append(f"frame {frame.index}: {result.stream_break}")
        pred, outputs, rgb = result.prediction, result.outputs, result.rgb
        latency = (time.perf_counter() - t0) * 1e3
        bag_out.write_messages(OutputPublishers.to_messages(outputs, _header(frame)), frame.log_ns)
        stats = dict(pred.stats)
        if "gmacs_executed" not in stats:
            stats["gmacs_executed"] = stats["gmacs_independent"] = dense_cost(settings.tasks, pred.size)
        stats.update({f"{k}_ms": v for k, v in pred.timings_ms.items()})
        if transforms is not None:
            stats["motion_tf"] = float(pipeline.motion_source == "tf")
        sink.add(frame, rgb, outputs, "ok", latency, stats)
        bar.update(1)
        bar.set_postfix_str(f"{latency:.0f} ms/frame", refresh=False)
    bar.close()
    wall = time.perf_counter() - start
    if not sink.records:
        raise BagError(f"{path}: {topics.image} has no messages to replay")
    if not any(r.status == "ok" for r in sink.records):
        raise BagError(f"{path}: no frame of {topics.image} decodes ({first_error})")
    summary = summarize(sink.records, wall)
    summary["stream_breaks"] = breaks
    if summary.get("compute", {}).get("temporal"):
        summary["compute"]["keyframe_reasons"] = dict(pipeline.cache.keyframe_reasons)
    if first_error:
        summary["first_rejection"] = first_error
    return summary
