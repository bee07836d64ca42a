"""The mtshare perception node: camera frames in, segmentation / depth / normals / points out.

A lifecycle node (configure loads the model, activate subscribes and starts the worker, deactivate
stops and frees GPU memory, cleanup unloads). A frame goes callback (``_on_image``) -> latest-frame worker
(``_process``) -> decode (``runtime/decode.py``) -> predictor (``runtime/predictor.py``) -> outputs
(``runtime/outputs.py``) -> publish (``ros/publish.py``). A slow model drops frames instead of building a
backlog. Every output carries the input header unchanged; visualisation outputs are only computed while
someone subscribes. Parameters come from one table (``ros/params.py``) and reach the worker as one
``FrameSettings`` value, taken whole at the next frame.
"""

from __future__ import annotations

import argparse
import difflib
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import Trigger

from mtshare_ros.ros import params
from mtshare_ros.ros.conversions import camera_model, image_to_rgb
from mtshare_ros.ros.publish import OutputPublishers
from mtshare_ros.ros.resources import use_fastdds_profile
from mtshare_ros.runtime.buffers import OutputBuffers
from mtshare_ros.runtime.camera import CameraModel, camera_problem, focal_of
from mtshare_ros.runtime.decode import FrameError
from mtshare_ros.runtime.heap import HeapTrimmer, trim_heap
from mtshare_ros.runtime.latest_frame import LatestFrameWorker
from mtshare_ros.runtime.outputs import assemble_outputs
from mtshare_ros.runtime.predictor import OutOfMemory, Predictor
from mtshare_ros.runtime.rates import RollingStats
from mtshare_ros.runtime.settings import FrameSettings
from mtshare_ros.runtime.stream import StreamWatch

NODE_NAME = "mtshare"
RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


@dataclass
class Frame:
    """A received frame waiting for the worker: the message and when it arrived."""

    msg: Image | CompressedImage
    received: float


