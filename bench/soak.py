"""Soak benchmark: a node process fed at camera rate for a long run, with parameter changes and a camera restart
in the middle. Does it keep up, stay flat in memory and fail no frame?

    .venv/bin/python bench/soak.py --minutes 30      # the committed result (or --frames 20000)
    .venv/bin/python bench/soak.py --minutes 2       # a short check

Per window (one minute; ``--window``): frames sent and delivered, latency p50/p95/p99 (stamp -> receipt in this
process). At the end: resident memory of the node process after warm-up and at the end, failed and rejected
frames from its /diagnostics. Writes bench/results/soak.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import Image
from tqdm import tqdm

from mtshare_ros.ros.harness import CameraPublisher, pattern_frame, spin_until, start_node_process, stop_process
from mtshare_ros.ros.resources import use_fastdds_profile

# bench/ is not a package: run as ``python bench/soak.py`` its siblings import through sys.path[0]
from environment import environment_line, environment_record

ROOT = Path(__file__).resolve().parent.parent
NS = "/soak"
WARMUP_S = 30.0
GOALS = {"memory_growth": 0.01, "failed_frames": 0}


def rss_mb(pid: int) -> float:
    """Resident memory of a process (MiB), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def set_param(node, ex, name: str, value) -> bool:
    """Set one parameter of the node process through its service (what `ros2 param set` does)."""
    client = node.create_client(SetParameters, f"{NS}/mtshare/set_parameters")
    try:
        if not client.wait_for_service(timeout_sec=10):
            return False
        if isinstance(value, list):
            pv = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=value)
        elif isinstance(value, bool):
            pv = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
        else:
            pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value))
        fut = client.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
        spin_until(ex, fut.done, 10)
        return bool(fut.done() and fut.result().results[0].successful)
    finally:
        node.destroy_client(client)


