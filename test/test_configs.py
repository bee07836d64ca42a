"""Every training config the repository ships parses and passes its checks (a typo fails here, not after an
hour of training)."""

import os
import subprocess
from pathlib import Path

import pytest

from mtshare_ros.training.config import load_config
from mtshare_ros.training.share_train_cli import load_share_config
from mtshare_ros.training.temporal_step import load_temporal_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "config" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_training_configs_load(path):
    if path.stem.startswith("temporal_"):
        cfg = load_temporal_config(str(path))
        assert cfg["train"]["steps"] > 0 and cfg["data"]["rooms"]
    elif path.stem.startswith("shared_"):
        for task in ("depth", "normals"):
            cfg = load_share_config(str(path), [f"task={task}"])
            assert task in cfg["out"]
    else:
        cfg = load_config(str(path), [])
        assert cfg["train"]["steps"] > 0


def test_the_sharing_recipe_chains_and_exports_once(tmp_path):
    """scripts/train_shared.sh, run with a stand-in interpreter that prints its arguments: per task, each round
    starts from the previous round's output, and only the last exports, to the shipped file."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    script = CONFIGS[0].parent.parent.parent / "scripts" / "train_shared.sh"
    out = subprocess.run(["bash", str(script)], env={**os.environ, "PYTHON": str(fake)}, capture_output=True,
                         text=True, check=True).stdout
    calls = [line.split()[3:] for line in out.splitlines()]  # -m mtshare_ros.cli share-train --config ...
    for task in ("depth", "normals"):
        cfgs = [load_share_config(str(script.parent.parent / c[1]), c[2:]) for c in calls if f"task={task}" in c]
        assert cfgs[0]["step"] == "l1" and cfgs[0]["init"] is None
        for before, after in zip(cfgs, cfgs[1:], strict=False):
            assert after["init"] == before["out"]
        assert [bool(c["export"]) for c in cfgs] == [False] * (len(cfgs) - 1) + [True]
        assert cfgs[-1]["export"] == f"mtshare_ros/weights/independent_{task}.pt"


def test_the_sharing_recipe_runs_against_another_base_and_resumes_by_round(tmp_path):
    """BASE / DATA / RUNS / EXPORT retarget the chain (the v3 models); RESUME=1 skips rounds already done."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    script = CONFIGS[0].parent.parent.parent / "scripts" / "train_shared.sh"
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "depth_lowrank_step1.pt").write_bytes(b"done")
    env = {**os.environ, "PYTHON": str(fake), "BASE": "base.pt", "DATA": "[data/v3/a]", "RUNS": str(runs),
           "EXPORT": "out/default_{task}.pt", "RESUME": "1"}
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=True).stdout
    calls = [line.split()[3:] for line in out.splitlines()]
    cfgs = {(c[2], c[1]): load_share_config(str(script.parent.parent / c[1]), c[2:]) for c in calls}
    assert ("task=depth", "config/train/shared_lowrank_step1.yaml") not in cfgs  # its output exists
    assert ("task=normals", "config/train/shared_lowrank_step1.yaml") in cfgs
    for (_, name), cfg in cfgs.items():
        assert cfg["base_checkpoint"] == "base.pt" and cfg["data"]["root"] == ["data/v3/a"]
        assert cfg["out"].startswith(str(runs))
        assert cfg["distill"] == ("base.pt" if "distill" in name or "grow" in name else None), name
    assert [c["export"] for c in cfgs.values() if c["export"]] == ["out/default_depth.pt", "out/default_normals.pt"]
