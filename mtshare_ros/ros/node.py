"""The mtshare perception node: camera frames in, segmentation / depth / normals / points out.

A lifecycle node (configure loads the model, activate subscribes and starts the worker, deactivate
stops and frees GPU memory, cleanup unloads). It serves the cameras of parameter ``cameras`` (default one, with the
node's own topic names). A frame goes callback (``_on_image``) -> latest-frame worker, one slot per camera
(``_process`` takes every camera's waiting frame) -> the frame pipeline (``runtime/pipeline.py``: decode, stream
watch, camera_info, predictor, outputs; frames of one size from several cameras in one pass) -> publish
(``ros/publish.py``). A slow model drops frames instead of building a
backlog. Every output carries the input header unchanged; visualisation outputs are only computed while
someone subscribes. Parameters come from one table (``ros/params.py``) and reach the worker as one
``FrameSettings`` value, taken whole at the next frame. With ``temporal.motion_frame`` set the node also listens to
/tf and /tf_static (``ros/tf_listener.py``) and temporal sharing takes the camera's image motion from its pose
(``runtime/pipeline.py``, ``runtime/tf_motion.py``).
"""

from __future__ import annotations

import os
import sys

if "torch" not in sys.modules:  # the node's own process: OpenMP reads its wait policy once, when torch loads it
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # runtime/cpu.py: spinning threads starve on a shared CPU
OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY", "") if "torch" not in sys.modules else "set before this module"

import argparse  # noqa: E402
import difflib  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import rclpy  # noqa: E402
import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue  # noqa: E402
from rcl_interfaces.msg import SetParametersResult  # noqa: E402
from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from rclpy.time import Time  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from mtshare_ros.ros import params  # noqa: E402
from mtshare_ros.ros.conversions import camera_model, image_to_rgb  # noqa: E402
from mtshare_ros.ros.publish import OutputPublishers  # noqa: E402
from mtshare_ros.ros.resources import use_fastdds_profile  # noqa: E402
from mtshare_ros.ros.tf_listener import TfListener  # noqa: E402
from mtshare_ros.runtime.budget import LatencyBudget  # noqa: E402
from mtshare_ros.runtime.cpu import StarvationWatch, choose_threads  # noqa: E402
from mtshare_ros.runtime.heap import HeapTrimmer, trim_heap  # noqa: E402
from mtshare_ros.runtime.latest_frame import LatestFramesWorker  # noqa: E402
from mtshare_ros.runtime.pipeline import CameraPipeline, Job, infer_together  # noqa: E402
from mtshare_ros.runtime.predictor import Predictor  # noqa: E402
from mtshare_ros.runtime.rates import RollingStats  # noqa: E402
from mtshare_ros.runtime.settings import FrameSettings  # noqa: E402
from mtshare_ros.runtime.stream import stamp_seconds  # noqa: E402
from mtshare_ros.runtime.tf_motion import TransformBuffer  # noqa: E402
from mtshare_ros.sharing.temporal import format_reasons  # noqa: E402

NODE_NAME = "mtshare"
DELAY_FILE_ENV = "MTSHARE_TEST_DELAY_FILE"
"""Test hook (documented, off unless set): a file holding milliseconds the worker sleeps before each inference pass,
read every pass: a real slow frame, to test the latency budget. Nothing reads it when the variable is unset."""
RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


@dataclass
class Frame:
    """A received frame waiting for the worker: the message and when it arrived."""

    msg: Image | CompressedImage
    received: float


