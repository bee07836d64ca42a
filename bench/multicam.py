"""Several cameras: one node serving N cameras against N single-camera node processes, 640x480 at 15 Hz each.

Side by side in one run, for N = 1, 2, 4 (``--cameras``): one node with ``cameras: [c0 .. cN-1]`` and N processes
of one camera each; each without and with a competing CPU-bound process (a bounded single-thread busy loop on one
core that the benchmark starts and stops); and the latency budget (``latency_budget_ms``) at 2 cameras with the
competitor. Per camera: delivered fps and latency p50/p95 (header stamp -> receipt of its segmentation); per
layout: CPU seconds per second and resident memory of the node process(es). Then the outputs check: every camera
of one 4-camera node against one single-camera node fed the same frames with the same settings (labels on
>= 99.9% of pixels, depth within 1e-4 relative: the batched pass may reorder float sums). Writes
bench/results/multicam.json and .md (or ``--out``), with torch version and CPU capability.

    .venv/bin/python bench/multicam.py            # the default run: <= 8 minutes on 2 idle cores
    .venv/bin/python bench/multicam.py --quick    # 1 and 2 cameras, a few seconds each: checks the rig end to end
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
import torch
from rclpy.executors import SingleThreadedExecutor
from tqdm import tqdm

from mtshare_ros.ros.conversions import image_to_array
from mtshare_ros.ros.harness import (
    CameraPublisher,
    Recorder,
    pattern_frame,
    spin_until,
    start_node_process,
    stop_process,
)
from mtshare_ros.ros.resources import use_fastdds_profile

# bench/ is not a package: run as ``python bench/multicam.py`` its siblings import through sys.path[0]
from environment import environment_record

RESULTS = Path(__file__).resolve().parent / "results"
HZ = 15.0
H, W = 480, 640
OUTPUTS = ("segmentation", "depth")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_competitor(seconds: float) -> subprocess.Popen:
    """A single-thread busy loop pinned to core 0, bounded to ``seconds`` (it ends by itself if we die)."""
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"

    def pin() -> None:
        os.sched_setaffinity(0, {0})

    return subprocess.Popen([sys.executable, "-c", code], preexec_fn=pin)


class Layout:
    """Node process(es) serving ``n`` cameras: one node (``single_node``) or one process per camera."""

    def __init__(self, tag: str, n: int, one_node: bool, out_dir: Path, extra: list[str]) -> None:
        self.node = rclpy.create_node(f"bench_mc_{tag}")
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(self.node)
        self.procs, self.rec, self.cam, self.logs = [], [], [], []
        names = [f"c{i}" for i in range(n)]
        self.diag_of: list[tuple[int, str]] = []  # per camera: (recorder of its node's namespace, camera name)
        if one_node:
            ns = f"/mc_{tag}"
            log = out_dir / f".multicam_{tag}.log"
            self.procs.append(start_node_process(ns, extra_ros_args=["-p", f"cameras:=[{', '.join(names)}]", *extra],
                                                 log_path=log))
            self.logs.append(log)
            topics = [f"{ns}/{c}" for c in names]
            self.node_rec = Recorder(self.node, ns, outputs=())
            self.diag_of = [(-1, c) for c in names]
        else:
            topics = []
            for i in range(n):
                ns = f"/mc_{tag}_{i}"
                log = out_dir / f".multicam_{tag}_{i}.log"
                self.procs.append(start_node_process(ns, extra_ros_args=list(extra), log_path=log))
                self.logs.append(log)
                topics.append(ns)
                self.diag_of.append((i, ""))
        self.rec = [Recorder(self.node, t, outputs=OUTPUTS) for t in topics]
        self.cam = [CameraPublisher(self.node, t) for t in topics]
        ok = spin_until(self.ex, lambda: all(r.connected() for r in self.rec) and all(c.subscribed() for c in self.cam),
                        240)
        if not ok:
            raise RuntimeError(f"nodes did not come up: {self.logs[0].read_text()[-2000:]}")
        spin_until(self.ex, lambda: False, 1.0)

    def close(self) -> None:
        for p in self.procs:
            stop_process(p)
        self.node.destroy_node()


def stream(layout: Layout, seconds: float, desc: str) -> dict:
    """Every camera at 15 Hz for ``seconds``; per camera fps and latency, the processes' CPU and memory."""
    frames = [pattern_frame(s, H, W) for s in range(6)]
    for r in layout.rec:
        r.messages.clear()
    cpu0 = sum(cpu_seconds(p.pid) for p in layout.procs)
    period, start, k = 1.0 / HZ, time.monotonic(), 0
    with tqdm(total=int(seconds * HZ), desc=desc, unit="round", leave=False) as bar:
        while time.monotonic() - start < seconds:
            for i, cam in enumerate(layout.cam):
                cam.publish(frames[(k + i) % len(frames)])
            k += 1
            bar.update(1)
            spin_until(layout.ex, lambda kk=k: time.monotonic() >= start + kk * period, period + 1.0)
    wall = time.monotonic() - start
    spin_until(layout.ex, lambda: False, 2.0)
    cpu = (sum(cpu_seconds(p.pid) for p in layout.procs) - cpu0) / wall
    cams = []
    for rec, (which, camera) in zip(layout.rec, layout.diag_of, strict=True):
        got = [m for m in rec.messages["segmentation"] if m.received - start <= wall + 2.0]
        lat = np.array([m.latency_ms for m in got]) if got else np.array([np.nan])
        diag = (layout.node_rec if which < 0 else rec).latest_diagnostics(camera)
        cams.append({"sent": k, "delivered": len(got), "fps": len(got) / wall,
                     "latency_ms_p50": float(np.percentile(lat, 50)), "latency_ms_p95": float(np.percentile(lat, 95)),
                     "budget_state": diag.get("budget_state", ""), "threads": diag.get("threads", ""),
                     "starved": diag.get("starved", "")})
    return {"wall_s": wall, "cpu_cores_used": cpu, "rss_mb": sum(rss_mb(p.pid) for p in layout.procs),
            "cameras": cams, "fps_total": sum(c["fps"] for c in cams),
            "latency_ms_p50": float(np.nanmedian([c["latency_ms_p50"] for c in cams])),
            "latency_ms_p95": float(np.nanmax([c["latency_ms_p95"] for c in cams]))}


