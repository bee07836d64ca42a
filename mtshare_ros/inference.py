"""ROS-free inference: an RGB frame in, per-task dense maps out, with timings and executed cost.

``Predictor`` owns the models, the device and the pre/post-processing; the ROS node only converts
messages. Frames are resized so that the model sees ``cfg.img_size[0]`` rows and a width rounded to
the patch size (aspect ratio kept); outputs stay at that inference resolution and callers scale the
camera intrinsics with ``Prediction.scale``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from mtshare_ros.models.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_SUBTASKS, load_checkpoint, resolve_checkpoint
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD, TASK_CHANNELS
from mtshare_ros.sharing.checkpoint import (
    SharedCheckpointError,
    attach_subtask,
    base_fingerprint,
    is_shared_checkpoint,
    load_shared,
)
from mtshare_ros.sharing.engine import SharedMultiTaskModel

log = logging.getLogger(__name__)

ALL_TASKS = tuple(TASK_CHANNELS)
BASE_TASK = "segmentation"


def select_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` / ``cuda:N`` fail clearly when it is not."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return dev


def inference_size(height: int, width: int, target_height: int, patch: int) -> tuple[int, int]:
    """Model input size for a frame: ``target_height`` rows, width scaled and rounded to the patch."""
    if height <= 0 or width <= 0:
        raise ValueError(f"empty image ({height}x{width})")
    w = max(patch, int(round(width * target_height / height / patch)) * patch)
    return target_height, w


def load_task_models(checkpoint: str) -> tuple[torch.nn.ModuleDict, SharedMultiTaskModel | None, dict]:
    """Both ways to run a checkpoint: independent dense models per task, and the shared engine.

    ``default`` is the shipped pair: the independent models of ``weights/default.pt`` (what runs with
    sharing off) and the trained sub-task deltas ``weights/default_<task>.pt`` against its segmentation
    model (what the shared engine runs). A shared checkpoint (base + deltas) gives the engine directly;
    its dense sub-task models are materialised as ``W_base + dW`` for ``sharing.enabled: false``. A
    checkpoint of independent models gives the engine with exact (uncompressed) deltas, so token
    skipping works on any checkpoint; only trained deltas also save storage and keep accuracy when
    tokens are skipped.
    """
    path = DEFAULT_CHECKPOINT if checkpoint == "default" else checkpoint
    if Path(path).is_file() and is_shared_checkpoint(path):
        shared, meta = load_shared(path)
        dense = torch.nn.ModuleDict({shared.base.task: shared.base})
        for task, st in shared.subtasks.items():
            dense[task] = st.to_dense_model(shared.base).eval()
        return dense, shared, meta
    dense, meta = load_checkpoint(checkpoint)
    if BASE_TASK not in dense or len(dense) == 1:
        return dense, None, meta
    subs = {t: m for t, m in dense.items() if t != BASE_TASK}
    shared = SharedMultiTaskModel.from_dense(dense[BASE_TASK], subs, delta="dense").eval()
    meta["sharing_source"] = "exact deltas from the independent models"
    if checkpoint == "default":
        _attach_default_subtasks(shared, meta)
    return dense, shared, meta


def _attach_default_subtasks(shared: SharedMultiTaskModel, meta: dict) -> None:
    """Replace the exact deltas of ``shared`` by the shipped trained ones where they fit its base."""
    attached = []
    for task, file in DEFAULT_SUBTASKS.items():
        if task not in shared.subtasks or not file.is_file():
            continue
        try:
            attach_subtask(shared, file)
            attached.append(task)
        except SharedCheckpointError as exc:
            log.warning("shipped sub-task %s not used (%s); running exact deltas instead", task, exc)
    if attached:
        meta["sharing_source"] = f"trained sub-task deltas ({', '.join(attached)}) from weights/default_<task>.pt"


@dataclass
class Prediction:
    """Per-task outputs at the inference resolution.

    segmentation: (h, w) uint8 class ids; depth: (h, w) float32 metres, NaN where invalid;
    normals: (h, w, 3) float32 unit vectors in the camera optical frame (x right, y down, z forward).
    image: the (h, w, 3) uint8 RGB input as the model saw it (resized), e.g. to colour a point cloud.
    """

    size: tuple[int, int]
    scale: tuple[float, float]  # (sx, sy) from input pixels to output pixels
    image: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class SharingSettings:
    """How sub-tasks reuse the base task: per-task token thresholds and a recompute cap per layer.

    The threshold is the one the shipped sub-tasks were trained at (sharing step 3, which trained with a
    token cap of 0.3); the cap of 0.1 measured faster and as accurate on the held-out split
    (``bench/results/task_sharing.md``). ``threshold`` applies to every sub-task without an entry in
    ``thresholds``.
    """

    enabled: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    max_token_fraction: float = 0.1
    threshold: float = 0.05


class Predictor:
    """Loads a checkpoint once and runs the enabled tasks on frames.

    With sharing enabled (and a base task plus sub-tasks available) one call runs the shared engine:
    segmentation in full, depth and normals recomputing only tokens that differ from it. Tasks and
    sharing settings can change between frames. ``min_depth``/``max_depth`` bound what is reported as
    valid depth (REP 118: NaN outside).
    """

    def __init__(
        self,
        checkpoint: str = "default",
        device: str = "auto",
        tasks: tuple[str, ...] | list[str] = ALL_TASKS,
        min_depth: float = 0.05,
        max_depth: float = 20.0,
        sharing: SharingSettings | None = None,
    ) -> None:
        self.device = select_device(device)
        self.models, self.shared, self.meta = load_task_models(checkpoint)
        self.cfg = self.meta["model_config"]
        self.class_names: list[str] = list(self.meta["class_names"])
        self.sharing = sharing or SharingSettings()
        self.min_depth, self.max_depth = min_depth, max_depth
        self.tasks: tuple[str, ...] = ()
        self.set_tasks(tasks)
        self.restore()
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @property
    def available_tasks(self) -> tuple[str, ...]:
        return tuple(self.models.keys())

    def set_tasks(self, tasks: tuple[str, ...] | list[str]) -> None:
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in self.models]
        if unknown or not tasks:
            raise ValueError(f"tasks {list(tasks)} invalid: the checkpoint provides {list(self.available_tasks)}")
        self.tasks = tasks

    def _modules(self) -> list[torch.nn.Module]:
        return [self.models] + ([self.shared] if self.shared is not None else [])

    def release(self) -> None:
        """Move weights off the GPU and free its cache (lifecycle deactivate)."""
        for m in self._modules():
            m.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def restore(self) -> None:
        for m in self._modules():
            m.to(self.device)

    def preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[float, float], np.ndarray]:
        """uint8 (H, W, 3) RGB -> normalised (1, 3, h, w) tensor on the device, the scale and the resized RGB."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h0, w0 = rgb.shape[:2]
        h, w = inference_size(h0, w0, self.cfg.img_size[0], self.cfg.patch_size)
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (h0, w0) else rgb
        x = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return (x - self._mean) / self._std, (w / w0, h / h0), resized

    def _run(self, x: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        subtasks = [t for t in self.tasks if t != BASE_TASK]
        if self.sharing.enabled and self.shared is not None and subtasks:
            s = self.sharing
            thresholds = {t: s.thresholds.get(t, s.threshold) for t in subtasks}
            outputs, st = self.shared(x, thresholds, s.max_token_fraction, tasks=subtasks)
            stats = {
                "sharing": 1.0,
                "gmacs_executed": st["macs_total"] / 1e9,
                "gmacs_independent": st["macs_dense_total"] / 1e9,
                "macs_saved_fraction": st["macs_saved_fraction"],
            }
            stats.update({f"recomputed_{t}": v for t, v in st["recomputed_fraction"].items() if t != BASE_TASK})
            return outputs, stats
        return {task: self.models[task](x) for task in self.tasks}, {"sharing": 0.0}

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        x, scale, image = self.preprocess(rgb)
        t1 = time.perf_counter()
        outputs, stats = self._run(x)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        pred = Prediction(size=tuple(x.shape[-2:]), scale=scale, image=image, stats=stats)
        if "segmentation" in self.tasks:
            # max().indices: the same labels as argmax, ~10x cheaper on CPU for (K, H, W) logits
            pred.segmentation = outputs["segmentation"][0].max(0).indices.to(torch.uint8).cpu().numpy()
        if "depth" in self.tasks:
            d = outputs["depth"][0, 0].float().cpu().numpy()
            pred.depth = np.where((d >= self.min_depth) & (d <= self.max_depth), d, np.nan).astype(np.float32)
        if "normals" in self.tasks:
            pred.normals = outputs["normals"][0].float().permute(1, 2, 0).contiguous().cpu().numpy()
        t3 = time.perf_counter()
        pred.timings_ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return pred


def describe_checkpoint(checkpoint: str) -> str:
    """One line for people: which weights a checkpoint name resolves to and how they were made."""
    path = resolve_checkpoint(checkpoint)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    prov = ckpt.get("provenance", {}) if isinstance(ckpt, dict) else {}
    what = ", ".join(f"{k}={prov[k]}" for k in ("dataset", "steps", "command") if k in prov)
    kind = ckpt.get("kind", "independent models") if isinstance(ckpt, dict) else "?"
    line = f"{path} [{kind}] ({what or 'no provenance recorded'})"
    if checkpoint == "default":
        fits, other = _shipped_subtasks()
        if fits:
            line += f" + trained sub-task deltas for the shared engine: {', '.join(fits)}"
        if other:
            line += f" (not used, made for another base: {', '.join(other)})"
    return line


def _shipped_subtasks() -> tuple[list[str], list[str]]:
    """Names of the shipped sub-task files that fit the shipped base (same fingerprint), and of those that do not."""
    base = load_checkpoint(DEFAULT_CHECKPOINT, tasks=[BASE_TASK])[0][BASE_TASK]
    have = base_fingerprint(base)
    fits, other = [], []
    for file in DEFAULT_SUBTASKS.values():
        if file.is_file():
            made_for = torch.load(file, map_location="cpu", weights_only=True).get("base_fingerprint")
            (fits if made_for == have else other).append(file.name)
    return fits, other
