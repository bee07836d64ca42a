"""GPU check (issue 27): everything that needs an accelerator, measured in one prepared run of a few minutes.

No GPU has been lent to this project so far; this is what ``scripts/gpu_check.sh`` runs when one is. It needs
only PyTorch (and, for the ONNX Runtime part, onnxruntime with its CUDA / TensorRT providers): not ROS, not
MuJoCo. Parts, each with its own time allowance, each reported as skipped (with why) when it cannot run:

1. ``models``: the independent models, the multi-task model and the shared engine (threshold and fixed-budget
   modes) at 240x320, 480x640 and 720x1280, float32, float16 and bfloat16 (weights cast), ms per frame by CUDA
   events (median), deviation from float32 (labels equal %, depth relative difference, normals deg);
2. ``cuda_graph``: the fixed-budget engine captured once as a CUDA graph and replayed (fixed shapes make it
   capturable), against the same engine launched eagerly;
3. ``onnxruntime``: the exported graphs (``mtshare export``) on the CUDA and TensorRT execution providers
   when installed (TensorRT engines cached in ``--trt-cache``, fp16);
4. ``pipeline``: what a node's frame costs with every output (maps, colours, point cloud): the package's frame
   pipeline (``runtime/pipeline.py``, what the node calls between its callback and its publishers) at 640x480
   and 1280x720, per-frame sharing, then task + temporal sharing on a panning sequence.

Writes <out-dir>/gpu.{json,md} with the torch version, the device and the CPU (bench/environment.py).
``--device cpu --quick`` runs every part that can run without a GPU in a minute: the smoke test of this file.

    PYTHONPATH=$PWD python3 bench/gpu.py                        # on the GPU machine (scripts/gpu_check.sh)
    .venv/bin/python bench/gpu.py --device cpu --quick --out-dir /tmp/gpu   # smoke run here
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mtshare_ros.models.vit import run_tasks
from mtshare_ros.runtime.camera import CameraModel
from mtshare_ros.runtime.pipeline import CameraPipeline
from mtshare_ros.runtime.predictor import Predictor
from mtshare_ros.runtime.settings import FrameSettings, SharingSettings, TemporalSettings
from mtshare_ros.sharing.loader import load_models

from environment import environment_line, environment_record

log = logging.getLogger("gpu")
ROOT = Path(__file__).resolve().parent.parent
TASKS = ("segmentation", "depth", "normals")
Outputs = dict[str, torch.Tensor]


class Timer:
    """Median ms of a callable on ``device``: CUDA events on a GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device, frames: int, warmup: int) -> None:
        self.device, self.frames, self.warmup = device, frames, warmup

    def __call__(self, fn: Callable[[], Any]) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        for _ in range(self.frames):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def deviation(out: Outputs, ref: Outputs) -> dict[str, float]:
    """From float32: labels equal %, depth mean relative difference, normals mean angle (deg)."""
    o = {t: v.float() for t, v in out.items()}
    r = {t: v.float() for t, v in ref.items()}
    cos = (F.normalize(o["normals"], dim=1) * F.normalize(r["normals"], dim=1)).sum(1).clamp(-1, 1)
    labels = (o["segmentation"].argmax(1) == r["segmentation"].argmax(1)).float().mean()
    return {"labels_equal_pct": float(labels * 100),
            "depth_rel_diff": float(((o["depth"] - r["depth"]).abs() / r["depth"].abs().clamp_min(1e-3)).mean()),
            "normals_deg": float(torch.rad2deg(torch.acos(cos)).mean())}


def model_runs(device: torch.device) -> dict[str, tuple[Callable[[torch.Tensor], Outputs], list[torch.nn.Module]]]:
    """Each model kind's forward on ``device`` and the modules to cast."""
    independent = load_models("independent", shared=False)
    multitask = load_models("multitask", shared=False)
    dense = {t: independent.dense[t].eval().to(device) for t in TASKS}
    mt = {t: multitask.dense[t].eval().to(device) for t in TASKS}
    engine = load_models("default").shared.eval().to(device)
    s = SharingSettings()
    thr = s.thresholds(list(TASKS[1:]))
    return {
        "independent": (lambda x: {t: m(x) for t, m in dense.items()}, list(dense.values())),
        "multitask": (lambda x: run_tasks(mt, x), list(mt.values())),
        "engine_threshold": (lambda x: engine(x, thr, s.max_token_fraction, sync_free=False)[0], [engine]),
        "engine_fixed": (lambda x: engine(x, 0.0, s.max_token_fraction, sync_free=True)[0], [engine]),
    }