def equality(out_dir: Path, n: int) -> dict:
    """Each camera of an ``n``-camera node against a single-camera node fed the same frames (waits for every
    output, so no frame is dropped on either side)."""
    multi = Layout("eq_multi", n, True, out_dir, ["-p", "sharing.enabled:=true"])
    single = Layout("eq_single", 1, True, out_dir, ["-p", "sharing.enabled:=true"])
    worst = {"labels_equal_min": 1.0, "depth_rel_p999_max": 0.0, "frames": 0}
    try:
        for round_ in range(3):
            frames = [pattern_frame(10 + round_ * n + i, H, W) for i in range(n)]
            fid = f"eq{round_}"
            sent = [cam.publish(f, frame_id=f"{fid}_{i}") for i, (cam, f) in enumerate(zip(multi.cam, frames,
                                                                                                 strict=True))]
            ok = spin_until(multi.ex, lambda fid=fid: all(any(m.msg.header.frame_id == f"{fid}_{i}"
                                                              for m in r.messages["depth"])
                                                          for i, r in enumerate(multi.rec)), 60)
            assert ok, "multi-camera node gave no outputs"
            for i, f in enumerate(frames):
                single.cam[0].publish(f, frame_id=f"{fid}_{i}", stamp=None)
                ok = spin_until(single.ex, lambda fid=fid, i=i: any(m.msg.header.frame_id == f"{fid}_{i}"
                                                                      for m in single.rec[0].messages["depth"]), 60)
                assert ok, "single-camera node gave no outputs"
            for i in range(n):
                def pick(rec, out, want=f"{fid}_{i}"):
                    return image_to_array(next(m.msg for m in rec.messages[out] if m.msg.header.frame_id == want))
                a_seg, b_seg = pick(multi.rec[i], "segmentation"), pick(single.rec[0], "segmentation")
                a_d, b_d = pick(multi.rec[i], "depth"), pick(single.rec[0], "depth")
                finite = np.isfinite(a_d) & np.isfinite(b_d)
                rel = np.abs(a_d - b_d)[finite] / np.maximum(np.abs(b_d[finite]), 1e-3)
                worst["labels_equal_min"] = min(worst["labels_equal_min"], float((a_seg == b_seg).mean()))
                worst["depth_rel_p999_max"] = max(worst["depth_rel_p999_max"], float(np.quantile(rel, 0.999)))
                worst["frames"] += 1
            del sent
    finally:
        multi.close()
        single.close()
    worst["ok"] = worst["labels_equal_min"] >= 0.999 and worst["depth_rel_p999_max"] <= 1e-4
    return worst


def to_markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Several cameras: one node vs one process per camera (640x480, 15 Hz per camera)", "",
        f"torch {env.get('torch')}, CPU capability {env.get('cpu_capability')}, {env.get('cpu_count')} cores; "
        f"{report['date']}; command: `{report['command']}`", "",
        "| cameras | layout | competitor | fps/camera (mean) | fps total | latency p50 (ms) | p95 (ms) | CPU cores | "
        "RSS (MiB) |", "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["runs"]:
        lines.append(f"| {r['n']} | {r['layout']} | {r['competitor']} | {r['fps_total'] / r['n']:.2f} | "
                     f"{r['fps_total']:.2f} | {r['latency_ms_p50']:.0f} | {r['latency_ms_p95']:.0f} | "
                     f"{r['cpu_cores_used']:.2f} | {r['rss_mb']:.0f} |")
    lines += ["", "## Goals", ""]
    lines += [f"- {g}" for g in report["goals"]]
    eq = report["equality"]
    lines += ["", f"Outputs: {eq['frames']} camera frames of a {report['equality_cameras']}-camera node against a "
              f"single-camera node: labels equal on >= {eq['labels_equal_min']:.4%} of pixels, depth relative error "
              f"p99.9 <= {eq['depth_rel_p999_max']:.2e} ({'ok' if eq['ok'] else 'NOT within the goal'})."]
    return "\n".join(lines) + "\n"


