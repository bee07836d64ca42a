"""The predictor's exported-graph backends, ``onnxruntime`` and ``openvino``: the checkpoint's graph for a frame's
settings, exported once into a cache directory and run by ONNX Runtime or OpenVINO instead of the torch model.
OpenVINO runs on the CPU only, in float32 (``export/runner.py``); it is the faster of the two here for the fixed
engine (``bench/results/backends.md``).

Which graph: with task sharing on, the shared engine in the fixed-budget mode at the frame's token cap
(``sharing.max_token_fraction``; the threshold mode's shapes change every frame, so ``sharing.mode: threshold``
runs as ``fixed`` here, with a warning once); with sharing off (or no engine), the checkpoint's dense models in one
graph (a multi-task checkpoint's one encoder). Temporal sharing is not exported: ``check`` refuses it.

Cache: ``$MTSHARE_CACHE/onnx`` (default ``~/.cache/mtshare_ros/onnx``), one folder per graph,
``<checkpoint sha256[:16]>-<engine|dense>-<cap>/`` with ``<kind>.onnx`` and ``<kind>.json``. A graph is exported
the first time it is needed (about 20-60 s on a CPU core); a later run, or another node, finds it there.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from mtshare_ros.export.onnx import export_onnx, file_hash
from mtshare_ros.export.runner import BackendUnavailable, OpenVinoRunner, openvino_available, providers_for
from mtshare_ros.export.runner import OnnxRunner as OrtRunner
from mtshare_ros.runtime.settings import FrameSettings
from mtshare_ros.sharing.loader import LoadedModels

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino")
EXPORTED_BACKENDS = BACKENDS[1:]
CACHE_ENV = "MTSHARE_CACHE"


def cache_root() -> Path:
    """Where exported graphs are kept: ``$MTSHARE_CACHE/onnx``, else ``~/.cache/mtshare_ros/onnx``."""
    base = os.environ.get(CACHE_ENV)
    return (Path(base) if base else Path.home() / ".cache" / "mtshare_ros") / "onnx"


def openvino_on(device: str) -> None:
    """Raise ``BackendUnavailable`` unless backend openvino can run on ``device`` here: the CPU, openvino
    installed."""
    if device != "cpu":
        raise BackendUnavailable(f"backend openvino runs on the CPU, not {device} (use device cpu, or backend "
                                 "onnxruntime for a GPU)")
    openvino_available()


class OnnxRunner:
    """An exported graph run by ``backend`` (``onnxruntime`` or ``openvino``) on ``device``: ``cpu``, ``cuda``
    (the CUDA provider alone), ``tensorrt`` (TensorRT fp16, engines cached in ``trt_cache``, then CUDA) or a torch
    device string (``cuda:N``: TensorRT when installed). ``run(x) -> {task: tensor}``: the benchmarks' entry point;
    the predictor builds the same runner through ``OnnxBackend``."""

    def __init__(self, path: str | Path, backend: str = "onnxruntime", device: str = "cpu", threads: int = 0,
                 trt_cache: str | Path | None = None) -> None:
        if backend == "openvino":
            openvino_on(device)
            self.impl: OrtRunner | OpenVinoRunner = OpenVinoRunner(path, threads)
        elif backend == "onnxruntime":
            gpu = {"cuda": ("cuda", False), "tensorrt": ("cuda", True)}.get(device, (device, None))
            self.impl = OrtRunner(path, providers_for(gpu[0], gpu[1], trt_cache), threads)
        else:
            raise ValueError(f"backend must be onnxruntime or openvino, got {backend!r}")
        self.path, self.meta, self.outputs = self.impl.path, self.impl.meta, self.impl.outputs

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.impl.run(x)


class OnnxBackend:
    """Runs frames through exported graphs of ``loaded`` with ``backend`` (``onnxruntime`` or ``openvino``) on
    ``device``. A missing package or execution provider raises ``BackendUnavailable`` here, at construction, i.e.
    at configure."""

    def __init__(self, loaded: LoadedModels, device: str, threads: int = 0, backend: str = "onnxruntime") -> None:
        if backend not in EXPORTED_BACKENDS:
            raise ValueError(f"backend must be one of {list(EXPORTED_BACKENDS)}, got {backend!r}")
        self.loaded = loaded
        self.backend = backend
        self.threads = threads
        if backend == "openvino":
            openvino_on(device)
            self.providers: list = []
        else:
            self.providers = providers_for(device)
        self._hash = file_hash(loaded.path)
        self._runners: dict[tuple[str, float], OrtRunner | OpenVinoRunner] = {}
        self._warned_threshold = False

    def check(self, settings: FrameSettings) -> str:
        """'' when the backend can run ``settings``, else why not."""
        if settings.temporal.enabled:
            return (f"backend {self.backend} runs per frame: temporal sharing is not exported (set temporal.enabled "
                    "false)")
        return ""

    def graph(self, settings: FrameSettings, subtasks: list[str]) -> tuple[str, float]:
        """The graph (kind, cap) that runs ``settings``."""
        s = settings.sharing
        if s.enabled and subtasks and self.loaded.shared is not None:
            if s.mode != "fixed" and not self._warned_threshold:
                log.warning("backend %s runs the shared engine in sharing.mode 'fixed' (exactly ceil(%.3f x "
                            "tokens) per layer); sharing.mode %r and its thresholds are not exported", self.backend,
                            s.max_token_fraction, s.mode)
                self._warned_threshold = True
            return "engine", float(s.max_token_fraction)
        return "independent", 1.0

    def runner(self, kind: str, cap: float) -> OrtRunner | OpenVinoRunner:
        """The session of graph (kind, cap), exporting it into the cache first if it is not there."""
        key = (kind, cap)
        if key not in self._runners:
            folder = cache_root() / f"{self._hash}-{'engine' if kind == 'engine' else 'dense'}-{cap:g}"
            path = folder / f"{kind}.onnx"
            if not (path.is_file() and path.with_suffix(".json").is_file()):
                log.warning("exporting the %s graph of %s to %s (once; later runs find it there)", kind,
                            self.loaded.path, folder)
                tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
                export_onnx(str(self.loaded.path), kind, tmp, cap=cap, loaded=self.loaded)
                folder.mkdir(parents=True, exist_ok=True)
                for f in tmp.iterdir():  # renamed into place: a reader never sees half a file
                    f.replace(folder / f.name)
                tmp.rmdir()
            self._runners[key] = (OpenVinoRunner(path, self.threads) if self.backend == "openvino"
                                  else OrtRunner(path, self.providers, self.threads))
        return self._runners[key]

    @property
    def graphs(self) -> list[tuple[str, float]]:
        """The graphs (kind, cap) loaded so far, in load order."""
        return list(self._runners)

    def prepare(self, settings: FrameSettings, subtasks: list[str]) -> None:
        """Export (if not cached) and load the graph ``settings`` run, so that the first frame does not wait for it
        (an export takes 20-60 s on a CPU core)."""
        self.runner(*self.graph(settings, subtasks))

    def run(self, x: torch.Tensor, settings: FrameSettings, subtasks: list[str]) -> tuple[dict[str, torch.Tensor], str,
                                                                                           float]:
        """Every task's output on ``x`` (the graph's tasks, a superset of the asked ones), the kind and cap run."""
        kind, cap = self.graph(settings, subtasks)
        return self.runner(kind, cap).run(x), kind, cap