def part_models(device: torch.device, sizes: list[tuple[int, int]], timer: Timer, dtypes: list[str]) -> dict:
    runs = model_runs(device)
    res: dict[str, Any] = {}
    with torch.inference_mode():
        for h, w in sizes:
            x32 = torch.randn(1, 3, h, w, device=device, generator=torch.Generator(device).manual_seed(0))
            for kind, (run, modules) in runs.items():
                ref = run(x32)
                for dt in dtypes:
                    dtype = getattr(torch, {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[dt])
                    for m in modules:
                        m.to(dtype)
                    x = x32.to(dtype)
                    try:
                        ms = timer(lambda run=run, x=x: run(x))
                        entry = {"ms": ms, "fps": 1e3 / ms, **deviation(run(x), ref)}
                    except Exception as exc:  # a dtype the device cannot run is a result, not a crash
                        entry = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
                    finally:
                        for m in modules:
                            m.to(torch.float32)
                    res[f"{h}x{w}/{kind}/{dt}"] = entry
                    log.info("%dx%d %s %s: %s", h, w, kind, dt, entry)
    return res


def part_cuda_graph(device: torch.device, sizes: list[tuple[int, int]], timer: Timer) -> dict:
    """The fixed-budget engine as one CUDA graph: capture once per size, replay against eager launches."""
    if device.type != "cuda":
        return {"skipped": "no CUDA device"}
    run, modules = model_runs(device)["engine_fixed"]
    for m in modules:
        m.half()
    res = {}
    with torch.inference_mode():
        for h, w in sizes:
            static_x = torch.randn(1, 3, h, w, device=device, dtype=torch.float16)
            eager_ms = timer(lambda static_x=static_x: run(static_x))
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    run(static_x)
            torch.cuda.current_stream().wait_stream(stream)
            try:
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    static_out = run(static_x)
                ref = run(static_x)
                graph.replay()
                torch.cuda.synchronize()
                res[f"{h}x{w}"] = {"eager_ms": eager_ms, "graph_ms": timer(graph.replay),
                                   **deviation(static_out, ref)}
            except Exception as exc:
                res[f"{h}x{w}"] = {"eager_ms": eager_ms, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            log.info("cuda graph %dx%d: %s", h, w, res[f"{h}x{w}"])
    return res


def part_onnxruntime(device: torch.device, timer: Timer, trt_cache: Path, height: int) -> dict:
    try:
        import onnxruntime as ort

        from mtshare_ros.export.onnx import export_onnx
        from mtshare_ros.runtime.onnx_backend import OnnxRunner
    except ImportError as exc:
        return {"skipped": f"not importable: {exc}"}
    providers = ort.get_available_providers()
    wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in providers]
    if not wanted:
        return {"skipped": f"no CUDA/TensorRT execution provider (available: {providers})"}
    res: dict[str, Any] = {"providers": providers}
    runs = model_runs(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        for kind, model in (("multitask", "multitask"), ("engine", "engine_fixed"), ("independent", "independent")):
            cap = SharingSettings().max_token_fraction
            path = export_onnx("default", kind, Path(tmp), height=height, mode="fixed", cap=cap)
            x = torch.randn(1, 3, height, height * 4 // 3)
            with torch.inference_mode():
                ref = runs[model][0](x)
            for provider in wanted:
                backend = "tensorrt" if provider.startswith("Tensorrt") else "cuda"
                try:
                    runner = OnnxRunner(path, backend="onnxruntime", device=backend, trt_cache=trt_cache)
                    out = runner.run(x)
                    res[f"{model}/{backend}"] = {"ms": timer(lambda runner=runner, x=x: runner.run(x)),
                                                 **deviation(out, ref)}
                except Exception as exc:
                    res[f"{model}/{backend}"] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                log.info("onnxruntime %s %s: %s", model, backend, res[f"{model}/{backend}"])
    return res


def pan_frames(h: int, w: int, n: int, step_px: int) -> list[np.ndarray]:
    """A textured panorama seen through a window moving ``step_px`` per frame: a panning camera."""
    g = np.random.default_rng(0)
    wide = w + n * step_px
    base = g.integers(0, 255, (h // 48 + 2, wide // 48 + 2, 3), dtype=np.uint8)  # smooth: a room, not noise
    pano = cv2.resize(base, (wide, h), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(pano[:, i * step_px:i * step_px + w]) for i in range(n)]


def part_pipeline(device: str, sizes: list[tuple[int, int]], frames: int) -> dict:
    """A node's frame with every output, through the frame pipeline the node runs (no ROS transport)."""
    predictor = Predictor("default", device)
    wanted = ("segmentation/color", "depth/color", "normals/color", "points")
    res: dict[str, Any] = {}
    variants = {"per_frame": FrameSettings(),
                "task_temporal": FrameSettings(temporal=TemporalSettings(enabled=True))}
    for h, w in sizes:
        seq = pan_frames(h, w, frames + 5, 1)
        for name, settings in variants.items():
            pipe = CameraPipeline(predictor)
            f = 0.9 * w  # a Kinect-like field of view, so that points are made
            k = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
            pipe.set_camera(CameraModel(k, np.hstack([k, np.zeros((3, 1))]), np.eye(3), (0.0,) * 5, "plumb_bob", h, w))
            predictor.reset_stream(pipe.cache)
            times, keys = [], 0
            for i, rgb in enumerate(seq):
                t0 = time.perf_counter()
                result = pipe.process(lambda rgb=rgb: rgb, i / 30.0, "camera_optical_frame", settings, wanted)
                if predictor.device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 5:
                    times.append((time.perf_counter() - t0) * 1e3)
                    keys += int(result.prediction.stats.get("keyframe", 1.0))
            missing = [o for o in (*TASKS, *wanted) if o not in result.outputs]
            res[f"{h}x{w}/{name}"] = {"p50_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)),
                                     "fps": 1e3 / statistics.median(times), "keyframe_fraction": keys / len(times),
                                     "missing_outputs": missing}
            log.info("pipeline %dx%d %s: %s", h, w, name, res[f"{h}x{w}/{name}"])
    return res


def markdown(result: dict[str, Any]) -> str:
    lines = ["# GPU check (issue 27)", "", f"Machine: {environment_line(result['environment'])}.", "",
             f"Command: `{result['command']}`; {result['elapsed_s']:.0f} s.", ""]
    for part, body in result["parts"].items():
        lines += [f"## {part}", ""]
        if "skipped" in body or "error" in body:
            lines += [f"{'Skipped' if 'skipped' in body else 'Failed'}: {body.get('skipped') or body.get('error')}", ""]
            continue
        keys = sorted({k for v in body.values() if isinstance(v, dict) for k in v})
        lines += ["| row | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for row, v in body.items():
            if not isinstance(v, dict):
                lines.append(f"| {row} | {v} |")
                continue
            cells = [f"{v[k]:.3g}" if isinstance(v.get(k), float) else str(v.get(k, "")) for k in keys]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="gpu", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (smoke run)")
    ap.add_argument("--parts", nargs="+", default=["models", "cuda_graph", "onnxruntime", "pipeline"])
    ap.add_argument("--frames", type=int, default=50, help="timed frames per measurement")
    ap.add_argument("--quick", action="store_true", help="smoke run: one small size, few frames, fp32 only")
    ap.add_argument("--trt-cache", default=str(Path(tempfile.gettempdir()) / "mtshare_trt_cache"))
    ap.add_argument("--out-dir", default=str(ROOT / "bench" / "results"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device (use --device cpu for the smoke run)")
    t_start = time.perf_counter()
    sizes = [(240, 320)] if args.quick else [(240, 320), (480, 640), (720, 1280)]
    node_sizes = [(240, 320)] if args.quick else [(480, 640), (720, 1280)]
    frames = 3 if args.quick else args.frames
    timer = Timer(device, frames, 1 if args.quick else 10)
    dtypes = ["fp32"] if args.quick else ["fp32", "fp16", "bf16"]
    parts: dict[str, Callable[[], dict]] = {
        "models": lambda: part_models(device, sizes, timer, dtypes),
        "cuda_graph": lambda: part_cuda_graph(device, sizes, timer),
        "onnxruntime": lambda: part_onnxruntime(device, timer, Path(args.trt_cache), 240),
        "pipeline": lambda: part_pipeline(args.device, node_sizes, frames * 2),
    }
    result: dict[str, Any] = {"environment": environment_record(), "parts": {},
                              "command": " ".join(["bench/gpu.py", *(argv if argv is not None else sys.argv[1:])])}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.parts:
        t0 = time.perf_counter()
        try:
            result["parts"][name] = parts[name]()
        except Exception as exc:  # one part failing must not lose the others' numbers
            traceback.print_exc()
            result["parts"][name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        log.info("part %s: %.0f s", name, time.perf_counter() - t0)
        result["elapsed_s"] = time.perf_counter() - t_start
        (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")  # after every part: a cut run keeps them
        (out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
