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

import cv2
import numpy as np
import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD, TASK_CHANNELS, ModelConfig, build_task_models

log = logging.getLogger(__name__)

ALL_TASKS = tuple(TASK_CHANNELS)


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


def _load_or_untrained(checkpoint: str) -> tuple[torch.nn.ModuleDict, dict]:
    """Load ``checkpoint``; while no trained default is shipped, ``default`` is a seeded untrained model."""
    if checkpoint == "default" and not DEFAULT_CHECKPOINT.is_file():
        log.warning("no trained default weights shipped yet (%s): running an UNTRAINED model", DEFAULT_CHECKPOINT)
        torch.manual_seed(0)
        cfg = ModelConfig()
        models = build_task_models(cfg, ALL_TASKS).eval()
        return models, {"model_config": cfg, "class_names": list(SYNTHETIC_CLASSES), "provenance": {"untrained": True}}
    return load_checkpoint(checkpoint)


@dataclass
class Prediction:
    """Per-task outputs at the inference resolution.

    segmentation: (h, w) uint8 class ids; depth: (h, w) float32 metres, NaN where invalid;
    normals: (h, w, 3) float32 unit vectors in the camera optical frame (x right, y down, z forward).
    """

    size: tuple[int, int]
    scale: tuple[float, float]  # (sx, sy) from input pixels to output pixels
    segmentation: np.ndarray | None = None
    depth: np.ndarray | None = None
    normals: np.ndarray | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


class Predictor:
    """Loads a checkpoint once and runs the enabled tasks on frames.

    Tasks can be switched at run time with ``set_tasks``; only tasks present in the checkpoint are
    accepted. ``min_depth``/``max_depth`` bound what is reported as valid depth (REP 118: NaN outside).
    """

    def __init__(
        self,
        checkpoint: str = "default",
        device: str = "auto",
        tasks: tuple[str, ...] | list[str] = ALL_TASKS,
        min_depth: float = 0.05,
        max_depth: float = 20.0,
    ) -> None:
        self.device = select_device(device)
        self.models, self.meta = _load_or_untrained(checkpoint)
        self.cfg = self.meta["model_config"]
        self.class_names: list[str] = list(self.meta["class_names"])
        self.models.to(self.device)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.tasks: tuple[str, ...] = ()
        self.set_tasks(tasks)
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

    def release(self) -> None:
        """Move weights off the GPU and free its cache (lifecycle deactivate)."""
        self.models.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def restore(self) -> None:
        self.models.to(self.device)

    def preprocess(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[float, float]]:
        """uint8 (H, W, 3) RGB -> normalised (1, 3, h, w) tensor on the device, and the scale."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 RGB image (H, W, 3), got {rgb.dtype} {rgb.shape}")
        h0, w0 = rgb.shape[:2]
        h, w = inference_size(h0, w0, self.cfg.img_size[0], self.cfg.patch_size)
        resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if (h, w) != (h0, w0) else rgb
        x = torch.from_numpy(np.ascontiguousarray(resized)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        return (x - self._mean) / self._std, (w / w0, h / h0)

    @torch.inference_mode()
    def predict(self, rgb: np.ndarray) -> Prediction:
        t0 = time.perf_counter()
        x, scale = self.preprocess(rgb)
        t1 = time.perf_counter()
        outputs = {task: self.models[task](x) for task in self.tasks}
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t2 = time.perf_counter()
        pred = Prediction(size=tuple(x.shape[-2:]), scale=scale)
        if "segmentation" in outputs:
            pred.segmentation = outputs["segmentation"][0].argmax(0).to(torch.uint8).cpu().numpy()
        if "depth" in outputs:
            d = outputs["depth"][0, 0].float().cpu().numpy()
            pred.depth = np.where((d >= self.min_depth) & (d <= self.max_depth), d, np.nan).astype(np.float32)
        if "normals" in outputs:
            pred.normals = np.ascontiguousarray(outputs["normals"][0].float().permute(1, 2, 0).cpu().numpy())
        t3 = time.perf_counter()
        pred.timings_ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return pred


def describe_checkpoint(checkpoint: str) -> str:
    """One line for people: which weights a checkpoint name resolves to and how they were made."""
    if checkpoint == "default" and not DEFAULT_CHECKPOINT.is_file():
        return "UNTRAINED (no trained default weights shipped yet): outputs are meaningless"
    from mtshare_ros.models.checkpoint import read_checkpoint, resolve_checkpoint

    prov = read_checkpoint(checkpoint).get("provenance", {})
    what = ", ".join(f"{k}={prov[k]}" for k in ("dataset", "steps", "command") if k in prov)
    return f"{resolve_checkpoint(checkpoint)} ({what or 'no provenance recorded'})"
