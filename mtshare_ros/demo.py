"""``mtshare demo``: the product end to end on the embedded default.

Renders a short synthetic camera sequence (MuJoCo), starts the real node in its own process from its
console script, streams the frames to it over ROS topics, records every output, and writes a
side-by-side picture (input | segmentation | depth | normals, ground truth underneath) and a summary
with delivered rate, latency and the accuracy of what came back.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.data.synthetic import ROOM_SEED_STRIDE
from mtshare_ros.ros.resources import use_fastdds_profile
from mtshare_ros.runtime.colorize import colorize_array
from mtshare_ros.sharing.loader import describe_checkpoint
from mtshare_ros.training.metrics import HEADLINE, build_metrics

SHIPPED_TRAINING_SEEDS = 10 * ROOM_SEED_STRIDE  # the shipped models' rooms: dataset seeds 10-13 (render_data_v3.sh)

log = logging.getLogger("mtshare.demo")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="mtshare demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=30, help="frames in the camera sequence (default 30)")
    p.add_argument("--fps", type=float, default=10.0, help="camera rate in Hz (default 10)")
    p.add_argument("--height", type=int, default=480, help="camera image height (default 480)")
    p.add_argument("--width", type=int, default=640, help="camera image width (default 640)")
    p.add_argument(
        "--seed",
        type=int,
        default=39,
        help="scene seed (default 39: a room no shipped model trained on; the shipped models' training rooms have "
        "seeds from 10,000,030 up, MODELS.md 'Data')",
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--checkpoint", default="default", help="checkpoint for the node (default: shipped weights)")
    return p.parse_args(argv)


def render_frames(args: argparse.Namespace) -> list:
    from mtshare_ros.data import render_sequence

    frames = render_sequence(args.seed, args.frames, args.height, args.width, fps=args.fps)
    return list(tqdm(frames, total=args.frames, desc="rendering camera sequence", unit="frame"))


def stream_through_node(frames: list, args: argparse.Namespace) -> tuple[dict, dict, list]:
    """Publish ``frames`` to a node process at ``args.fps``; return outputs by stamp, diagnostics, stamps."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from mtshare_ros.ros.conversions import image_to_array
    from mtshare_ros.ros.harness import CameraPublisher, Recorder, spin_until, start_node_process, stop_process

    ns = "/mtshare_demo"
    proc = start_node_process(
        ns, extra_ros_args=["-p", f"checkpoint:={args.checkpoint}"], log_path=args.out / "node.log"
    )
    rclpy.init()
    node = rclpy.create_node("mtshare_demo_camera")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        rec = Recorder(node, ns)
        cam = CameraPublisher(node, ns, fx=float(frames[0].K[0, 0]) * 640.0 / args.width)
        log.info("waiting for the node process (model loading)...")
        if not spin_until(ex, lambda: rec.connected() and cam.subscribed() and proc.poll() is None, 120):
            raise RuntimeError(f"node did not come up; see {args.out / 'node.log'}")
        spin_until(ex, lambda: False, 0.5)
        stamps = []
        period = 1.0 / args.fps
        start = time.monotonic()
        for i, f in enumerate(tqdm(frames, desc=f"streaming at {args.fps:g} Hz", unit="frame")):
            header = cam.publish(f.rgb)
            stamps.append(header.stamp.sec * 10**9 + header.stamp.nanosec)
            spin_until(ex, lambda i=i: time.monotonic() >= start + (i + 1) * period, period + 1.0)
        last = stamps[-1]
        spin_until(ex, lambda: any(_key(r.msg) == last for r in rec.messages["normals"]), 10)
        spin_until(ex, lambda: False, 1.2)  # one more diagnostics period
        outputs: dict[int, dict] = {}
        for name in ("segmentation", "depth", "normals"):
            for r in rec.messages[name]:
                outputs.setdefault(_key(r.msg), {})[name] = (image_to_array(r.msg), r.latency_ms)
        return outputs, rec.latest_diagnostics(), stamps
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop_process(proc)


def _key(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def accuracy(frames: list, stamps: list, outputs: dict) -> dict:
    """Metrics of the delivered outputs against the renderer's ground truth, at the output size."""
    meters = {t: build_metrics(t, len(SYNTHETIC_CLASSES)) for t in ("segmentation", "depth", "normals")}
    for f, s in zip(frames, stamps, strict=True):
        out = outputs.get(s, {})
        for task, (arr, _) in out.items():
            h, w = arr.shape[:2]
            if task == "segmentation":
                gt = cv2.resize(f.segmentation, (w, h), interpolation=cv2.INTER_NEAREST)
                meters[task].update(torch.from_numpy(arr)[None].long(), torch.from_numpy(gt)[None].long())
            elif task == "depth":
                gt = cv2.resize(np.nan_to_num(f.depth, nan=0.0), (w, h), interpolation=cv2.INTER_NEAREST)
                meters[task].update(torch.from_numpy(np.nan_to_num(arr, nan=0.0))[None], torch.from_numpy(gt)[None])
            else:
                gt = cv2.resize(np.nan_to_num(f.normals, nan=0.0), (w, h), interpolation=cv2.INTER_NEAREST)
                to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]  # noqa: E731
                meters[task].update(to_t(arr), to_t(gt))
    return {t: {k: m.compute()[k] for k in HEADLINE[t]} for t, m in meters.items()}


