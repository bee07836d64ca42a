"""Temporal-sharing benchmark: per-frame inference against temporal sharing, with and without task sharing, on
rendered camera motions of four kinds at 15 and 30 fps, side by side in one run; and on a real hand-held Kinect
sequence replayed from a bag (``--real-root``, ``temporal_real.py``).

    .venv/bin/python bench/temporal.py --threads 2 --real-root DIR     # the committed results (~30 min, 2 cores)
    .venv/bin/python bench/temporal.py --threads 2 --real-root DIR --only real   # the real part alone (~3 min)
    .venv/bin/python bench/temporal.py --quick              # smoke run (short sequences)

Writes bench/results/temporal.{json,md}; a run of one part (``--only``) keeps the other part's results found
there. Rooms are the held-out test split's (seed 3): no model trained on them. Without ``--real-root`` the real
part is skipped, and the report says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mtshare_ros.data.motion import KINDS
from mtshare_ros.data.synthetic import ROOM_SEED_STRIDE
from mtshare_ros.sharing.loader import describe_checkpoint, load_models
from mtshare_ros.sharing.temporal import TemporalSettings

# bench/ is not a package: run as ``python bench/temporal.py`` its siblings import through sys.path[0]
import temporal_real
from environment import environment_line, environment_record
from temporal_measure import (
    ALONE_FRAMES,
    DRIFT_WINDOWS,
    HEADLINE,
    TASKS,
    measure_sequence,
    summarize_tally,
    time_alone,
    variants,
)

ROOT = Path(__file__).resolve().parent.parent
GOALS = {"macs_ratio": 0.35, "time_ratio": 0.5, "metric_rel": 0.01}
GOAL_SEQUENCES = ("slow_pan@30", "walking@30")
LOWER_IS_BETTER = {"segmentation": False, "depth": True, "normals": True}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--frames", type=int, default=300, help="frames per sequence (drift after 300 needs 300)")
    ap.add_argument("--fps", type=float, nargs="+", default=[15.0, 30.0])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    ap.add_argument("--threshold", type=float, default=TemporalSettings.threshold, help="temporal.threshold")
    ap.add_argument("--max-token-fraction", type=float, default=TemporalSettings.max_token_fraction)
    ap.add_argument("--keyframe-interval", type=int, default=TemporalSettings.keyframe_interval)
    ap.add_argument("--motion", default=TemporalSettings.motion, choices=("image", "off"), help="temporal.motion")
    ap.add_argument("--max-drift", type=float, default=TemporalSettings.max_drift, help="temporal.max_drift")
    ap.add_argument("--scene-cut-fraction", type=float, default=TemporalSettings.scene_cut_fraction,
                    help="temporal.scene_cut_fraction")
    ap.add_argument("--partial-heads", action=argparse.BooleanOptionalAction, default=TemporalSettings.partial_heads,
                    help="temporal.partial_heads of the temporal variants (the variant 'full heads' runs beside)")
    ap.add_argument("--sweep", nargs="*", default=["0.05:0.3:30", "0.1:0.3:30", "0.3:0.2:30", "0.2:0.3:10"],
                    metavar="T:C:K", help="more task + temporal settings (threshold:token cap:keyframe interval)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="40 frames per sequence, 30 fps only")
    ap.add_argument("--real-root", type=Path, default=None, metavar="DIR",
                    help="7-Scenes-layout folder of the real sequence (frame-%%06d.color.jpg, .depth.png, "
                         "camera-intrinsics.txt); without it the real part is skipped")
    ap.add_argument("--real-frames", type=int, default=temporal_real.MAX_FRAMES,
                    help=f"frames 0..N-1 of --real-root, N <= {temporal_real.MAX_FRAMES} (later ones are reserved)")
    ap.add_argument("--only", choices=("rendered", "real"), default=None,
                    help="run one part; the other part's results in --out's JSON are kept")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "temporal"), help="output path stem")
    return ap.parse_args(argv)


def goals(seqs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Each goal of the issue, per sequence it applies to, with the measured value and whether it is met."""
    rows = []
    for key in GOAL_SEQUENCES:
        if key not in seqs:
            continue
        v = seqs[key]["variants"]
        base = v["base task alone, per frame"]
        for name in ("temporal only", "task + temporal"):
            got, ref = v[name], v[seqs[key]["reference"][name]]
            macs = got["gmacs_per_frame"] / ref["gmacs_per_frame"]
            rows.append({"sequence": key, "variant": name, "goal": f"MACs <= {GOALS['macs_ratio']}x per frame",
                         "value": round(macs, 3), "met": macs <= GOALS["macs_ratio"]})
            # the time a node sees: each variant alone (``time_alone``); interleaved where it was not timed so
            timing = "ms_alone_median" if "ms_alone_median" in got and "ms_alone_median" in ref else "ms_median"
            ms = got[timing] / ref[timing]
            rows.append({"sequence": key, "variant": name,
                         "goal": f"time <= {GOALS['time_ratio']}x per frame"
                                 + (" (each alone)" if timing == "ms_alone_median" else ""),
                         "value": round(ms, 3), "met": ms <= GOALS["time_ratio"]})
            for t in TASKS:
                a, b = got["headline"][t], ref["headline"][t]
                worse = (a - b) / abs(b) if LOWER_IS_BETTER[t] else (b - a) / abs(b)
                rows.append({"sequence": key, "variant": name, "goal": f"{t} {HEADLINE[t]} within 1% of per frame",
                             "value": round(worse, 4), "met": worse <= GOALS["metric_rel"]})
            d = got["drift"]
            if "30" in d and "300" in d:
                no_worse = all(d["300"][t] <= d["30"][t] for t in TASKS)
                rows.append({"sequence": key, "variant": name, "goal": "drift after 300 frames <= after 30",
                             "value": {t: [round(d["30"][t], 4), round(d["300"][t], 4)] for t in TASKS},
                             "met": no_worse})
        full_heads = v.get("task + temporal, full heads")
        if full_heads is not None:  # what the partial heads cost in accuracy and save in time, same encoder work
            got = v["task + temporal"]
            for t in TASKS:
                a, b = got["headline"][t], full_heads["headline"][t]
                worse = (a - b) / abs(b) if LOWER_IS_BETTER[t] else (b - a) / abs(b)
                rows.append({"sequence": key, "variant": "task + temporal",
                             "goal": f"partial heads: {t} {HEADLINE[t]} within 1% of full heads",
                             "value": round(worse, 4), "met": worse <= GOALS["metric_rel"]})
            rows.append({"sequence": key, "variant": "task + temporal", "goal": "partial heads: time vs full heads",
                         "value": round(got["ms_median"] / full_heads["ms_median"], 3),
                         "met": got["ms_median"] <= full_heads["ms_median"]})
        three = v["task + temporal"]["gmacs_per_frame"]
        rows.append({"sequence": key, "variant": "task + temporal", "goal": "3 tasks cost < base task alone per frame",
                     "value": round(three / base["gmacs_per_frame"], 3), "met": three < base["gmacs_per_frame"]})
    return rows


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Temporal sharing benchmark"]
    if "sequences" in r:
        lines += rendered_markdown(r)
    else:
        lines += ["", "## Rendered motions", "", "Not in this file (run bench/temporal.py without --only real)."]
    return "\n".join(lines + temporal_real.markdown(r.get("real"))) + "\n"