def _topic(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


class Camera:
    """One camera of the node: its subscriptions, publishers, pipeline (stream watch, camera_info, temporal cache,
    output buffers), statistics and the last problem it had. Nothing of it is shared with another camera."""

    def __init__(self, name: str, pipeline: CameraPipeline, outputs: OutputPublishers) -> None:
        self.name = name
        self.pipeline = pipeline
        self.outputs = outputs
        self.stats = RollingStats()
        self.subs: list = []
        self.image_topic = _topic(name, "image")
        self.info_topic = _topic(name, "camera_info")
        self.bad_frames = 0
        self.frames_lost = 0
        self.last_error = ""
        self.last_stats: dict[str, float] = {}
        self.heap = HeapTrimmer()  # freed memory back to the OS after this camera's configuration changes
        self.budget = LatencyBudget()
        self.skipped = 0  # frames left out by the budget's frame-rate step


class MtshareNode(LifecycleNode):
    """Lifecycle node around ``runtime.predictor.Predictor``, serving the cameras of parameter ``cameras``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        params.declare(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.settings: FrameSettings = params.frame_settings(self._parameter_values())
        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)
        self.predictor: Predictor | None = None
        self.worker: LatestFramesWorker[Frame] | None = None
        self.cameras: dict[str, Camera] = {}
        self._warned: set[str] = set()
        self._diag_pub = None
        self._diag_timer = None
        self.transforms = TransformBuffer()  # /tf and /tf_static, while temporal.motion_frame is set
        self._tf: TfListener | None = None
        self._threads, self._threads_reason = torch.get_num_threads(), ""
        self.starvation = StarvationWatch(self._threads)
        delay = os.environ.get(DELAY_FILE_ENV)
        self._delay_file = Path(delay) if delay else None

    @property
    def outputs(self) -> OutputPublishers | None:
        """The first camera's publishers (the only camera's, with the default ``cameras``)."""
        return next(iter(self.cameras.values())).outputs if self.cameras else None

    # ----------------------------------------------------------------- parameters
    def _parameter_values(self) -> dict:
        return {p.name: self.get_parameter(p.name).value for p in params.PARAMS}

    def set_parameters_atomically(self, parameter_list) -> SetParametersResult:
        """Refuse an undeclared parameter with the names this node has (rclpy's own refusal names none)."""
        unknown = [p.name for p in parameter_list if not self.has_parameter(p.name)]
        if unknown:
            known = [p.name for p in params.PARAMS]
            close = {n: difflib.get_close_matches(n, known, 1) for n in unknown}
            hint = "; ".join(f"{n!r}: did you mean {c[0]!r}?" for n, c in close.items() if c)
            return SetParametersResult(
                successful=False,
                reason=f"undeclared parameter(s) {unknown}{' (' + hint + ')' if hint else ''}; this node has: "
                f"{', '.join(known)}",
            )
        return super().set_parameters_atomically(parameter_list)

    def _on_set_parameters(self, changed) -> SetParametersResult:
        """Check the new values, alone and together, and hand the worker the settings they make, whole."""
        for p in changed:
            reason = params.check(p.name, p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        settings = params.frame_settings({**self._parameter_values(), **{p.name: p.value for p in changed}})
        reason = params.check_settings(settings) or (self.predictor.check(settings) if self.predictor else "")
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        self.settings = settings  # one reference swap: the worker reads it once per frame
        for p in changed:
            if p.name == "temporal.max_stamp_gap":
                for cam in self.cameras.values():
                    cam.pipeline.stream.max_gap = p.value
        return SetParametersResult(successful=True)

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset``: the next frame of every camera is a keyframe (taken by the worker between frames)."""
        for cam in self.cameras.values():
            cam.pipeline.request_reset()
        response.success = True
        response.message = "temporal cache reset: the next frame is a keyframe"
        return response

    def _qos(self, kind: str) -> QoSProfile:
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=self.get_parameter(f"qos.{kind}_depth").value,
            reliability=RELIABILITY[self.get_parameter(f"qos.{kind}_reliability").value],
        )

    # ----------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        names = list(self.get_parameter("cameras").value)
        try:
            reason = params.check_cameras(names)
            if reason:
                raise ValueError(reason)
            self._threads, self._threads_reason = choose_threads(self.get_parameter("threads").value)
            torch.set_num_threads(self._threads)
            self.starvation = StarvationWatch(self._threads)
            self.predictor = Predictor(self.get_parameter("checkpoint").value, self.get_parameter("device").value,
                                       self.get_parameter("backend").value)
            reason = self.predictor.check(self.settings)
            if reason:
                raise ValueError(reason)
            self.predictor.prepare(self.settings)
        except Exception as exc:  # bad cameras, checkpoint, device, tasks: stay unconfigured and say why
            self.get_logger().error(f"configure failed: {exc}")
            self.predictor = None
            return TransitionCallbackReturn.FAILURE
        gap = self.get_parameter("temporal.max_stamp_gap").value
        qos = self._qos("output")
        transforms = self.transforms if self.settings.motion_frame else None
        self.cameras = {n: Camera(n, CameraPipeline(self.predictor, n, gap, self._warn_once, transforms),
                                  OutputPublishers(self, qos, n)) for n in names}
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        loaded = self.predictor.loaded
        self.get_logger().info(
            f"configured: device {self.predictor.device}, tasks {list(self.settings.tasks)}, "
            f"input {loaded.cfg.img_size}, provenance {loaded.meta.get('provenance', {}).get('command', 'n/a')}, "
            f"sharing: {loaded.sharing_source}, {self._threads_reason}, OMP_WAIT_POLICY={OMP_WAIT_POLICY or 'unset'}"
            + (f", cameras {names}" if names != [""] else "")
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.predictor is not None
        self.predictor.restore()
        self.worker = LatestFramesWorker(self._process, self._on_frame_error)
        self.worker.start()
        qos = self._qos("input")
        compressed = self.get_parameter("input_transport").value == "compressed"
        for cam in self.cameras.values():
            events = SubscriptionEventCallbacks(message_lost=lambda info, c=cam: self._on_frames_lost(c, info))
            on_image = lambda msg, c=cam: self._on_image(c, msg)  # noqa: E731
            if compressed:
                sub = self.create_subscription(CompressedImage, _topic(cam.name, "image/compressed"), on_image, qos,
                                               event_callbacks=events)
            else:
                sub = self.create_subscription(Image, _topic(cam.name, "image"), on_image, qos,
                                               event_callbacks=events)
            info = self.create_subscription(CameraInfo, _topic(cam.name, "camera_info"),
                                            lambda msg, c=cam: self._on_camera_info(c, msg), qos)
            cam.subs = [sub, info]
            cam.image_topic, cam.info_topic = sub.topic_name, info.topic_name
        self._diag_timer = self.create_timer(self.get_parameter("diagnostics_period").value, self._publish_diagnostics)
        if self.settings.motion_frame:
            try:
                self._tf = TfListener(self, self.transforms, self._warn_once)
            except ImportError as exc:  # a pip environment without scripts/build_tf2_msgs.py's package
                self._warn_once(f"temporal.motion_frame {self.settings.motion_frame!r} is set but /tf cannot be "
                                f"read ({exc}; scripts/build_tf2_msgs.py builds tf2_msgs): the image motion "
                                "estimate is used", "tf2_msgs missing")
        self.get_logger().info(f"active: listening on {', '.join(c.image_topic for c in self.cameras.values())}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for cam in self.cameras.values():
            for sub in cam.subs:
                self.destroy_subscription(sub)
            cam.subs = []
        if self._tf is not None:
            self._tf.destroy()
            self._tf = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self.worker is not None:
            self.worker.stop()
        if self.predictor is not None:
            self.predictor.release()
        for cam in self.cameras.values():
            cam.pipeline.buffers.release()
        trim_heap()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for cam in self.cameras.values():
            cam.outputs.destroy()
        if self._diag_pub is not None:
            self.destroy_lifecycle_publisher(self._diag_pub)
        self.cameras, self._diag_pub, self.predictor = {}, None, None
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.worker is not None:
            self.worker.stop()
        return TransitionCallbackReturn.SUCCESS

    # ----------------------------------------------------------------- a frame, callback to publish
    def _on_camera_info(self, cam: Camera, msg: CameraInfo) -> None:
        """Keep the latest usable camera model; a bad one is dropped (points and scaled_camera_info stop until a
        good one arrives) with one warning per cause."""
        cam.pipeline.set_camera(camera_model(msg), cam.info_topic)

    def _warn_once(self, text: str, cause: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            self.get_logger().warning(text)

    def _on_frames_lost(self, cam: Camera, info) -> None:
        """DDS reports frames that never arrived: most often frames larger than the transport can carry."""
        cam.frames_lost = int(info.total_count)
        self._warn_once(
            f"frames on {cam.image_topic} are lost in transport ({info.total_count} so far): a frame larger "
            "than the Fast DDS shared-memory segment cannot be received; raise segment_size in the profile "
            "FASTDDS_DEFAULT_PROFILES_FILE names (config/fastdds_shm.xml: 128 MiB, frames up to ~60 MiB)",
            f"lost {cam.name}")

    def _on_image(self, cam: Camera, msg: Image | CompressedImage) -> None:
        if self.worker is not None:
            self.worker.submit(cam.name, Frame(msg, time.monotonic()))

    def _process(self, batch: dict[str, Frame]) -> list[str]:
        """Worker thread: every camera's waiting frame, decoded, checked, inferred together (``runtime/pipeline``),
        published per camera. Bad frames are reported against their own topic, never published; returns the
        cameras whose frame failed."""
        assert self.predictor is not None
        settings = self.settings  # this batch's settings, whole
        budget_ms = self.get_parameter("latency_budget_ms").value
        jobs, started, failed, job_settings = [], {}, [], []
        for name, frame in batch.items():
            cam = self.cameras[name]
            if budget_ms > 0 and not cam.budget.take():  # the budget's frame-rate step
                cam.skipped += 1
                continue
            t0 = time.perf_counter()
            rgb, error = cam.pipeline.decode(lambda m=frame.msg: image_to_rgb(m))
            if rgb is None:
                cam.bad_frames += 1
                cam.last_error = error
                self.get_logger().warning(f"skipping frame on {cam.image_topic}: {error}", throttle_duration_sec=5.0)
                continue
            header = frame.msg.header
            why = cam.pipeline.observe(stamp_seconds(header.stamp), header.frame_id, rgb.shape[:2])
            if why and settings.temporal.enabled:
                self.get_logger().info(f"new stream ({why}): keyframe (frame on {cam.image_topic})")
            cam.pipeline.check_size(rgb.shape[:2], cam.image_topic)
            jobs.append(Job(cam.pipeline, rgb, cam.budget.wanted(cam.outputs.wanted()), cam.pipeline.camera))
            job_settings.append(cam.budget.settings(settings))
            started[name] = (t0, time.perf_counter())
        self._injected_delay()
        self.get_logger().debug(f"pass of {len(jobs)} frame(s) from {sorted(batch)}")
        self.starvation.begin()
        results = self._infer(jobs, job_settings)
        self.starvation.end()
        for job, result, frame_settings in zip(jobs, results, job_settings, strict=True):
            cam = self.cameras[job.pipeline.name]
            if result is None:
                failed.append(cam.name)
                continue
            latency = self._publish(cam, batch[cam.name], result, started[cam.name], frame_settings, job.wanted)
            if latency is not None:
                cam.budget.observe(latency, budget_ms)
        return failed

    def _infer(self, jobs: list[Job], job_settings: list[FrameSettings]) -> list:
        """Each group of jobs with one settings value through ``infer_together``; a group that fails runs frame by
        frame, so that a failure is its own camera's (None in its place)."""
        results: list = [None] * len(jobs)
        groups: list[tuple[FrameSettings, list[int]]] = []
        for i, st in enumerate(job_settings):
            for gs, idx in groups:
                if gs == st:
                    idx.append(i)
                    break
            else:
                groups.append((st, [i]))
        for st, idx in groups:
            try:
                for i, r in zip(idx, infer_together([jobs[i] for i in idx], st), strict=True):
                    results[i] = r
            except Exception as exc:  # reported, then each frame alone: a failure that is one camera's stays its own
                self.get_logger().warning(f"a pass of {len(idx)} frames failed ({type(exc).__name__}: {exc}); "
                                          "running them one by one", throttle_duration_sec=5.0)
                for i in idx:
                    try:
                        results[i] = jobs[i].pipeline.infer(jobs[i].rgb, st, jobs[i].wanted, jobs[i].camera)
                    except Exception as exc:
                        self._on_frame_error(jobs[i].pipeline.name, exc)
        return results

    def _injected_delay(self) -> None:
        """The test hook of ``DELAY_FILE_ENV``: sleep what the file says (a slow frame), when it is set."""
        if self._delay_file is None:
            return
        try:
            ms = float(self._delay_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return
        if ms > 0:
            time.sleep(ms / 1e3)

    def _publish(self, cam: Camera, frame: Frame, result, times: tuple[float, float], settings: FrameSettings,
                 wanted) -> float | None:
        """Publish one camera's outputs and record its timings; returns the frame's latency (ms), None when it
        had no outputs."""
        if result.status == "out_of_memory":
            self._out_of_memory(cam, result.error)
            return None
        t0, t1 = times
        t2 = time.perf_counter()
        pred = result.prediction
        cam.last_stats = pred.stats
        messages = cam.outputs.to_messages(result.outputs, frame.msg.header)
        t3 = time.perf_counter()
        cam.outputs.publish(messages)
        t4 = time.perf_counter()
        stamp_age = (self.get_clock().now() - Time.from_msg(frame.msg.header.stamp)).nanoseconds * 1e-6
        inference = result.timings_ms.get("inference", 0.0) + result.timings_ms.get("outputs", 0.0)
        cam.stats.add(
            decode=(t1 - t0) * 1e3,
            inference=inference,
            convert=(t3 - t2) * 1e3,
            publish=(t4 - t3) * 1e3,
            ros_overhead=((t1 - t0) + (t4 - t2)) * 1e3,
            latency=stamp_age,
            queue=(time.monotonic() - frame.received) * 1e3 - (t4 - t0) * 1e3,
        )
        cam.stats.add_value(keyframe=pred.stats.get("keyframe", 1.0))
        cam.heap.after_frame((result.rgb.shape, pred.size, settings, frozenset(wanted)))
        return stamp_age

    def _out_of_memory(self, cam: Camera, error: str) -> None:
        """A frame the device had no memory for: skipped (counted as rejected), and everything kept between
        frames released (the step that failed released its own part already), so the next frame may fit."""
        for other in self.cameras.values():
            other.pipeline.buffers.release()
        self.predictor.release_caches()
        cam.bad_frames += 1
        cam.last_error = error
        self.get_logger().warning(f"frame skipped, caches released: {error} (frame on {cam.image_topic})",
                                  throttle_duration_sec=5.0)

    def _on_frame_error(self, name: str, exc: BaseException) -> None:
        """A frame that failed: the cause in one line through the node's logger (throttled), the traceback at
        debug level; the worker goes on with the next frame."""
        cam = self.cameras.get(name)
        if cam is not None:
            cam.last_error = f"{type(exc).__name__}: {exc}"
        where = f" on {cam.image_topic}" if cam is not None and len(self.cameras) > 1 else ""
        self.get_logger().error(f"frame failed{where}: {type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
        self.get_logger().debug("".join(traceback.format_exception(exc)))

    def _camera_status(self, cam: Camera) -> DiagnosticStatus:
        c, s = self.worker.count(cam.name), cam.stats
        values = {
            "fps": f"{s.fps():.2f}",
            "frames_received": str(c.submitted),
            "frames_processed": str(c.processed),
            "frames_dropped": str(c.dropped),
            "frames_rejected": str(cam.bad_frames),
            "frames_failed": str(c.failed),
            "frames_lost_in_transport": str(cam.frames_lost),
            "tasks": ",".join(self.settings.tasks),
            "device": str(self.predictor.device) if self.predictor else "",
        }
        if cam.name:
            values["camera"], values["image_topic"] = cam.name, cam.image_topic
        budget_ms = self.get_parameter("latency_budget_ms").value
        if budget_ms > 0 or cam.budget.level:
            st = cam.budget.settings(self.settings)
            values["latency_budget_ms"] = f"{budget_ms:.1f}"
            values["budget_level"] = str(cam.budget.level)
            values["budget_state"] = cam.budget.describe_level()
            values["budget_last_change"] = cam.budget.reason
            values["budget_sharing_max_token_fraction"] = f"{st.sharing.max_token_fraction:.3f}"
            values["budget_temporal_max_token_fraction"] = f"{st.temporal.max_token_fraction:.3f}"
            values["frames_skipped_by_budget"] = str(cam.skipped)
        values["threads"] = str(self._threads)
        values["threads_choice"] = self._threads_reason
        values["omp_wait_policy"] = OMP_WAIT_POLICY or "unset"
        values["cpu_share"] = f"{self.starvation.share():.2f}"
        values["starved"] = str(self.starvation.starved()).lower()
        values.update({k: f"{v:.3f}" for k, v in cam.last_stats.items()})
        if self.settings.temporal.enabled:
            cache = cam.pipeline.cache
            values["keyframe_rate"] = f"{s.mean('keyframe'):.3f}"
            values["temporal_keyframes"], values["temporal_frames"] = str(cache.keyframes), str(cache.frames)
            values["keyframe_reasons"] = format_reasons(cache.keyframe_reasons)  # e.g. "scene_cut=12 interval=3"
            values["last_keyframe_reason"] = cache.keyframe_reason
            values["motion_source"] = cam.pipeline.motion_source  # tf, image or off: the last frame's
            if cam.pipeline.motion_problem:
                values["motion_tf_problem"] = cam.pipeline.motion_problem
        for name in s.names():
            values[f"{name}_ms_p50"] = f"{s.percentile(name, 50):.2f}"
            values[f"{name}_ms_p95"] = f"{s.percentile(name, 95):.2f}"
        level = DiagnosticStatus.OK
        message = "running"
        if cam.bad_frames and cam.last_error:
            level, message = DiagnosticStatus.WARN, f"rejected frames; last: {cam.last_error}"
        elif self.starvation.starved():
            level, message = DiagnosticStatus.WARN, (
                f"inference starved: the process got {self.starvation.share():.0%} of the CPU its "
                f"{self._threads} thread(s) could use (other processes hold the cores)")
        elif cam.budget.level:
            level, message = DiagnosticStatus.WARN, f"latency budget: {cam.budget.reason}"
        suffix = f" {cam.name}" if cam.name else ""
        return DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: inference{suffix}",
            message=message,
            hardware_id=values["device"],
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None or self.worker is None:
            return
        arr = DiagnosticArray(status=[self._camera_status(cam) for cam in self.cameras.values()])
        arr.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(arr)


def main(argv: list[str] | None = None) -> int:
    """``mtshare node`` / ``mtshare_node``: run the node; ROS arguments (--ros-args ...) pass through."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    parser = argparse.ArgumentParser(
        prog="mtshare node",
        description="Run the mtshare perception node. Topics and parameters are remapped/set with "
        "--ros-args (e.g. --ros-args -r image:=/camera/image_raw --params-file config/mtshare.yaml).",
    )
    parser.add_argument(
        "--no-autostart", action="store_true", help="stay unconfigured; drive it with lifecycle services"
    )
    args = parser.parse_args(argv)
    use_fastdds_profile()
    # rclpy's own SIGINT handler shuts the context down at once, under a worker that may be publishing; here a
    # signal only asks the loop to stop, and the worker stops before the context goes
    rclpy.init(args=["mtshare"] + ros_args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = MtshareNode()
    autostart = node.get_parameter("autostart").value and not args.no_autostart
    if autostart:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().error("configure failed; node stays unconfigured (fix parameters, then configure)")
        else:
            node.trigger_activate()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        if node.worker is not None:
            node.worker.stop()  # the frame in progress finishes while its publishers are still valid
        executor.remove_node(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
