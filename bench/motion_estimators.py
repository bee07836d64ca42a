"""Motion estimators for motion-compensated temporal sharing (issue 25), compared on rendered motions whose true
image motion is known.

Temporal sharing realigns its reference buffers by a global image translation between consecutive frames
(mtshare_ros/sharing/motion.py). This benchmark asks which estimator gives that translation best for its cost.
The truth per frame pair comes from the renderer: every pixel with depth is back-projected with the first pose,
projected with the second, and the median displacement is the translation that best explains the pair (rotation
and parallax included; the median, because a global shift is what the buffers can follow). Estimators, each on
the frame the engine sees (240x320):

* ``phase_corr_4`` / ``phase_corr_2``: the package's phase correlation on grey frames downscaled 4x (the
  default, ``sharing.motion.DOWNSCALE``) and 2x;
* ``dis_flow``: OpenCV's DIS dense optical flow (ultrafast preset) on the 2x-downscaled grey frames, median flow;
* ``lk_homography``: Shi-Tomasi corners tracked by pyramidal Lucas-Kanade, a RANSAC homography, the motion of
  the image centre.

Per motion kind: mean and 95th-percentile error (px) of the estimate against the truth, the share of frame pairs
whose error is under half a patch (8 px: the realignment rounds to whole tokens, so that is what decides whether a
token meets its moved reference), and the median ms per pair on one thread. Writes
bench/results/motion_estimators.{json,md}.

    .venv/bin/python bench/motion_estimators.py              # 4 motions x 60 frames at 30 fps (~3 min)
    .venv/bin/python bench/motion_estimators.py --frames 8 --out motion_estimators_quick   # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from mtshare_ros.data.motion import KINDS, render_motion
from mtshare_ros.data.renderer import Frame
from mtshare_ros.data.synthetic import ROOM_SEED_STRIDE
from mtshare_ros.sharing.motion import estimate_shift, grey

from environment import environment_line, environment_record, write_result

ROOT = Path(__file__).resolve().parent.parent
HALF_PATCH = 8.0
Estimator = Callable[[np.ndarray, np.ndarray], tuple[float, float]]


def true_shift(a: Frame, b: Frame) -> tuple[float, float] | None:
    """Median (dy, dx) image displacement of frame ``a``'s pixels seen again in ``b`` (depth and both poses)."""
    h, w = a.depth.shape
    ys, xs = np.mgrid[0:h:4, 0:w:4]
    z = a.depth[ys, xs]
    ok = z > 0
    if ok.sum() < 50:
        return None
    pix = np.stack([xs[ok] + 0.5, ys[ok] + 0.5, np.ones(ok.sum())])
    cam = np.linalg.inv(a.K) @ pix * z[ok]
    world = a.pose[:3, :3] @ cam + a.pose[:3, 3:4]
    inv = np.linalg.inv(b.pose)
    cam_b = inv[:3, :3] @ world + inv[:3, 3:4]
    front = cam_b[2] > 1e-3
    proj = b.K @ cam_b[:, front]
    u, v = proj[0] / proj[2], proj[1] / proj[2]
    return float(np.median(v - pix[1, front])), float(np.median(u - pix[0, front]))


def _grey_np(rgb: np.ndarray, factor: int) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (g.shape[1] // factor, g.shape[0] // factor), interpolation=cv2.INTER_AREA)


def phase_corr(factor: int) -> Estimator:
    def est(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255
        dy, dx, _ = estimate_shift(grey(ta, factor), grey(tb, factor), factor)
        return dy, dx
    return est


def dis_flow() -> Estimator:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)

    def est(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        flow = dis.calc(_grey_np(a, 2), _grey_np(b, 2), None)
        return float(np.median(flow[..., 1])) * 2, float(np.median(flow[..., 0])) * 2
    return est


def lk_homography(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    ga, gb = _grey_np(a, 1), _grey_np(b, 1)
    pts = cv2.goodFeaturesToTrack(ga, maxCorners=200, qualityLevel=0.01, minDistance=8)
    if pts is None or len(pts) < 8:
        return 0.0, 0.0
    nxt, status, _ = cv2.calcOpticalFlowPyrLK(ga, gb, pts, None, winSize=(21, 21), maxLevel=3)
    good = status.ravel() == 1
    if good.sum() < 8:
        return 0.0, 0.0
    hom, _ = cv2.findHomography(pts[good], nxt[good], cv2.RANSAC, 3.0)
    if hom is None:
        return 0.0, 0.0
    h, w = ga.shape
    c = hom @ np.array([w / 2, h / 2, 1.0])
    return float(c[1] / c[2] - h / 2), float(c[0] / c[2] - w / 2)


ESTIMATORS: dict[str, Callable[[], Estimator]] = {
    "phase_corr_4": lambda: phase_corr(4), "phase_corr_2": lambda: phase_corr(2),
    "dis_flow": dis_flow, "lk_homography": lambda: lk_homography,
}


def measure(kind: str, frames: int, fps: float, seed: int) -> dict[str, Any]:
    seq = list(render_motion(seed, kind, frames, fps))
    pairs = [(a, b, true_shift(a, b)) for a, b in zip(seq, seq[1:], strict=False)]
    pairs = [(a, b, t) for a, b, t in pairs if t is not None]
    res: dict[str, Any] = {"pairs": len(pairs),
                           "true_motion_px_mean": statistics.mean(float(np.hypot(*t)) for _, _, t in pairs)}
    for name, make in ESTIMATORS.items():
        est = make()
        errs, ms = [], []
        for a, b, t in pairs:
            t0 = time.perf_counter()
            dy, dx = est(a.rgb, b.rgb)
            ms.append((time.perf_counter() - t0) * 1e3)
            errs.append(float(np.hypot(dy - t[0], dx - t[1])))
        res[name] = {"mean_err_px": statistics.mean(errs), "p95_err_px": float(np.percentile(errs, 95)),
                     "under_half_patch": sum(e < HALF_PATCH for e in errs) / len(errs), "ms": statistics.median(ms)}
    return res


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Motion estimators (issue 25)", "", f"Machine: {environment_line(r['environment'])}.", "",
             f"Command: `{r['command']}`. {r['frames']} frames per motion at {r['fps']:g} fps, 240x320, room seed "
             f"{r['seed']}; truth: median displacement of the rendered pixels between the two poses.", "",
             "| motion | true motion px (mean) | estimator | mean error px | p95 error px | error < 8 px | ms |",
             "|---|---|---|---|---|---|---|"]
    for kind, m in r["motions"].items():
        for name in ESTIMATORS:
            e = m[name]
            lines.append(f"| {kind} | {m['true_motion_px_mean']:.1f} | {name} | {e['mean_err_px']:.2f} | "
                         f"{e['p95_err_px']:.2f} | {e['under_half_patch']:.0%} | {e['ms']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="motion_estimators", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=3 * ROOM_SEED_STRIDE,
                    help="room seed (default: room 0 of the held-out test split, as in bench/temporal.py)")
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--out", default="motion_estimators", help="bench/results/<out>.{json,md}")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    r = {"environment": environment_record(), "frames": args.frames, "fps": args.fps, "seed": args.seed,
         "command": " ".join(["bench/motion_estimators.py", *(argv if argv is not None else sys.argv[1:])]),
         "motions": {k: measure(k, args.frames, args.fps, args.seed) for k in args.kinds}}
    write_result(args.out, r, markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