def rendered_markdown(r: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"- model: {r['model']}",
        f"- environment: {environment_line(r['environment'])}",
        f"- temporal settings: {r['temporal']}; task sharing (node default) {r['sharing']}",
        f"- sequences: {r['frames']} frames each at {r['size'][1]}x{r['size'][0]}, rooms of the held-out test split;"
        f" wall time is the median of the model call per frame (CPU, {r['environment']['torch_threads']} threads):"
        f" 'ms/frame' with every variant run on each frame in turn, 'ms alone' with each main variant run alone"
        f" over the first {ALONE_FRAMES} frames as a node runs it (best of 2 passes; the time goals use it)",
        f"- drift: deviation from the variant's per-frame reference (segmentation: labels that differ; depth: mean "
        f"relative difference; normals: mean angle), averaged over frames {DRIFT_WINDOWS}",
        "",
        "## Goals",
        "",
        "| sequence | variant | goal | measured | met |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {g['sequence']} | {g['variant']} | {g['goal']} | {g['value']} | {'yes' if g['met'] else 'NO'} |"
              for g in r["goals"]]
    for key, seq in r["sequences"].items():
        lines += ["", f"## {key} (room seed {seq['seed']})", "",
                  "| variant | GMACs/frame | vs its per-frame | ms/frame | vs its per-frame | ms alone "
                  "| vs its per-frame | keyframes | recomputed seg / depth / normals | mIoU | depth abs-rel "
                  "| normals deg | drift @30 | drift @300 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, v in seq["variants"].items():
            ref = seq["variants"].get(seq["reference"].get(name, ""), v)
            rec = " / ".join(f"{v['recomputed_fraction'].get(t, float('nan')):.2f}" for t in TASKS)
            head = [f"{v['headline'][t]:.4f}" if t in v["headline"] else "-" for t in TASKS]
            drift = [", ".join(f"{v['drift'][w][t]:.3f}" for t in v["drift"][w]) if w in v["drift"] else "-"
                     for w in ("30", "300")]
            alone = (f"{v['ms_alone_median']:.1f} | {v['ms_alone_median'] / ref['ms_alone_median']:.2f}x"
                     if "ms_alone_median" in v and "ms_alone_median" in ref else "- | -")
            lines.append(
                f"| {name} | {v['gmacs_per_frame']:.3f} | {v['gmacs_per_frame'] / ref['gmacs_per_frame']:.2f}x | "
                f"{v['ms_median']:.1f} | {v['ms_median'] / ref['ms_median']:.2f}x | {alone} | "
                f"{v['keyframe_rate']:.2f} | {rec} | "
                f"{' | '.join(head)} | {drift[0]} | {drift[1]} |"
            )
    return lines


def temporal_settings(args: argparse.Namespace) -> TemporalSettings:
    return TemporalSettings(True, args.threshold, args.max_token_fraction, args.keyframe_interval,
                            motion=args.motion, max_drift=args.max_drift, partial_heads=args.partial_heads,
                            scene_cut_fraction=args.scene_cut_fraction)


def run_rendered(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The rendered motions through every variant; the report's top-level fields."""
    loaded = load_models(args.checkpoint)
    if loaded.shared is None:
        raise SystemExit(f"{args.checkpoint}: the shared engine needs a base task and sub-tasks")
    temporal = temporal_settings(args)
    sweep = [TemporalSettings(True, float(t), float(c), int(k), motion=args.motion, max_drift=args.max_drift,
                              partial_heads=args.partial_heads, scene_cut_fraction=args.scene_cut_fraction)
             for t, c, k in (v.split(":") for v in args.sweep)]
    vs = variants(temporal, sweep)
    seqs: dict[str, Any] = {}
    total = len(args.kinds) * len(args.fps) * args.frames
    t0 = time.monotonic()
    with tqdm(total=total, desc="frames", unit="frame", file=sys.stderr) as bar:
        for i, kind in enumerate(args.kinds):
            for fps in args.fps:
                seed = 3 * ROOM_SEED_STRIDE + i  # room i of the held-out test split
                tallies = measure_sequence(loaded, vs, seed, kind, fps, args.frames, tuple(args.size), bar)
                summary = {name: summarize_tally(t, args.frames) for name, t in tallies.items()}
                bar.set_postfix_str(f"{kind}: timing the main variants alone")
                for name, ms in time_alone(loaded, vs, seed, kind, fps, tuple(args.size),
                                           min(args.frames, ALONE_FRAMES)).items():
                    summary[name]["ms_alone_median"] = ms
                seqs[f"{kind}@{fps:g}"] = {
                    "kind": kind, "fps": fps, "seed": seed,
                    "reference": {v.name: v.reference for v in vs if v.reference}, "variants": summary,
                }
    return {
        "command": command,
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - t0, 1),
        "environment": environment_record(),
        "model": describe_checkpoint(args.checkpoint) if args.checkpoint == "default" else args.checkpoint,
        "sharing_source": loaded.sharing_source,
        "temporal": dataclasses.asdict(temporal),
        "sweep": [dataclasses.asdict(t) for t in sweep],
        "sharing": [v.sharing for v in vs if v.sharing][0],
        "frames": args.frames,
        "size": list(args.size),
        "sequences": seqs,
        "goals": goals(seqs),
    }


def run_real(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The real sequence's section, or why it was skipped."""
    if args.real_root is None:
        return temporal_real.skipped("no --real-root given (a 7-Scenes-layout folder; frames 0-599 are used)")
    if not args.real_root.is_dir():
        return temporal_real.skipped(f"--real-root {args.real_root}: no such folder")
    return temporal_real.measure_real(args.real_root, args.real_frames, args.checkpoint, temporal_settings(args),
                                      command=command)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.frames, args.fps = 40, [30.0]
    if temporal_real.frames_problem(args.real_frames):  # before the rendered part's half hour
        raise SystemExit(temporal_real.frames_problem(args.real_frames))
    command = " ".join(["python bench/temporal.py", *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    result: dict[str, Any] = {"benchmark": "temporal"}
    if args.only and out.with_suffix(".json").is_file():  # one part: keep the other part's results
        result.update(json.loads(out.with_suffix(".json").read_text()))
    if args.only != "real":
        result.update(run_rendered(args, command))
    if args.only != "rendered":
        result["real"] = run_real(args, command)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
