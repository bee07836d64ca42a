"""One camera frame, decode to outputs, without ROS types: the path the node, ``mtshare replay`` (offline and live
through the node) and the demo (through the node) share.

``CameraPipeline`` is one camera stream: its latest valid camera model (``set_camera``: a bad camera_info is
refused with its cause, and the outputs that need one pause), its stream watch (a stamp going back, a gap, another
frame_id or image size, or a reset request start a new stream: a keyframe), its temporal cache in the predictor
and its output buffers. ``process`` takes a frame's decoder (a callable that returns uint8 RGB or raises
``FrameError``), stamp and frame_id and returns a ``FrameResult``: the outputs (``runtime/outputs.py``), or why
there are none (rejected: the frame did not decode; out_of_memory: the device had no room, everything kept
between frames was released). Several pipelines share one ``Predictor`` (one per camera in a node).

With ``FrameSettings.motion_frame`` set and a ``TransformBuffer`` given (the node's /tf), temporal sharing takes
the image motion from the camera's poses (``runtime/tf_motion.py``: the frame's and the previous frame's, looked
up at their stamps, projected with camera_info's K at the inference resolution, or a nominal K without one, and
the previous frame's median depth when the depth task ran); a frame whose transform is unavailable falls back to
the image estimate, with one warning per camera and frames. ``motion_source`` says which it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np

from mtshare_ros.runtime.buffers import OutputBuffers
from mtshare_ros.runtime.camera import CameraModel, camera_problem, focal_of, nominal_camera_matrix, scale_camera
from mtshare_ros.runtime.decode import FrameError
from mtshare_ros.runtime.outputs import assemble_outputs
from mtshare_ros.runtime.predictor import OutOfMemory, Prediction, Predictor, inference_size
from mtshare_ros.runtime.settings import FrameSettings
from mtshare_ros.runtime.stream import StreamWatch
from mtshare_ros.runtime.tf_motion import PoseMotion, TransformBuffer

Warn = Callable[[str, str], None]
"""``warn(text, cause)``: the owner's logger, once per cause (``cause`` keys the de-duplication)."""

_UNSET = object()


@dataclass
class FrameResult:
    """What became of one frame. ``status``: ok, rejected (did not decode), out_of_memory. ``stream_break``: why this
    frame started a new stream ('' when it did not). Timings in milliseconds: decode, inference (predict), outputs."""

    status: str
    outputs: dict = field(default_factory=dict)
    prediction: Prediction | None = None
    rgb: np.ndarray | None = None
    error: str = ""
    stream_break: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)


