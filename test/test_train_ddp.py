"""Data-parallel training with 2 CPU processes (torchrun, gloo) follows the single-process trajectory."""

import os
import subprocess
import sys
from pathlib import Path

import torch
from ddp_compare import assert_data_parallel_matches, run_probe

from mtshare_ros.models import build_task_models, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    "model.img_size=[64,96]", "model.embed_dim=48", "model.depth=2", "model.num_heads=2", "model.feature_layers=[0,1]",
    "model.head_channels=48", "data.dataset=toy", "data.size=[64,96]", "data.num_workers=0", "train.batch_size=8",
    "train.steps=5", "train.warmup_steps=2", "train.threads=1", "train.crop=[32,48]", "train.full_res_steps=2",
    "train.lr=2.0e-3", "train.batch_augment.hflip=true", "train.batch_augment.colour=0.2",
]


def run_train(out_dir: Path, nproc: int) -> None:
    """``mtshare train`` under ``torchrun``, as a user runs it."""
    config = out_dir.parent / "toy.yaml"
    config.write_text("data:\n  dataset: toy\n")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd = [*launcher, "-m", "mtshare_ros.cli", "train", "--config", str(config), *ARGS, f"train.out_dir={out_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """Compared where float32 rounding cannot move the runs apart (``ddp_compare.py``: first-step gradients,
    every step's loss, the trained models' outputs), the one process on ATen's portable kernels so that the
    rounding differs as between an AVX2 and an AVX-512 machine."""
    one = run_probe(tmp_path / "one", 1, ARGS, {"ATEN_CPU_CAPABILITY": "default"})
    two = run_probe(tmp_path / "two", 2, ARGS)
    assert_data_parallel_matches(one, two)
    single, meta1 = load_checkpoint(one / "model.pt")
    meta2 = load_checkpoint(two / "model.pt")[1]
    assert meta1["provenance"]["world_size"] == 1 and meta2["provenance"]["world_size"] == 2
    torch.manual_seed(0)  # the trainer's seed: the weights both runs started from
    init = build_task_models(meta1["model_config"], list(single))
    for task in single:
        moved = (single[task].state_dict()["head.fuse.weight"] - init[task].state_dict()["head.fuse.weight"]).abs()
        assert moved.max() > 1e-3, "training did not change the weights: the comparison would be vacuous"
    # validation metrics are summed over both processes' shares of the split: same numbers as one process
    for task, res in meta1["provenance"]["val_metrics"].items():
        for key, value in res.items():
            if isinstance(value, float):
                assert abs(value - meta2["provenance"]["val_metrics"][task][key]) < 1e-3, f"{task} {key}"


def test_mtshare_train_runs_under_torchrun(tmp_path):
    """The console path: ``mtshare train`` with two processes writes a checkpoint that records them."""
    run_train(tmp_path / "two", 2)
    assert load_checkpoint(tmp_path / "two" / "model.pt")[1]["provenance"]["world_size"] == 2
