"""Does the method's temporal fine-tuning step make temporal sharing skip more? The base task (segmentation) of
the shipped checkpoint and of the fine-tuned one, each per frame and with temporal sharing at the node's
temporal defaults, on the temporal benchmark's slow pan and walking sequences (held-out rooms, 30 fps).

    .venv/bin/mtshare temporal-train --config config/train/temporal_base.yaml    # writes runs/temporal/base.pt
    .venv/bin/python bench/temporal_step.py --threads 2 --candidate runs/temporal/base.pt

Writes bench/results/temporal_step.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from mtshare_ros.sharing import SharedMultiTaskModel
from mtshare_ros.sharing.loader import load_models
from mtshare_ros.sharing.temporal import TemporalSettings

# bench/ is not a package: run as ``python bench/temporal_step.py`` its siblings import through sys.path[0]
from environment import environment_line, environment_record
from temporal_measure import Variant, measure_sequence, summarize_tally

ROOT = Path(__file__).resolve().parent.parent
SEQUENCES = ((1, "slow_pan"), (2, "walking"))  # the temporal benchmark's rooms for these kinds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidate", default="runs/temporal/base.pt", help="checkpoint written by temporal-train")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "temporal_step"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TemporalSettings(True)
    vs = [Variant("per frame", ("segmentation",), None),
          Variant("temporal", ("segmentation",), None, settings, "per frame")]
    rows = []
    for name, ckpt in (("shipped", "default"), ("after the temporal step", args.candidate)):
        loaded = load_models(ckpt, tasks=["segmentation"], shared=False)
        loaded.shared = SharedMultiTaskModel(loaded.dense["segmentation"].eval(), {}).eval()  # the base alone
        for i, kind in SEQUENCES:
            tallies = measure_sequence(loaded, vs, 3_000_009 + i, kind, 30.0, args.frames, (240, 320))
            pf, tp = (summarize_tally(tallies[v.name], args.frames) for v in vs)
            rows.append({"model": name, "sequence": kind, "mIoU_per_frame": pf["headline"]["segmentation"],
                         "mIoU_temporal": tp["headline"]["segmentation"],
                         "recomputed": tp["recomputed_fraction"]["segmentation"],
                         "macs_vs_per_frame": tp["gmacs_per_frame"] / pf["gmacs_per_frame"]})
    result = {"benchmark": "temporal_step", "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "environment": environment_record(), "candidate": args.candidate, "frames": args.frames,
              "temporal": dataclasses.asdict(settings), "rows": rows}
    lines = ["# Temporal fine-tuning step: base task, per frame and with temporal sharing", "",
             f"- environment: {environment_line(result['environment'])}",
             f"- candidate: {args.candidate}; {args.frames} frames at 30 fps per sequence; temporal defaults", "",
             "| model | sequence | mIoU per frame | mIoU temporal | tokens recomputed | MACs vs per frame |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['sequence']} | {r['mIoU_per_frame']:.4f} | {r['mIoU_temporal']:.4f} | "
              f"{r['recomputed']:.3f} | {r['macs_vs_per_frame']:.3f} |" for r in rows]
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