class CameraPipeline:
    """One camera stream through a shared ``Predictor`` (see the module docstring)."""

    def __init__(self, predictor: Predictor, name: str = "", max_stamp_gap: float = 0.5,
                 warn: Warn | None = None, transforms: TransformBuffer | None = None) -> None:
        self.predictor = predictor
        self.name = name
        self.stream = StreamWatch(max_stamp_gap)
        self.cache = predictor.new_stream() if name else predictor.temporal_cache
        self.buffers = OutputBuffers()  # the outputs' memory, reused frame after frame
        self.camera: CameraModel | None = None
        self._warn = warn or (lambda text, cause: None)
        self._reset_requested = False
        self.pose_motion = PoseMotion(transforms) if transforms is not None else None
        self._frame: tuple[float, str] = (0.0, "")  # the stamp and frame_id of the frame observed last
        self.motion_source = ""  # the last frame's: tf, image, off ('' without temporal sharing)
        self.motion_problem = ""  # why the last frame's transform was unavailable ('' when it was not)

    # ------------------------------------------------------------------ camera_info
    def set_camera(self, camera: CameraModel | None, topic: str = "camera_info") -> str:
        """Keep ``camera`` when it can project the outputs; else drop it (``points`` and ``scaled_camera_info``
        pause until a good one arrives) and return why, warned once per cause."""
        problem = camera_problem(camera) if camera is not None else ""
        if problem:
            self._warn(f"camera_info on {topic}: {problem}; points and scaled_camera_info are not published until a "
                       "valid one arrives", f"{topic} {problem.split(' ')[0]}")
            camera = None
        self.camera = camera
        return problem

    def check_size(self, size: tuple[int, int], image_topic: str) -> None:
        """Warn once when the camera_info describes images of another size than the frames have."""
        camera = self.camera
        if camera is not None and camera.width and (camera.height, camera.width) != tuple(size):
            self._warn(f"camera_info describes {camera.width}x{camera.height} images but frames on {image_topic} are "
                       f"{size[1]}x{size[0]}: intrinsics are rescaled by the camera_info's own size",
                       f"{image_topic} size {camera.width}x{camera.height}")

    # ------------------------------------------------------------------ stream
    def request_reset(self) -> None:
        """The next frame starts a new stream (a keyframe), whatever its stamp says (``~/reset``)."""
        self._reset_requested = True

    def observe(self, stamp: float, frame_id: str, size: tuple[int, int]) -> str:
        """Record a frame in the stream watch; reset the temporal cache when it breaks the stream; say why."""
        reason = self.stream.observe(stamp, frame_id, size)
        self._frame = (stamp, frame_id)
        if self._reset_requested:
            self._reset_requested, reason = False, reason or "~/reset"
        if reason:
            self.predictor.reset_stream(self.cache)
            if self.pose_motion is not None:
                self.pose_motion.reset()
        return reason

    # ------------------------------------------------------------------ a frame
    def decode(self, decode: Callable[[], np.ndarray]) -> tuple[np.ndarray | None, str]:
        """The frame's RGB, or None and why it does not decode."""
        try:
            return decode(), ""
        except FrameError as exc:
            return None, str(exc)

    def process(self, decode: Callable[[], np.ndarray], stamp: float, frame_id: str, settings: FrameSettings,
                wanted: Collection[str], image_topic: str = "image", camera=_UNSET) -> FrameResult:
        """Decode, check the stream and camera, predict, make the outputs (``wanted``: the visualisation outputs
        anyone wants). ``camera``: this frame's camera model (replay, per frame); default the one ``set_camera``
        kept."""
        t0 = time.perf_counter()
        rgb, error = self.decode(decode)
        if rgb is None:
            return FrameResult("rejected", error=error, timings_ms={"decode": (time.perf_counter() - t0) * 1e3})
        why = self.observe(stamp, frame_id, rgb.shape[:2])
        if camera is _UNSET:
            self.check_size(rgb.shape[:2], image_topic)
            camera = self.camera
        t1 = time.perf_counter()
        result = self.infer(rgb, settings, wanted, camera)
        result.stream_break = why
        result.timings_ms["decode"] = (t1 - t0) * 1e3
        return result

    def infer(self, rgb: np.ndarray, settings: FrameSettings, wanted: Collection[str],
              camera: CameraModel | None) -> FrameResult:
        """Predict and make the outputs of a decoded frame (its stream already observed)."""
        t1 = time.perf_counter()
        shift = self._pose_shift(rgb.shape[:2], settings, camera)
        try:  # every step that allocates on the device: inference, then colours and points
            pred = self.predictor.predict(rgb, settings, self.cache, focal_of(camera, rgb.shape[1]), shift)
        except OutOfMemory as exc:
            self.release()
            return FrameResult("out_of_memory", rgb=rgb, error=str(exc).splitlines()[0])
        if self.pose_motion is not None and settings.motion_frame:
            depth = pred.maps.get("depth")
            self.pose_motion.advance(self._frame[1], self._frame[0],
                                     float(depth.nanmedian()) if depth is not None else None)
        return self.outputs_of(pred, rgb, settings, wanted, camera, (time.perf_counter() - t1) * 1e3)

    def _pose_shift(self, size: tuple[int, int], settings: FrameSettings,
                    camera: CameraModel | None) -> tuple[float, float] | None:
        """This frame's image motion from TF in pixels of the inference resolution, or None (the engine estimates
        it from the images); sets ``motion_source`` and ``motion_problem``, and warns once per cause."""
        temporal = settings.temporal
        self.motion_source = "" if not temporal.enabled else "off" if temporal.motion == "off" else "image"
        self.motion_problem = ""
        if self.motion_source != "image" or not settings.motion_frame or self.pose_motion is None:
            return None
        h0, w0 = size
        h, w = inference_size(h0, w0, self.predictor.cfg.img_size[0], self.predictor.cfg.patch_size,
                              settings.max_width)
        # without camera_info: the focal length the checkpoint's depth assumes too (its canonical one), if any
        k = scale_camera(camera, (h, w), (w / w0, h / h0)).k if camera is not None else \
            nominal_camera_matrix(h, w, self.predictor.cfg.canonical_focal)
        stamp, frame_id = self._frame
        shift, why = self.pose_motion.shift(settings.motion_frame, frame_id, stamp, k)
        if shift is not None:
            self.motion_source = "tf"
        elif why:
            self.motion_problem = why
            where = f"camera {self.name!r}: " if self.name else ""
            self._warn(f"{where}temporal.motion_frame {settings.motion_frame!r}: {why}; the image motion estimate is "
                       "used instead while the transform is unavailable", f"tf {self.name} {settings.motion_frame} "
                       f"{frame_id}")
        return shift

    def outputs_of(self, pred: Prediction, rgb: np.ndarray, settings: FrameSettings, wanted: Collection[str],
                   camera: CameraModel | None, inference_ms: float) -> FrameResult:
        """The outputs of this camera's prediction (``runtime/outputs.py``), into this camera's buffers."""
        t2 = time.perf_counter()
        full = rgb if settings.output_size == "input" else None
        try:
            outputs = assemble_outputs(pred, len(self.predictor.class_names), wanted, camera, full, self.buffers)
        except OutOfMemory as exc:
            self.release()
            return FrameResult("out_of_memory", rgb=rgb, error=str(exc).splitlines()[0])
        return FrameResult("ok", outputs, pred, rgb,
                           timings_ms={"inference": inference_ms, "outputs": (time.perf_counter() - t2) * 1e3})

    def release(self) -> None:
        """Everything kept between frames (after an out-of-memory frame, or on deactivate)."""
        self.predictor.release_caches()
        self.buffers.release()


