"""``mtshare export``: write a checkpoint's models as ONNX graphs with their metadata (``export/onnx.py``)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from mtshare_ros.export.onnx import KINDS, export_onnx


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="mtshare export",
        description="Export models as ONNX graphs: input 'image' (1, 3, H, W) float32, ImageNet-normalised, with a "
                    "dynamic width (a multiple of the patch size); one output per task (segmentation logits, depth, "
                    "normals); <kind>.json beside each <kind>.onnx says the rest.")
    ap.add_argument("--format", choices=("onnx",), default="onnx", help="graph format (default onnx)")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--checkpoint", default="default",
                    help="checkpoint of the independent and engine graphs (default: the node's default, whose "
                         "independent graph is of the shipped independent models); the multitask graph is always "
                         "the shipped multi-task model")
    ap.add_argument("--models", default=",".join(KINDS),
                    help=f"comma-separated graphs to write, of {', '.join(KINDS)} (default: all)")
    ap.add_argument("--height", type=int, default=None, help="input rows (default: the model's, 240)")
    ap.add_argument("--cap", type=float, default=0.1,
                    help="the engine graph's token cap: k = ceil(cap * tokens) per block and sub-task (default 0.1, "
                         "the node's sharing.max_token_fraction)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        print(f"mtshare export: --models must list some of {list(KINDS)}, got {args.models!r}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    for i, kind in enumerate(kinds, 1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(kinds)}] exporting {kind} ...", flush=True)
        path = export_onnx(args.checkpoint, kind, args.out, args.height, "fixed", args.cap)
        print(f"[{i}/{len(kinds)}] {path} and {path.with_suffix('.json').name} ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
