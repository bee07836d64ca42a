"""Data-parallel training with 2 CPU processes (torchrun, gloo) follows the single-process trajectory."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from mtshare_ros.models import build_task_models, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
ARGS = [
    "model.img_size=[64,96]", "model.embed_dim=48", "model.depth=2", "model.num_heads=2", "model.feature_layers=[0,1]",
    "model.head_channels=48", "data.dataset=toy", "data.size=[64,96]", "data.num_workers=0", "train.batch_size=8",
    "train.steps=5", "train.warmup_steps=2", "train.threads=1", "train.crop=[32,48]", "train.full_res_steps=2",
    "train.lr=2.0e-3", "train.batch_augment.hflip=true", "train.batch_augment.colour=0.2",
]


def run_train(out_dir: Path, nproc: int) -> None:
    config = out_dir.parent / "toy.yaml"
    config.write_text("data:\n  dataset: toy\n")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd = [*launcher, "-m", "mtshare_ros.cli", "train", "--config", str(config), *ARGS, f"train.out_dir={out_dir}"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    run_train(tmp_path / "one", 1)
    run_train(tmp_path / "two", 2)
    single, meta1 = load_checkpoint(tmp_path / "one" / "model.pt")
    ddp, meta2 = load_checkpoint(tmp_path / "two" / "model.pt")
    assert meta1["provenance"]["world_size"] == 1 and meta2["provenance"]["world_size"] == 2
    torch.manual_seed(0)  # the trainer's seed: the weights both runs started from
    init = build_task_models(meta1["model_config"], list(single))
    for task in single:
        ref, got = single[task].state_dict(), ddp[task].state_dict()
        for name, a in ref.items():
            assert torch.allclose(a, got[name], atol=2e-5, rtol=1e-4), f"{task}.{name} differs"
        moved = (ref["head.fuse.weight"] - init[task].state_dict()["head.fuse.weight"]).abs().max()
        assert moved > 1e-3, "training did not change the weights: the comparison would be vacuous"
    # validation metrics are summed over both processes' shares of the split: same numbers as one process
    for task, res in meta1["provenance"]["val_metrics"].items():
        for key, value in res.items():
            if isinstance(value, float):
                assert abs(value - meta2["provenance"]["val_metrics"][task][key]) < 1e-3, f"{task} {key}"
