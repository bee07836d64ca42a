"""Task-sharing benchmark: base task only, three independent models, and the shared engine, side by side.

One run measures, per variant: executed GMACs per frame (counted from what ran), wall time per frame
(CPU; CUDA too when present, with the device name), parameters stored, the fraction of tokens the
sub-tasks recomputed, accuracy per task on the held-out synthetic split when it exists, and always the
deviation of each task's output from its independent model. Two settings:

* ``main``: the shipped models (mtshare_ros/weights/independent.pt; seeded untrained ones while it does not
  exist, said so), shared by compressing ``dW = W_sub - W_base`` of the independent models;
* ``toy`` (``--toy-steps`` > 0): a small ViT trained here end to end on the procedural toy scenes:
  independent models, then each sub-task trained from the base with the sharing steps
  (mtshare_ros/training/subtask_steps.py), so the deltas are what the method makes them.

Beside them, the two baselines a user would pick instead of the engine: (a) a multi-task model (one encoder,
three heads; ``--multitask CKPT``, a checkpoint of ``mtshare train ... train.shared_encoder=true``) and (b) the
trained sub-tasks with nothing recomputed (their heads on the base encoder's features); a verdict says whether the
engine at the node default earns its place against them. A table compares the delta structures (storage,
reconstruction error, time of one layer).
Writes bench/results/task_sharing.{json,md} and the Pareto plot task_sharing_pareto.png (``--out``; MACs against
each sub-task's error, bench/sharing_pareto.py), each with the record of the machine it ran on
(bench/environment.py). This file is the command line: arguments, the order of the steps, writing the
result; what is measured is bench/sharing_measure.py, the goals and the Markdown bench/sharing_report.py.

    # the committed results: the independent models, the multi-task model and the node's default engine
    .venv/bin/python bench/task_sharing.py --threads 2 --checkpoint independent --multitask multitask
    .venv/bin/python bench/task_sharing.py --quick    # smoke run (few frames, samples and toy steps)
    .venv/bin/python bench/task_sharing.py --threads 2 --shared runs/shared/mt_budget_normals.pt \
        --multitask mtshare_ros/weights/multitask.pt  # sub-tasks on the multi-task base, swept
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch

# bench/ is not a package: run as ``python bench/task_sharing.py`` its siblings import through sys.path[0]
# (this file's directory, wherever the command runs from)
from sharing_pareto import write_pareto_png

from environment import environment_record
from sharing_measure import (
    NODE_DEFAULT,
    cuda_times,
    delta_structures,
    load_eval_samples,
    load_independent_models,
    load_multitask,
    load_trained_shared,
    main_variants,
    measure,
    storage_fractions,
    storage_table,
    token_count,
    toy_setting,
)
from sharing_report import goals_for, goals_table, markdown, notes_for, variants_table, verdict_for

log = logging.getLogger("task_sharing")
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="task_sharing", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--checkpoint",
        default="auto",
        help="dense checkpoint of the independent models (auto: shipped default, else untrained)",
    )
    ap.add_argument(
        "--shared",
        default="default",
        help="trained sub-tasks to benchmark, loaded as the node's 'checkpoint' parameter loads them: 'default' "
        "(the node's default engine: weights/multitask.pt with multitask_depth.pt beside it), 'beside' (the "
        "sub-task files beside --checkpoint), a dense checkpoint with <stem>_<task>.pt beside it, a shared "
        "checkpoint, or 'none'",
    )
    ap.add_argument(
        "--shared-settings",
        nargs="+",
        default=[
            "0:1", "0:0.3", "0:0.2", "0:0.1", "0:0.05", "0.05:0.5", "0.05:0.3", "0.05:0.2",
            "{}:{}".format(*NODE_DEFAULT), "1000:1",
        ],
        help="threshold:max_token_fraction pairs for the trained sub-tasks (1000:1 = nothing recomputed; "
        "threshold 0 = exactly the cap's top-k, the budget step's training setting): the Pareto sweep",
    )
    ap.add_argument(
        "--data-root",
        default=str(ROOT / "data" / "v3" / "test"),
        help="held-out data for accuracy: the test split of the shipped models, 200 rooms no model was trained "
        "or selected on (scripts/render_data_v3.sh: mtshare render --out data/v3/test --rooms 200 "
        "--frames-per-room 3 --fps 0.5 --seed 3 --val-fraction 1)",
    )
    ap.add_argument(
        "--multitask",
        default=None,
        metavar="CKPT",
        help="baseline (a): a multi-task checkpoint (mtshare train ... train.shared_encoder=true) measured as "
        "'multi-task model (1 encoder, 3 heads)' beside the other variants; without it that baseline is not measured "
        "and the verdict cannot be positive",
    )
    ap.add_argument("--split", default="val")
    ap.add_argument(
        "--samples",
        type=int,
        default=0,
        help="frames of the split used for accuracy, evenly spaced (0: all; the goals are judged on all 600)",
    )
    ap.add_argument("--frames", type=int, default=40, help="timed frames per variant (interleaved; the median counts)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--delta", default="lowrank", choices=["lowrank", "rows", "sparse"])
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--row-fraction", type=float, default=0.1)
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument(
        "--token-fractions",
        type=float,
        nargs="+",
        default=[0.25],
        help="extra shared variants at threshold 0 with this max_token_fraction",
    )
    ap.add_argument("--toy-steps", type=int, default=0, help="toy setting training steps per model (0: skip)")
    ap.add_argument("--toy-rank", type=int, default=6)
    ap.add_argument("--toy-threshold", type=float, default=0.1)
    ap.add_argument("--toy-penalty", type=float, default=0.3)
    ap.add_argument("--toy-samples", type=int, default=48)
    ap.add_argument("--toy-only", action="store_true", help="only the toy setting (for tuning; prints its tables)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "task_sharing"))
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 timed frames, 3 samples, 20 toy steps")
    args = ap.parse_args(argv)
    args = ap.parse_args(argv)
    if args.quick:
        args.frames, args.warmup, args.samples = 2, 1, 3
        args.toy_steps, args.toy_samples = min(args.toy_steps, 20), 4
    return args


def run_toy(args: argparse.Namespace) -> dict[str, Any]:
    """The toy setting measured, with its goals."""
    toy = toy_setting(
        args.toy_steps, args.toy_rank, args.toy_threshold, args.toy_penalty, args.toy_samples, args.frames, args.warmup
    )
    toy["goals"] = goals_for(toy["variants"], {"lowrank": toy["storage_fraction"]})
    return toy


def run_main_setting(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    """The main setting measured and judged: the result, without the toy setting (``toy``: None)."""
    models, ckpt_name, trained = load_independent_models(args.checkpoint)
    cfg = models["segmentation"].cfg
    compress_args = {"rank": args.rank, "density": args.density, "row_fraction": args.row_fraction}
    mt_models, mt_note = load_multitask(args.multitask, cfg) if args.multitask else (None, None)
    trained_shared, shared_note = load_trained_shared(
        args.shared, args.checkpoint, models, ckpt_name, mt_models["segmentation"] if mt_models else None
    )
    variants, modules = main_variants(
        models,
        args.delta,
        compress_args,
        args.thresholds,
        args.token_fractions,
        trained_shared,
        args.shared_settings,
        (mt_models, args.multitask) if mt_models is not None else None,
    )
    samples, data_desc, gt = load_eval_samples(Path(args.data_root), args.split, cfg.img_size, args.samples)
    log.info("main setting: %d variants", len(variants))
    rows = measure(variants, models, samples, cfg.num_classes, gt, args.frames, args.warmup)
    env = environment_record()
    if env["cuda_available"]:
        ms = cuda_times(variants, modules, samples, args.frames * 4)
        for r in rows:
            r["ms_cuda"] = ms[r["name"]]
    storage = storage_table(models, compress_args)
    fractions = storage_fractions(storage, models, trained_shared)
    structures = delta_structures(models, compress_args, reps=5 if args.quick else 30)
    return {
        "machine": {
            "threads": env["torch_threads"],
            "cpu_count": env["cpu_count"],
            "torch": env["torch"],
            "python": env["python"],
            "cuda": env["cuda_device"],
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "environment": env,
        "checkpoint": ckpt_name,
        "trained": trained,
        "eval_data": data_desc,
        "image_size": list(cfg.img_size),
        "tokens": token_count(models["segmentation"]),
        "variants": rows,
        "storage": storage,
        "delta_structures": structures,
        "goals": goals_for(rows, fractions),
        "verdict": verdict_for(rows),
        "multitask": mt_note,
        "toy": None,
        "notes": notes_for(trained, shared_note, mt_note),
        "command": "bench/task_sharing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.toy_only:
        toy = run_toy(args)
        print("\n".join(variants_table(toy["variants"], False) + [""] + goals_table(toy["goals"])))
        print(json.dumps(toy["train"]["history"], indent=1))
        return 0

    result = run_main_setting(args, argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        out.with_suffix(".json").write_text(json.dumps(result, indent=1))
        out.with_suffix(".md").write_text(markdown(result))
        png = write_pareto_png(result["variants"], out.with_name(out.name + "_pareto.png"))
        log.info("wrote %s.json, .md and %s", out, png.name)

    write()  # the main setting survives an interrupted toy run
    log.info("verdict: %s", result["verdict"]["summary"])
    if args.toy_steps > 0:
        result["toy"] = run_toy(args)
        write()
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