class MtshareNode(LifecycleNode):
    """Lifecycle node around ``runtime.predictor.Predictor``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        params.declare(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.settings: FrameSettings = params.frame_settings(self._parameter_values())
        self.stream = StreamWatch(self.get_parameter("temporal.max_stamp_gap").value)
        self._reset_requested = False
        self._reset_srv = self.create_service(Trigger, "~/reset", self._on_reset)
        self.predictor: Predictor | None = None
        self.worker: LatestFrameWorker[Frame] | None = None
        self.stats = RollingStats()
        self.bad_frames = 0
        self.frames_lost = 0
        self._last_error = ""
        self._last_stats: dict[str, float] = {}
        self._camera: CameraModel | None = None
        self._warned: set[str] = set()
        self._camera_lock = threading.Lock()
        self.outputs: OutputPublishers | None = None
        self._buffers = OutputBuffers()  # the outputs' memory, reused frame after frame by the worker
        self._heap = HeapTrimmer()  # freed memory back to the OS: resident memory stays flat
        self._subs: list = []
        self._diag_pub = None
        self._diag_timer = None

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
                self.stream.max_gap = p.value
        return SetParametersResult(successful=True)

    def _on_reset(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset``: the next frame is a keyframe (taken by the worker between frames)."""
        self._reset_requested = True
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
        try:
            self.predictor = Predictor(self.get_parameter("checkpoint").value, self.get_parameter("device").value)
            reason = self.predictor.check(self.settings)
            if reason:
                raise ValueError(reason)
        except Exception as exc:  # bad checkpoint, device, tasks: stay unconfigured and say why
            self.get_logger().error(f"configure failed: {exc}")
            self.predictor = None
            return TransitionCallbackReturn.FAILURE
        self.outputs = OutputPublishers(self, self._qos("output"))
        self._diag_pub = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        loaded = self.predictor.loaded
        self.get_logger().info(
            f"configured: device {self.predictor.device}, tasks {list(self.settings.tasks)}, "
            f"input {loaded.cfg.img_size}, provenance {loaded.meta.get('provenance', {}).get('command', 'n/a')}, "
            f"sharing: {loaded.sharing_source}"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        assert self.predictor is not None
        self.predictor.restore()
        self.worker = LatestFrameWorker(self._process, self._on_frame_error)
        self.worker.start()
        qos = self._qos("input")
        events = SubscriptionEventCallbacks(message_lost=self._on_frames_lost)
        if self.get_parameter("input_transport").value == "compressed":
            self._subs.append(self.create_subscription(CompressedImage, "image/compressed", self._on_image, qos,
                                                       event_callbacks=events))
        else:
            self._subs.append(self.create_subscription(Image, "image", self._on_image, qos, event_callbacks=events))
        self._subs.append(self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos))
        self._diag_timer = self.create_timer(self.get_parameter("diagnostics_period").value, self._publish_diagnostics)
        self.get_logger().info(f"active: listening on {self._subs[0].topic_name}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self.worker is not None:
            self.worker.stop()
        if self.predictor is not None:
            self.predictor.release()
        self._buffers.release()
        trim_heap()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.outputs is not None:
            self.outputs.destroy()
        if self._diag_pub is not None:
            self.destroy_lifecycle_publisher(self._diag_pub)
        self.outputs, self._diag_pub, self.predictor = None, None, None
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.worker is not None:
            self.worker.stop()
        return TransitionCallbackReturn.SUCCESS

    # ----------------------------------------------------------------- a frame, callback to publish
    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the latest usable camera model; a bad one is dropped (points and scaled_camera_info stop until a
        good one arrives) with one warning per cause."""
        camera = camera_model(msg)
        problem = camera_problem(camera)
        if problem:
            self._warn_once(f"camera_info on {self._subs[-1].topic_name}: {problem}; points and scaled_camera_info "
                            "are not published until a valid one arrives", problem.split(" ")[0])
            camera = None
        with self._camera_lock:
            self._camera = camera

    def _warn_once(self, text: str, cause: str) -> None:
        if cause not in self._warned:
            self._warned.add(cause)
            self.get_logger().warning(text)

    def _on_frames_lost(self, info) -> None:
        """DDS reports frames that never arrived: most often frames larger than the transport can carry."""
        self.frames_lost = int(info.total_count)
        self._warn_once(
            f"frames on {self._subs[0].topic_name} are lost in transport ({info.total_count} so far): a frame larger "
            "than the Fast DDS shared-memory segment cannot be received; raise segment_size in the profile "
            "FASTDDS_DEFAULT_PROFILES_FILE names (config/fastdds_shm.xml: 128 MiB, frames up to ~60 MiB)", "lost")

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if self.worker is not None:
            self.worker.submit(Frame(msg, time.monotonic()))

    def _process(self, frame: Frame) -> None:
        """Worker thread: decode, infer, assemble the outputs, publish. Bad frames are reported, never published."""
        assert self.predictor is not None and self.outputs is not None
        settings = self.settings  # this frame's settings, whole
        msg = frame.msg
        t0 = time.perf_counter()
        try:
            rgb = image_to_rgb(msg)
        except FrameError as exc:
            self.bad_frames += 1
            self._last_error = str(exc)
            self.get_logger().warning(f"skipping frame: {exc}", throttle_duration_sec=5.0)
            return
        self._check_stream(msg.header, rgb.shape[:2])
        t1 = time.perf_counter()
        with self._camera_lock:
            camera = self._camera
        if camera is not None and camera.width and (camera.height, camera.width) != rgb.shape[:2]:
            self._warn_once(f"camera_info describes {camera.width}x{camera.height} images but frames on "
                            f"{self._subs[0].topic_name} are {rgb.shape[1]}x{rgb.shape[0]}: intrinsics are "
                            "rescaled by the camera_info's own size", f"size {camera.width}x{camera.height}")
        full = rgb if settings.output_size == "input" else None
        wanted = self.outputs.wanted()
        try:  # every step that allocates on the device: inference, then colours and points
            pred = self.predictor.predict(rgb, settings, focal_of(camera, rgb.shape[1]))
            t2 = time.perf_counter()
            outputs = assemble_outputs(pred, len(self.predictor.class_names), wanted, camera, full,
                                       self._buffers)  # turned into messages (copies) before the next frame
        except OutOfMemory as exc:
            self._out_of_memory(exc)
            return
        self._last_stats = pred.stats
        messages = self.outputs.to_messages(outputs, msg.header)
        t3 = time.perf_counter()
        self.outputs.publish(messages)
        t4 = time.perf_counter()
        stamp_age = (self.get_clock().now() - Time.from_msg(msg.header.stamp)).nanoseconds * 1e-6
        self.stats.add(
            decode=(t1 - t0) * 1e3,
            inference=(t2 - t1) * 1e3,
            convert=(t3 - t2) * 1e3,
            publish=(t4 - t3) * 1e3,
            ros_overhead=((t1 - t0) + (t4 - t2)) * 1e3,
            latency=stamp_age,
            queue=(time.monotonic() - frame.received) * 1e3 - (t4 - t0) * 1e3,
        )
        self.stats.add_value(keyframe=pred.stats.get("keyframe", 1.0))
        self._heap.after_frame((rgb.shape, pred.size, settings, frozenset(wanted)))

    def _out_of_memory(self, exc: OutOfMemory) -> None:
        """A frame the device had no memory for: skipped (counted as rejected), and everything kept between
        frames released (the step that failed released its own part already), so the next frame may fit."""
        self.predictor.release_caches()
        self._buffers.release()
        self.bad_frames += 1
        self._last_error = str(exc).splitlines()[0]
        self.get_logger().warning(f"frame skipped, caches released: {self._last_error}", throttle_duration_sec=5.0)

    def _on_frame_error(self, exc: BaseException) -> None:
        """A frame that failed: the cause in one line through the node's logger (throttled), the traceback at
        debug level; the worker goes on with the next frame."""
        self._last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().error(f"frame failed: {self._last_error}", throttle_duration_sec=5.0)
        self.get_logger().debug("".join(traceback.format_exception(exc)))

    def _check_stream(self, header, size: tuple[int, int]) -> None:
        """A reset request, or a frame that breaks the stream (stamp back or gap, frame_id, size): keyframe."""
        stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
        reason = self.stream.observe(stamp, header.frame_id, size)
        if self._reset_requested:
            self._reset_requested, reason = False, reason or "~/reset"
        if reason:
            self.predictor.reset_stream()
            if self.settings.temporal.enabled:
                self.get_logger().info(f"new stream ({reason}): keyframe")

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None or self.worker is None:
            return
        w, s = self.worker, self.stats
        values = {
            "fps": f"{s.fps():.2f}",
            "frames_received": str(w.submitted),
            "frames_processed": str(w.processed),
            "frames_dropped": str(w.dropped),
            "frames_rejected": str(self.bad_frames),
            "frames_failed": str(w.failed),
            "frames_lost_in_transport": str(self.frames_lost),
            "tasks": ",".join(self.settings.tasks),
            "device": str(self.predictor.device) if self.predictor else "",
        }
        values.update({k: f"{v:.3f}" for k, v in self._last_stats.items()})
        if self.settings.temporal.enabled and self.predictor is not None:
            cache = self.predictor.temporal_cache
            values["keyframe_rate"] = f"{s.mean('keyframe'):.3f}"
            values["temporal_keyframes"], values["temporal_frames"] = str(cache.keyframes), str(cache.frames)
        for name in s.names():
            values[f"{name}_ms_p50"] = f"{s.percentile(name, 50):.2f}"
            values[f"{name}_ms_p95"] = f"{s.percentile(name, 95):.2f}"
        level = DiagnosticStatus.OK
        message = "running"
        if self.bad_frames and self._last_error:
            level, message = DiagnosticStatus.WARN, f"rejected frames; last: {self._last_error}"
        status = DiagnosticStatus(
            level=level,
            name=f"{self.get_fully_qualified_name()}: inference",
            message=message,
            hardware_id=values["device"],
            values=[KeyValue(key=k, value=v) for k, v in values.items()],
        )
        arr = DiagnosticArray(status=[status])
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