def events(total_s: float) -> list[tuple[float, str, Any]]:
    """What happens when, as fractions of the run: parameter changes, and a camera that stops for 3 s and comes
    back at another resolution (a driver restart), then once more at the first resolution, so that the run ends in
    the configuration it was warmed up in and memory at the end against after warm-up measures what stayed."""
    return [
        (0.30, "tasks", ["segmentation"]),
        (0.35, "tasks", ["segmentation", "depth", "normals"]),
        (0.40, "sharing.threshold", 0.1),
        (0.45, "temporal.enabled", True),
        (0.50, "restart", (360, 640)),
        (0.65, "restart", (480, 640)),
        (0.70, "temporal.enabled", False),
        (0.75, "sharing.threshold", 0.05),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--frames", type=int, default=None, help="stop after this many frames instead")
    ap.add_argument("--hz", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=60.0, help="seconds per reported window")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "soak"))
    args = ap.parse_args(argv)
    total_s = args.frames / args.hz if args.frames else args.minutes * 60.0  # expected; --frames runs to its count
    use_fastdds_profile()
    rclpy.init()
    log = Path(args.out).with_name(".soak_node.log")
    proc = start_node_process(NS, log_path=log)
    node = rclpy.create_node("soak_camera")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    received: list[tuple[float, float]] = []  # (monotonic receipt, latency ms)
    diag: dict[str, str] = {}

    def on_seg(msg: Image) -> None:
        received.append((time.monotonic(), (node.get_clock().now() - Time.from_msg(msg.header.stamp)).nanoseconds
                         * 1e-6))

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if st.name.startswith(NS + "/"):
                diag.clear()
                diag.update({kv.key: kv.value for kv in st.values})

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    sub = node.create_subscription(Image, f"{NS}/segmentation", on_seg, qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    cam = CameraPublisher(node, NS)
    try:
        if not spin_until(ex, lambda: sub.get_publisher_count() > 0 and cam.subscribed(), 120):
            raise SystemExit(f"node did not come up: {log.read_text()[-2000:]}")
        frames = {size: [pattern_frame(s, *size) for s in range(8)] for size in ((480, 640), (360, 640))}
        size = (480, 640)
        plan = events(total_s)
        done_events: list[dict[str, Any]] = []
        sent, start = 0, time.monotonic()
        sent_at: list[float] = []
        rss_start = None
        rss_samples: list[tuple[float, float]] = []  # (monotonic, MiB) once a second: where memory moves
        restart_until = 0.0
        def progress(now: float) -> float:
            """How far the run is: by frames sent with --frames (the camera may not reach its rate), else by time."""
            return sent / args.frames if args.frames else now / total_s

        with tqdm(total=args.frames or int(total_s * args.hz), desc="soak", unit="frame") as bar:
            while progress(time.monotonic() - start) < 1.0:
                now = time.monotonic() - start
                if rss_start is None and now >= min(WARMUP_S, total_s / 4):
                    rss_start = rss_mb(proc.pid)
                if not rss_samples or time.monotonic() - rss_samples[-1][0] >= 1.0:
                    rss_samples.append((time.monotonic(), rss_mb(proc.pid)))
                while plan and progress(now) >= plan[0][0]:
                    _, name, value = plan.pop(0)
                    if name == "restart":
                        restart_until, size = now + 3.0, value
                        done_events.append({"t_s": round(now, 1),
                                            "event": f"camera stops 3 s, restarts at {value[1]}x{value[0]}"})
                    else:
                        ok = set_param(node, ex, name, value)
                        done_events.append({"t_s": round(now, 1), "event": f"{name} := {value}", "accepted": ok})
                if now >= restart_until:
                    cam.publish(frames[size][sent % 8], frame_id="soak_cam")
                    sent_at.append(time.monotonic())
                    sent += 1
                    bar.update(1)
                due = start + (now // (1.0 / args.hz) + 1) * (1.0 / args.hz)  # the next tick of the camera clock
                spin_until(ex, lambda d=due: time.monotonic() >= d, 1.0)
        spin_until(ex, lambda: False, 3.0)  # drain, and a last diagnostics message
        rss_end = rss_mb(proc.pid)
    finally:
        node.destroy_node()
        stop_process(proc)
        rclpy.try_shutdown()
    duration = time.monotonic() - start
    windows = []
    for w0 in np.arange(0.0, duration, args.window):
        t0, t1 = start + w0, start + min(w0 + args.window, duration)
        lat = np.array([lt for t, lt in received if t0 <= t < t1])
        n_sent = sum(1 for t in sent_at if t0 <= t < t1)
        pct = {f"latency_ms_p{q}": float(np.percentile(lat, q)) for q in (50, 95, 99)} if lat.size else {}
        rss = [m for t, m in rss_samples if t0 <= t < t1]
        windows.append({"start_s": round(float(w0), 1), "sent": n_sent, "delivered": int(lat.size), **pct,
                        **({"rss_mb_end": rss[-1]} if rss else {})})
    growth = (rss_end - rss_start) / rss_start if rss_start else float("nan")
    result = {
        "benchmark": "soak",
        "command": " ".join(["python bench/soak.py", *(argv if argv is not None else sys.argv[1:])]),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment_record(),
        "camera_hz": args.hz,
        "duration_s": round(duration, 1),
        "frames_sent": sent,
        "frames_delivered": len(received),
        "node_diagnostics_at_end": diag,
        "events": done_events,
        "rss_mb_after_warmup": rss_start,
        "rss_mb_end": rss_end,
        "memory_growth": growth,
        "windows": windows,
    }
    failed = int(diag.get("frames_failed", -1))
    result["goals"] = {
        "memory growth < 1% after warm-up": {"value": growth, "met": bool(growth < GOALS["memory_growth"])},
        "zero failed frames": {"value": failed, "met": failed == 0},
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# Soak: a node process at camera rate for a long run",
        "",
        f"- environment: {environment_line(r['environment'])}",
        f"- {r['duration_s']:.0f} s, camera at {r['camera_hz']:g} Hz ({r['frames_sent'] / r['duration_s']:.1f} Hz "
        "reached; 640x480 rgb8, all outputs computed, segmentation "
        f"subscribed): {r['frames_sent']} frames sent, {r['frames_delivered']} delivered (the latest-frame policy "
        "drops what the node cannot keep up with)",
        f"- node memory (RSS): {r['rss_mb_after_warmup']:.0f} MiB after warm-up, {r['rss_mb_end']:.0f} MiB at the end "
        f"({100 * r['memory_growth']:+.2f}%)",
        "- node diagnostics at the end: "
        + ", ".join(f"{k.removeprefix('frames_')} {r['node_diagnostics_at_end'].get(k)}"
                    for k in ("frames_processed", "frames_dropped", "frames_failed", "frames_rejected")),
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *(f"| {k} | {v['value']} | {'yes' if v['met'] else 'NO'} |" for k, v in r["goals"].items()),
        "",
        "Events: " + "; ".join(f"{e['t_s']} s {e['event']}" + ("" if e.get("accepted", True) else " (REFUSED)")
                               for e in r["events"]),
        "",
        "| window start (s) | sent | delivered | latency p50 / p95 / p99 ms | node RSS at its end (MiB) |",
        "|---|---|---|---|---|",
    ]
    for w in r["windows"]:
        lat = (f"{w['latency_ms_p50']:.0f} / {w['latency_ms_p95']:.0f} / {w['latency_ms_p99']:.0f}"
               if "latency_ms_p50" in w else "-")
        rss = f"{w['rss_mb_end']:.0f}" if "rss_mb_end" in w else "-"
        lines.append(f"| {w['start_s']:.0f} | {w['sent']} | {w['delivered']} | {lat} | {rss} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