def side_by_side(frame, out: dict) -> np.ndarray:
    """Two rows at the output size: prediction and ground truth (input | seg | depth | normals)."""
    seg, _ = out["segmentation"]
    depth, _ = out["depth"]
    normals, _ = out["normals"]
    h, w = seg.shape
    rgb = cv2.resize(frame.rgb, (w, h), interpolation=cv2.INTER_AREA)
    gt_depth = cv2.resize(np.where(frame.depth > 0, frame.depth, np.nan), (w, h), interpolation=cv2.INTER_NEAREST)
    vmax = float(np.nanpercentile(gt_depth, 98)) if np.isfinite(gt_depth).any() else None
    n = len(SYNTHETIC_CLASSES)
    pred_row = [rgb, colorize_array("segmentation", seg, n), colorize_array("depth", depth, n, vmax),
                colorize_array("normals", normals, n)]
    gt_row = [
        rgb,
        colorize_array("segmentation", cv2.resize(frame.segmentation, (w, h), interpolation=cv2.INTER_NEAREST), n),
        colorize_array("depth", gt_depth, n, vmax),
        colorize_array("normals", cv2.resize(frame.normals, (w, h), interpolation=cv2.INTER_NEAREST), n),
    ]
    labels = ["input", "segmentation", "depth", "normals"]
    for img, label in zip(pred_row, labels, strict=True):
        cv2.putText(img, f"{label} (node)" if label != "input" else label, (6, 18), 0, 0.5, (255, 255, 255), 1)
    for img, label in zip(gt_row[1:], labels[1:], strict=True):
        cv2.putText(img, f"{label} (truth)", (6, 18), 0, 0.5, (255, 255, 255), 1)
    return np.vstack([np.hstack(pred_row), np.hstack(gt_row)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    use_fastdds_profile()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    frames = render_frames(args)
    outputs, diag, stamps = stream_through_node(frames, args)
    complete = [s for s in stamps if len(outputs.get(s, {})) == 3]
    if not complete:
        raise SystemExit(f"the node returned no complete outputs; see {args.out / 'node.log'}")
    best = complete[-1]
    picture = side_by_side(frames[stamps.index(best)], outputs[best])
    cv2.imwrite(str(args.out / "demo.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    latencies = [lat for s in complete for _, lat in outputs[s].values()]
    summary = {
        "frames_sent": len(frames),
        "frames_with_all_outputs": len(complete),
        "camera_fps": args.fps,
        "node_diagnostics": diag,
        "latency_ms_p50": float(np.percentile(latencies, 50)),
        "latency_ms_p95": float(np.percentile(latencies, 95)),
        "accuracy_vs_ground_truth": accuracy(frames, stamps, outputs),
        "model": describe_checkpoint(args.checkpoint),
        "scene_seed": args.seed,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    (args.out / "summary.md").write_text(summary_markdown(summary))
    print(summary_markdown(summary))
    print(f"picture: {(args.out / 'demo.png').resolve()}\nsummary: {(args.out / 'summary.md').resolve()}")
    return 0


def _sharing_line(d: dict) -> str:
    if d.get("sharing") != "1.000":
        return "- task sharing: off (independent models)"
    def recomputed(task: str) -> str:
        if float(d.get(f"own_blocks_{task}", 1)) == 0:
            return f"{task}: none (it shares every block, its own head only)"
        return f"{task} {float(d[f'recomputed_{task}']):.0%}"

    return (
        f"- task sharing: on; tokens recomputed: {recomputed('depth')}, {recomputed('normals')}; executed "
        f"{float(d['gmacs_executed']):.2f} GMACs vs {float(d['gmacs_independent']):.2f} for independent models "
        f"({float(d['macs_saved_fraction']):.0%} saved)"
    )


def summary_markdown(s: dict) -> str:
    d = s["node_diagnostics"]
    acc = s["accuracy_vs_ground_truth"]
    lines = [
        "# mtshare demo",
        "",
        f"Model: {s['model']}",
        "",
        f"Scene: synthetic room {s['scene_seed']}"
        + (" (held out: no shipped model trained on it)" if s["scene_seed"] < SHIPPED_TRAINING_SEEDS else ""),
        "",
        f"- frames sent at {s['camera_fps']:g} Hz: {s['frames_sent']}; "
        f"with all outputs back: {s['frames_with_all_outputs']}; dropped by the node (latest-frame policy): "
        f"{d.get('frames_dropped', '?')}",
        f"- node rate {d.get('fps', '?')} fps; inference p50 {d.get('inference_ms_p50', '?')} ms",
        f"- latency stamp -> receipt: p50 {s['latency_ms_p50']:.0f} ms, p95 {s['latency_ms_p95']:.0f} ms",
        _sharing_line(d),
        "",
        "| task | metric | value |",
        "|---|---|---|",
    ]
    for task, metrics in acc.items():
        for k, v in metrics.items():
            lines.append(f"| {task} | {k} | {v:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
