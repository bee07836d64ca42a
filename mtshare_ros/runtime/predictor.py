"""ROS-free inference: an RGB frame in, per-task dense maps out, with timings and executed cost.

``Predictor`` owns the models and the device; each ``predict`` call takes the ``FrameSettings`` of that frame
whole. Frames are resized so that the model sees ``cfg.img_size[0]`` rows and a width rounded to the patch
size (aspect ratio kept); outputs stay at that inference resolution and ``Prediction.scale`` says how to scale
the camera intrinsics to it (``runtime/camera.py``). The maps stay on the device: ``runtime/outputs.py`` makes
colours and points there and copies each output to the host once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from mtshare_ros.models.device import select_device
from mtshare_ros.models.focal import focal_at_input, metric_depth
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD, run_tasks
from mtshare_ros.runtime.onnx_backend import BACKENDS, OnnxBackend
from mtshare_ros.runtime.settings import FrameSettings
from mtshare_ros.sharing.loader import BASE_TASK, load_models
from mtshare_ros.sharing.temporal import TemporalCache
from mtshare_ros.tasks import task_spec

log = logging.getLogger(__name__)


def inference_size(
    height: int, width: int, target_height: int, patch: int, max_width: int | None = None
) -> tuple[int, int]:
    """Model input size for a frame: ``target_height`` rows, width scaled and rounded to the patch; a frame wider
    than that allows at ``max_width`` gets ``max_width`` and fewer rows (aspect ratio kept, at least one patch)."""
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image ({height}x{width})")
    h = target_height
    if max_width is not None and width * target_height / height > max_width:
        h = max(patch, int(round(height * max_width / width / patch)) * patch)
    w = max(patch, int(round(width * h / height / patch)) * patch)
    if max_width is not None:
        w = min(w, max(patch, max_width // patch * patch))
    return h, w


class OutOfMemory(RuntimeError):
    """The device ran out of memory on a frame; its caches were released, the next frame may fit."""

    @staticmethod
    def reason(exc: BaseException) -> str:
        """The first line of the device's out-of-memory message (CUDA's runs over several)."""
        return str(exc).splitlines()[0] if str(exc) else "out of memory"


@dataclass
class Prediction:
    """Per-task outputs at the inference resolution, as tensors on the predictor's device (contiguous).

    maps: task -> its published map (``TaskSpec.to_map``): segmentation (h, w) uint8 class ids; depth (h, w)
    float32 metres, NaN where invalid; normals (h, w, 3) float32 unit vectors in the camera optical frame (x right,
    y down, z forward); any registered task its own. Only the tasks that ran are present.
    image: the (h, w, 3) uint8 RGB input as the model saw it (resized), e.g. to colour a point cloud.
    stats: numbers for diagnostics (sharing on/off, executed GMACs, recomputed fractions).
    """

    size: tuple[int, int]
    scale: tuple[float, float]  # (sx, sy) from input pixels to output pixels
    image: torch.Tensor | None = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


class Predictor:
    """Loads a checkpoint once and runs the tasks a frame's settings ask for, frame after frame of one stream.

    With sharing enabled (and a base task plus sub-tasks available) one call runs the shared engine:
    segmentation in full, depth and normals recomputing only tokens that differ from it; otherwise the
    independent models of the asked tasks. With temporal sharing enabled the engine also reuses the previous
    frames between keyframes (its cache is this predictor's: one camera stream; ``reset_stream`` when the
    stream restarts). Temporal sharing runs in the engine, so with task sharing off but temporal on the
    sub-tasks run there as the dense models on every token (``LoadedModels.engine(sharing=False)``: a
    multi-task checkpoint's own heads, an independent checkpoint's models), what the frame would run without
    temporal sharing.
    """

    def __init__(self, checkpoint: str = "default", device: str = "auto", backend: str = "torch") -> None:
        """``backend``: ``torch`` (eager PyTorch), ``onnxruntime`` or ``openvino`` (the checkpoint's exported graphs,
        ``runtime/onnx_backend.py``; a missing package or execution provider raises here)."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        self.device = select_device(device)
        self.loaded = load_models(checkpoint)
        self.backend = backend
        # an exported backend gets the threads torch was given (the node chooses them before it builds the predictor)
        self.onnx = OnnxBackend(self.loaded, str(self.device), torch.get_num_threads(), backend) \
            if backend != "torch" else None
        self._onnx_stats: dict[tuple, dict[str, float]] = {}
        self.models, self.shared = self.loaded.dense, self.loaded.shared
        # per engine, the blocks each sub-task runs itself: 0 for a multi-task model's task without a sub-task file,
        # whose 0% recomputed is by design (the stats report it beside the fraction)
        self._own_blocks: dict[int, dict[str, float]] = {}
        self.cfg = self.loaded.cfg
        self.class_names = self.loaded.class_names
        self._streams: list[TemporalCache] = []  # every stream's temporal cache (released together)
        self._temporal_on: dict[int, bool] = {}  # per stream: its last frame ran with temporal sharing
        self._engine_of: dict[int, int] = {}  # per stream: the engine its temporal buffers were filled by
        self.temporal_cache = self.new_stream()  # the stream of callers that have one camera
        self._batch_cache: TemporalCache | None = None
        self._warned_focal = False
        self.restore()
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def available_tasks(self) -> tuple[str, ...]:
        return self.loaded.tasks

    def check(self, settings: FrameSettings) -> str:
        """'' when this checkpoint can run ``settings``, else why not."""
        unknown = [t for t in settings.tasks if t not in self.models]
        if unknown or not settings.tasks:
            return f"tasks {list(settings.tasks)} invalid: the checkpoint provides {list(self.available_tasks)}"
        return self.onnx.check(settings) if self.onnx is not None else ""

    def prepare(self, settings: FrameSettings) -> None:
        """Do before the first frame what it would otherwise wait for: an exported backend's graph for ``settings``
        (exported into the cache if it is not there, then loaded). Call after ``check`` passed."""
        if self.onnx is not None:
            self.onnx.prepare(settings, [t for t in settings.tasks if t != BASE_TASK])

    def _modules(self) -> list[torch.nn.Module]:
        return [self.models, *self.loaded.engines()]

    def new_stream(self) -> TemporalCache:
        """A temporal cache for one more camera stream (pass it to ``predict``); released with the others."""
        cache = TemporalCache()
        self._streams.append(cache)
        return cache

    def reset_stream(self, cache: TemporalCache | None = None) -> None:
        """The camera stream restarted (or jumped): its next frame is a keyframe."""
        (cache or self.temporal_cache).reset()

    def release_caches(self) -> None:
        """Drop everything kept between frames that the next frame can rebuild: the temporal buffers (the next
        frame is a keyframe), the engine's fused weights, and CUDA's cached blocks. After an out-of-memory frame
        this is what gives the device room for the next one."""
        for cache in self._streams:
            cache.reset()
        for engine in self.loaded.engines():
            engine.clear_caches()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def release(self) -> None:
        """Move weights off the GPU and free its cache and the temporal buffers (lifecycle deactivate)."""
        for m in self._modules():
            m.to("cpu")
        self.release_caches()

    def restore(self) -> None:
        for m in self._modules():
            m.to(self.device)

    def preprocess(
        self, rgb: np.ndarray, max_width: int | None = None
    ) -> tuple[torch.Tensor, tuple[float, float], torch.Tensor]:
        """uint8 (H, W, 3) RGB -> normalised (1, 3, h, w) tensor on the device, the scale and the resized uint8
        RGB on the device (it colours the point cloud there)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h0, w0 = rgb.shape[:2]
        h, w = inference_size(h0, w0, self.cfg.img_size[0], self.cfg.patch_size, max_width)
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (h0, w0) else rgb
        image = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device)
        x = image.permute(2, 0, 1)[None].float() / 255.0
        return (x - self._mean) / self._std, (w / w0, h / h0), image

    def _run(self, x: torch.Tensor, settings: FrameSettings, cache: TemporalCache,
             shift: tuple[float, float] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        subtasks = [t for t in settings.tasks if t != BASE_TASK]
        s, temporal = settings.sharing, settings.temporal
        if self._temporal_on.get(id(cache)) and not temporal.enabled:
            # temporal sharing switched off: its buffers are stale, and go now with the weights fused for its
            # keyframes (also when a stream reset emptied the buffers first: the fused weights stay until here)
            cache.reset()
            for engine in self.loaded.engines():
                engine.clear_caches()
        self._temporal_on[id(cache)] = temporal.enabled
        if self.onnx is not None:
            return self._run_onnx(x, settings, subtasks)
        sharing = s.enabled and bool(subtasks)
        if self.shared is None or not (sharing or temporal.enabled):
            # run_tasks: a multi-task checkpoint's one encoder runs once for all the asked heads
            outputs = run_tasks({task: self.models[task] for task in settings.tasks}, x)
            return outputs, {"sharing": 0.0, "temporal": 0.0}
        engine = self.loaded.engine(sharing)
        if self._engine_of.setdefault(id(cache), id(engine)) != id(engine):
            cache.reset()  # task sharing switched: the buffers hold the other engine's sub-task streams
            self._engine_of[id(cache)] = id(engine)
        thresholds, cap = (s.thresholds(subtasks), s.max_token_fraction) if sharing else (0.0, 1.0)
        mode = s.mode if sharing else "threshold"
        outputs, st = engine(x, thresholds, cap, tasks=subtasks, temporal=temporal, cache=cache, shift=shift,
                             mode=mode)
        stats = {
            "sharing": float(sharing),
            "temporal": float(temporal.enabled),
            "keyframe": float(st.keyframe or not temporal.enabled),
            "gmacs_executed": st.macs_total / 1e9,
            "gmacs_independent": st.macs_dense_total / 1e9,
            "macs_saved_fraction": st.macs_saved_fraction,
        }
        if temporal.enabled:
            stats["temporal_cache_mb"] = cache.nbytes() / 2**20
            m = cache.motion
            stats.update({"motion_dy_px": m.last[0], "motion_dx_px": m.last[1], "motion_response": m.last_response,
                          "motion_ms": m.last_ms, "temporal_drift": cache.drift})
        stats.update({f"recomputed_{t}": st.recomputed_fraction[t] for t in st.recomputed_fraction})
        own = self._own_blocks.setdefault(id(engine), {
            t: float(engine.cfg.depth - sub.start_layer) for t, sub in engine.subtasks.items()})
        stats.update({f"own_blocks_{t}": own[t] for t in st.recomputed_fraction if t in own})
        return outputs, stats

    def _run_onnx(self, x: torch.Tensor, settings: FrameSettings, subtasks: list[str]
                  ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """A frame through an exported backend; its stats are the torch engine's for the same fixed budget
        (the graph runs exactly that work: counted once per input shape and cap). The graphs take one frame: a
        batch runs frame by frame."""
        runs = [self.onnx.run(x[i : i + 1], settings, subtasks) for i in range(x.shape[0])]
        _, kind, cap = runs[0]
        outputs = {t: torch.cat([r[0][t] for r in runs]) for t in settings.tasks}
        stats = {"sharing": float(kind == "engine"), "temporal": 0.0, f"backend_{self.backend}": 1.0}
        if kind == "engine":
            key = (tuple(x.shape[1:]), cap)
            if key not in self._onnx_stats:
                st = self.shared.summarize(self.shared.run(x[:1], 0.0, cap, mode="fixed"))
                self._onnx_stats[key] = {
                    "keyframe": 1.0, "gmacs_executed": st.macs_total / 1e9,
                    "gmacs_independent": st.macs_dense_total / 1e9, "macs_saved_fraction": st.macs_saved_fraction,
                    **{f"recomputed_{t}": f for t, f in st.recomputed_fraction.items()}}
            stats.update(self._onnx_stats[key])
        return outputs, stats

    def predict(
        self, rgb: np.ndarray, settings: FrameSettings | None = None, cache: TemporalCache | None = None,
        fx: float | None = None, shift: tuple[float, float] | None = None,
    ) -> Prediction:
        """Run ``settings`` (default: all tasks, the package's defaults) on one uint8 RGB frame of the stream whose
        temporal cache is ``cache`` (default: ``temporal_cache``, one stream's; ``new_stream`` makes another).

        ``fx``: the camera's horizontal focal length in pixels of ``rgb`` (camera_info's: ``runtime/camera.py``
        ``focal_of``). A checkpoint with a canonical focal length makes its depth metric with it
        (models/focal.py); without it that checkpoint assumes its training data's nominal focal length and says
        so once. Checkpoints without a canonical focal length predict metric depth and ignore ``fx``.

        ``shift``: with temporal sharing, the image motion (dy, dx) since the stream's previous frame in pixels of
        the inference resolution, known from elsewhere (the camera's pose: ``runtime/tf_motion.py``); it replaces
        the engine's image estimate for this frame (``sharing/motion.py``).

        Raises ``OutOfMemory`` when the device runs out of memory at any step of the frame (upload, inference,
        postprocessing), after ``release_caches``: the frame is lost, the predictor serves the next one."""
        settings = settings or FrameSettings()
        reason = self.check(settings)
        if reason:
            raise ValueError(reason)
        try:
            return self._predict(rgb, settings, cache or self.temporal_cache, fx, shift)
        except torch.cuda.OutOfMemoryError as exc:  # a frame too large for what the device has left
            reason = OutOfMemory.reason(exc)
        # released outside the handler: the exception's traceback holds the failed frame's tensors until it ends
        self.release_caches()
        raise OutOfMemory(f"{self.device} out of memory on a {rgb.shape[1]}x{rgb.shape[0]} frame: {reason}")

    def predict_batch(self, rgbs: list[np.ndarray], settings: FrameSettings,
                      fxs: list[float | None] | None = None) -> list[Prediction]:
        """Frames of several cameras in one pass (what a node with several cameras runs when their frames wait
        together). The frames must have one inference size (callers group them) and temporal sharing must be off
        (a temporal frame depends on its own stream's cache: those go through ``predict``, one by one). The batch
        runs the embedding, the base task, the heads and the independent models as batched tensors; task sharing
        selects each frame's own tokens (``sharing/tokens.py``: a per-frame top-k, padded to one row count, the
        padding computed and thrown away), so each frame's outputs are its single-frame outputs up to float
        summation order. Stats are per frame (GMACs of the batch divided by its frames)."""
        settings = settings or FrameSettings()
        if settings.temporal.enabled:
            raise ValueError("predict_batch runs without temporal sharing; temporal frames go through predict")
        reason = self.check(settings)
        if reason:
            raise ValueError(reason)
        try:
            return self._predict_batch(rgbs, settings, fxs or [None] * len(rgbs))
        except torch.cuda.OutOfMemoryError as exc:
            reason = OutOfMemory.reason(exc)
        self.release_caches()
        raise OutOfMemory(f"{self.device} out of memory on a batch of {len(rgbs)} frames: {reason}")

    @torch.inference_mode()
    def _predict_batch(self, rgbs: list[np.ndarray], settings: FrameSettings,
                       fxs: list[float | None]) -> list[Prediction]:
        t0 = time.perf_counter()
        parts = [self.preprocess(rgb, settings.max_width) for rgb in rgbs]
        sizes = {tuple(x.shape[-2:]) for x, _, _ in parts}
        if len(sizes) != 1:
            raise ValueError(f"predict_batch needs one inference size, got {sorted(sizes)}")
        x = torch.cat([p[0] for p in parts])
        t1 = time.perf_counter()
        if self._batch_cache is None:
            self._batch_cache = self.new_stream()  # never filled: temporal sharing is off here
        outputs, stats = self._run(x, settings, self._batch_cache)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        b = len(rgbs)
        for key in ("gmacs_executed", "gmacs_independent"):
            if key in stats:
                stats[key] /= b
        preds = []
        for i, (xi, scale, image) in enumerate(parts):
            frame = {task: outputs[task][i] for task in settings.tasks}
            if "depth" in frame:  # each camera's own focal length (``fx`` of ``predict``)
                frame["depth"] = self._metric(frame["depth"], fxs[i], rgbs[i], xi)
            maps = {task: task_spec(task).to_map(frame[task], settings) for task in settings.tasks}
            preds.append(Prediction(size=tuple(xi.shape[-2:]), scale=scale, image=image, maps=maps,
                                    stats={**stats, "batch": float(b)}))
        t3 = time.perf_counter()
        for p in preds:
            p.timings_ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3,
                            "postprocess": (t3 - t2) * 1e3}
        return preds

    def _metric(self, depth: torch.Tensor, fx: float | None, rgb: np.ndarray, x: torch.Tensor) -> torch.Tensor:
        """The depth output made metric with ``fx`` (models/focal.py); warns once when a canonical-focal model
        gets no focal length (the nominal one is assumed)."""
        if self.cfg.canonical_focal is None:
            return depth
        if fx is None or not fx > 0:
            if not self._warned_focal:
                log.warning("no camera focal length (camera_info): depth assumes the training data's nominal "
                            "focal length, %.1f px at %d px wide; metric depth is off by the ratio of the true one",
                            self.cfg.canonical_focal, self.cfg.img_size[1])
                self._warned_focal = True
            return depth
        return metric_depth(depth, self.cfg.canonical_focal, focal_at_input(fx, rgb.shape[1], x.shape[-1]))

    @torch.inference_mode()
    def _predict(self, rgb: np.ndarray, settings: FrameSettings, cache: TemporalCache,
                 fx: float | None = None, shift: tuple[float, float] | None = None) -> Prediction:
        t0 = time.perf_counter()
        x, scale, image = self.preprocess(rgb, settings.max_width)
        t1 = time.perf_counter()
        outputs, stats = self._run(x, settings, cache, shift)
        if "depth" in outputs:
            outputs = {**outputs, "depth": self._metric(outputs["depth"], fx, rgb, x)}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        maps = {task: task_spec(task).to_map(outputs[task][0], settings) for task in settings.tasks}
        pred = Prediction(size=tuple(x.shape[-2:]), scale=scale, image=image, maps=maps, stats=stats)
        t3 = time.perf_counter()
        pred.timings_ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return pred