@dataclass
class Job:
    """A decoded frame of one camera, its stream observed, waiting for inference with others."""

    pipeline: CameraPipeline
    rgb: np.ndarray
    wanted: Collection[str]
    camera: CameraModel | None


def infer_together(jobs: list[Job], settings: FrameSettings) -> list[FrameResult]:
    """Frames of several cameras that waited at the same time: frames of one inference size go through one
    ``Predictor.predict_batch`` pass (other sizes in their own pass); with temporal sharing on, each frame runs
    alone against its own stream's cache. Results in the order of ``jobs``; an out-of-memory batch makes every
    frame of it an out_of_memory result (the predictor released its caches)."""
    if not jobs:
        return []
    predictor = jobs[0].pipeline.predictor
    if settings.temporal.enabled or len(jobs) == 1:
        return [j.pipeline.infer(j.rgb, settings, j.wanted, j.camera) for j in jobs]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, j in enumerate(jobs):
        size = inference_size(*j.rgb.shape[:2], predictor.cfg.img_size[0], predictor.cfg.patch_size,
                              settings.max_width)
        groups.setdefault(size, []).append(i)
    results: list[FrameResult | None] = [None] * len(jobs)
    for idx in groups.values():
        if len(idx) == 1:
            j = jobs[idx[0]]
            results[idx[0]] = j.pipeline.infer(j.rgb, settings, j.wanted, j.camera)
            continue
        t1 = time.perf_counter()
        try:
            preds = predictor.predict_batch([jobs[i].rgb for i in idx], settings,
                                            [focal_of(jobs[i].camera, jobs[i].rgb.shape[1]) for i in idx])
        except OutOfMemory as exc:
            for i in idx:
                jobs[i].pipeline.buffers.release()
                results[i] = FrameResult("out_of_memory", rgb=jobs[i].rgb, error=str(exc).splitlines()[0])
            continue
        t2 = time.perf_counter()
        for i, pred in zip(idx, preds, strict=True):
            results[i] = jobs[i].pipeline.outputs_of(pred, jobs[i].rgb, settings, jobs[i].wanted, jobs[i].camera,
                                                     (t2 - t1) * 1e3)
    return results  # type: ignore[return-value]