def goals(runs: list[dict], budget_ms: float) -> list[str]:
    def find(n, layout, comp):
        return next((r for r in runs if r["n"] == n and r["layout"] == layout and r["competitor"] == comp), None)

    out = []
    big = max(r["n"] for r in runs)
    one, procs = find(big, "one node", "no"), find(big, "processes", "no")
    if one and procs and big > 1:
        ratio = one["fps_total"] / max(procs["fps_total"], 1e-9)
        out.append(f"{big} cameras: one node delivers {ratio:.2f}x the frames of {big} processes (goal >= 1.5x), "
                   f"p95 {one['latency_ms_p95']:.0f} vs {procs['latency_ms_p95']:.0f} ms (goal: no higher), "
                   f"memory {one['rss_mb'] / procs['rss_mb']:.2f}x (goal < 0.5x)")
    for n in sorted({r["n"] for r in runs}):
        a, b = find(n, "one node", "no"), find(n, "one node", "yes")
        if a and b:
            slower = b["latency_ms_p50"] / a["latency_ms_p50"]
            out.append(f"{n} camera(s), one node: p50 with the competitor {slower:.2f}x its uncontended value "
                       "(goal <= 2.5x)")
    bud = next((r for r in runs if r["layout"].startswith("one node, budget")), None)
    if bud:
        out.append(f"budget {budget_ms:.0f} ms at 2 cameras with the competitor: p95 {bud['latency_ms_p95']:.0f} ms "
                   f"({bud['latency_ms_p95'] / budget_ms:.2f}x the budget; goal within 1.1x where reachable); "
                   f"states: {sorted({c['budget_state'] for c in bud['cameras']})}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=12.0, help="streaming time per run (default 12)")
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4], help="camera counts (default 1 2 4)")
    p.add_argument("--budget-ms", type=float, default=150.0,
                   help="latency_budget_ms of the budget run (default 150: below the 2-camera p95 with the competitor "
                   "on 2 cores, so that the budget has to act)")
    p.add_argument("--quick", action="store_true", help="1 and 2 cameras, 4 s each: the rig end to end")
    p.add_argument("--out", type=Path, default=RESULTS, help="where multicam.json/.md go (default bench/results)")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds, args.cameras = 4.0, [1, 2]
    use_fastdds_profile()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    args.out.mkdir(parents=True, exist_ok=True)
    extra = ["-p", "device:=cpu"]
    runs: list[dict] = []
    rclpy.init()
    try:
        plan = [(n, one) for n in args.cameras for one in ((True, False) if n > 1 else (True,))]
        for n, one in tqdm(plan, desc="layouts", unit="layout"):
            layout = Layout(f"{n}{'n' if one else 'p'}", n, one, args.out, extra)
            try:
                for comp in ("no", "yes"):
                    competitor = start_competitor(args.seconds + 10) if comp == "yes" else None
                    try:
                        r = stream(layout, args.seconds, f"{n} cam {'node' if one else 'procs'} comp={comp}")
                    finally:
                        if competitor is not None:
                            competitor.kill()
                            competitor.wait()
                    runs.append({"n": n, "layout": "one node" if one else "processes", "competitor": comp, **r})
            finally:
                layout.close()
        if 2 in args.cameras:
            layout = Layout("budget", 2, True, args.out, [*extra, "-p", f"latency_budget_ms:={args.budget_ms}"])
            try:
                competitor = start_competitor(args.seconds + 10)
                try:
                    r = stream(layout, args.seconds, "budget")
                finally:
                    competitor.kill()
                    competitor.wait()
                runs.append({"n": 2, "layout": f"one node, budget {args.budget_ms:.0f} ms", "competitor": "yes", **r})
            finally:
                layout.close()
        eq_n = max(args.cameras)
        eq = equality(args.out, eq_n)
    finally:
        rclpy.try_shutdown()
    env = environment_record()
    env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    env["torch"] = torch.__version__
    report = {"benchmark": "multicam", "command": " ".join(["bench/multicam.py", *(argv or sys.argv[1:])]),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "environment": env,
              "camera_hz": HZ, "frame": [H, W], "seconds": args.seconds, "runs": runs,
              "goals": goals(runs, args.budget_ms), "equality": eq, "equality_cameras": eq_n}
    (args.out / "multicam.json").write_text(json.dumps(report, indent=2))
    md = to_markdown(report)
    (args.out / "multicam.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
