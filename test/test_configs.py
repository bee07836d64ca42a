"""Every training config the repository ships parses and passes its checks (a typo fails here, not after an
hour of training)."""

from pathlib import Path

import pytest

from mtshare_ros.sharing.train_cli import load_share_config
from mtshare_ros.training.config import load_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "config" / "train").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_training_configs_load(path):
    if path.stem.startswith("shared_"):
        for task in ("depth", "normals"):
            cfg = load_share_config(str(path), [f"task={task}"])
            assert task in cfg["out"]
    else:
        cfg = load_config(str(path), [])
        assert cfg["train"]["steps"] > 0


def test_the_sharing_recipe_chains_and_exports_once():
    """scripts/train_shared.sh: each round starts from the previous round's output; only the last exports."""
    script = (CONFIGS[0].parent.parent.parent / "scripts" / "train_shared.sh").read_text()
    rounds = [line.split("config/train/")[1].split(".yaml")[0] for line in script.splitlines()
              if "share-train --config" in line]
    cfgs = [load_share_config(str(CONFIGS[0].parent / f"{name}.yaml"), ["task=normals"]) for name in rounds]
    for before, after in zip(cfgs, cfgs[1:], strict=False):
        assert after["init"] == before["out"]
    assert [bool(c["export"]) for c in cfgs] == [False] * (len(cfgs) - 1) + [True]
    assert cfgs[-1]["export"].endswith("mtshare_ros/weights/default_normals.pt")
