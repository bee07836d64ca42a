"""Run an exported graph with ONNX Runtime: a session per graph, torch tensors in and out.

The one place an ``onnxruntime.InferenceSession`` is built (the predictor's backend and the benchmarks use it).
Providers: ``providers_for(device)`` picks CPU, or CUDA / TensorRT when the device is a GPU and the installed
onnxruntime has them; a provider asked for that is not there is an error naming what is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from mtshare_ros.export.onnx import INPUT_NAME, read_metadata

TRT_CACHE_ENV = "MTSHARE_TRT_CACHE"


class BackendUnavailable(RuntimeError, ImportError):
    """onnxruntime (or openvino), or an execution provider asked for, is not installed: the message says which and
    what is. An ImportError too, so that a caller that skips what is not installed skips this."""


def _ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "backend onnxruntime: the onnxruntime package is not installed (pip install onnxruntime, or "
            "onnxruntime-gpu for CUDA/TensorRT)") from exc
    return onnxruntime


def trt_cache_dir() -> Path:
    """TensorRT engine cache: ``$MTSHARE_TRT_CACHE``, else ``~/.cache/mtshare_ros/tensorrt``."""
    return Path(os.environ.get(TRT_CACHE_ENV, Path.home() / ".cache" / "mtshare_ros" / "tensorrt"))


def providers_for(device: str, tensorrt: bool | None = None, trt_cache: str | Path | None = None) -> list:
    """Execution providers for a torch device string: CPU for ``cpu``; for ``cuda``/``cuda:N`` TensorRT (fp16,
    engine cache in ``trt_cache`` or ``trt_cache_dir``) when installed, then CUDA, then CPU (for the few nodes they
    leave); ``auto``: the GPU ones when present, else CPU. ``tensorrt``: None uses TensorRT when installed, True
    requires it, False leaves it out (CUDA alone). A GPU asked for without its provider is refused."""
    ort = _ort()
    have = ort.get_available_providers()
    gpu = device.startswith("cuda") or (device == "auto" and "CUDAExecutionProvider" in have)
    if not gpu:
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in have:
        raise BackendUnavailable(f"backend onnxruntime on {device}: no CUDAExecutionProvider in this onnxruntime "
                                 f"(available: {have}); install onnxruntime-gpu or use device cpu")
    index = int(device.split(":")[1]) if ":" in device else 0
    if tensorrt and "TensorrtExecutionProvider" not in have:
        raise BackendUnavailable(f"backend onnxruntime on {device}: no TensorrtExecutionProvider in this onnxruntime "
                                 f"(available: {have})")
    out: list = []
    if "TensorrtExecutionProvider" in have and tensorrt is not False:
        cache = Path(trt_cache) if trt_cache else trt_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        out.append(("TensorrtExecutionProvider", {"device_id": index, "trt_fp16_enable": True,
                                                  "trt_engine_cache_enable": True,
                                                  "trt_engine_cache_path": str(cache)}))
    out += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return out


class OnnxRunner:
    """An exported graph in an ONNX Runtime session: ``run(x)`` takes the (1, 3, H, W) float32 image tensor and
    returns ``{task: tensor}`` on ``x``'s device (CPU tensors are shared with onnxruntime's outputs, not copied).
    ``threads``: intra-op threads (0: onnxruntime's choice)."""

    def __init__(self, path: str | Path, providers: list | None = None, threads: int = 0) -> None:
        ort = _ort()
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        providers = providers or ["CPUExecutionProvider"]
        have = ort.get_available_providers()
        missing = [p if isinstance(p, str) else p[0] for p in providers]
        missing = [p for p in missing if p not in have]
        if missing:
            raise BackendUnavailable(f"onnxruntime has no {missing} (available: {have})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        self.outputs = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.meta["input_height"]
        if x.ndim != 4 or x.shape[:3] != (1, 3, h) or x.shape[3] % self.meta["patch_size"]:
            raise ValueError(f"{self.path.name} takes (1, 3, {h}, W), W a multiple of {self.meta['patch_size']}; "
                             f"got {tuple(x.shape)}")
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        outs = self.session.run(self.outputs, {INPUT_NAME: arr})
        return {name: torch.from_numpy(o).to(x.device) for name, o in zip(self.outputs, outs, strict=True)}


def openvino_available():
    """The openvino module, or ``BackendUnavailable`` saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise BackendUnavailable("backend openvino: the openvino package is not installed (pip install openvino)"
                                 ) from exc
    return openvino


class OpenVinoRunner:
    """An exported graph compiled by OpenVINO for the CPU; ``run`` as ``OnnxRunner.run``. ``threads``: inference
    threads (0: OpenVINO's choice). float32 inference asked for explicitly: on a CPU with bf16 units OpenVINO
    would otherwise run bf16 (measured here: logits off by 9e-3, against 2e-5 in float32)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        ov = openvino_available()
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        config: dict = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.model = ov.Core().compile_model(str(self.path), "CPU", config)
        self.outputs = [o.get_any_name() for o in self.model.outputs]
        self.request = self.model.create_infer_request()

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        result = self.request.infer({INPUT_NAME: arr})
        return {name: torch.from_numpy(np.array(result[out])).to(x.device)
                for name, out in zip(self.outputs, self.model.outputs, strict=True)}
