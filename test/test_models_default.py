"""The shipped weights (the node's default, the multi-task model with its sub-tasks, and the independent models):
loadable, documented provenance, and better than chance on a held-out room."""

import shutil

import numpy as np
import pytest
import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.models import load_checkpoint
from mtshare_ros.models.checkpoint import (
    DEFAULT_CHECKPOINT,
    INDEPENDENT_CHECKPOINT,
    MULTITASK_CHECKPOINT,
    checkpoint_shares_encoder,
    resolve_checkpoint,
)
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD
from mtshare_ros.sharing import loader
from mtshare_ros.sharing.loader import subtask_files
from mtshare_ros.training.metrics import DepthMetrics, NormalsMetrics, SegmentationMetrics


@pytest.fixture(scope="module")
def independent():
    return load_checkpoint("independent")


def test_the_shipped_names_resolve_to_the_files_in_the_package():
    assert resolve_checkpoint("default") == DEFAULT_CHECKPOINT == MULTITASK_CHECKPOINT
    assert resolve_checkpoint("multitask") == MULTITASK_CHECKPOINT
    assert resolve_checkpoint("independent") == INDEPENDENT_CHECKPOINT


def test_independent_models_are_small_fp16_with_provenance(independent):
    models, meta = independent
    assert list(models) == ["segmentation", "depth", "normals"]
    assert tuple(meta["class_names"]) == SYNTHETIC_CLASSES
    assert INDEPENDENT_CHECKPOINT.stat().st_size < 8e6 * len(models)  # fp16: a few MB per task
    prov = meta["provenance"]
    for key in ("command", "config", "steps", "train_time_s", "git_commit", "dataset", "val_metrics"):
        assert key in prov, key
    assert prov["command"].startswith("mtshare train --config config/train/v3_finetune.yaml")


@pytest.mark.parametrize("name", ["independent", "multitask"])
def test_shipped_models_beat_chance_on_rooms_they_never_saw(name):
    """One frame of each of five rooms of the current generator (none of them trained on), scored together:
    single frames vary too much (a view of one textured wall can defeat segmentation)."""
    from mtshare_ros.data.synthetic import render_sequence

    models, _ = load_checkpoint(name)
    torch.set_num_threads(1)
    seg, dep, nor = SegmentationMetrics(len(SYNTHETIC_CLASSES)), DepthMetrics(), NormalsMetrics()
    for seed in range(39, 44):
        frame = next(iter(render_sequence(seed, 1)))
        x = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float() / 255.0
        x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        with torch.no_grad():
            out = {task: m(x) for task, m in models.items()}
        seg.update(out["segmentation"], torch.from_numpy(frame.segmentation.astype(np.int64))[None])
        dep.update(out["depth"], torch.from_numpy(frame.depth)[None])
        nor.update(out["normals"], torch.from_numpy(frame.normals).permute(2, 0, 1)[None])
        assert torch.allclose(out["normals"].norm(dim=1), torch.ones(1), atol=1e-3)
    # chance: ~1/15 pixel accuracy; a constant-shape guess ~0.4 scale-aligned abs-rel; ~60 deg for one normal
    assert seg.compute()["pixel_acc"] > 0.4
    assert dep.compute()["abs_rel_aligned"] < 0.35
    assert nor.compute()["mean_deg"] < 45.0


def test_independent_runs_its_trained_subtasks_in_the_shared_engine():
    """``checkpoint: independent``: independent models with sharing off, the trained deltas in the engine."""
    loaded = loader.load_models("independent")
    dense, shared = loaded.dense, loaded.shared
    assert "trained sub-task deltas (depth, normals)" in loaded.sharing_source
    full = sum(p.numel() for p in dense["depth"].parameters())
    for task in ("depth", "normals"):
        st = shared.subtasks[task]
        assert st.start_layer > 0 and {d.kind for d in st.deltas.values()} <= {"lowrank", "zero"}
        assert st.storage()["values"] <= 0.15 * full, task  # the storage goal of a sub-task
        assert subtask_files(INDEPENDENT_CHECKPOINT)[task].stat().st_size < 1.5e6
        assert dense[task] is not shared.base and dense[task].task == task  # the independent model
    assert dense["segmentation"] is shared.base


def test_the_shipped_multitask_model_runs_as_one_encoder_and_three_heads():
    """``checkpoint: multitask``: the baseline MODELS.md measures beside the engine, installed with the package."""
    models, meta = load_checkpoint("multitask")
    assert checkpoint_shares_encoder(meta) and list(models) == ["segmentation", "depth", "normals"]
    assert meta["provenance"]["command"].startswith("mtshare train --config config/train/v3_multitask.yaml")
    assert MULTITASK_CHECKPOINT.stat().st_size < 8e6  # fp16: one encoder and three heads
    loaded = loader.load_models("multitask")
    # depth: its trained sub-task; normals: no file, so the multi-task head on the base encoder, nothing recomputed
    assert loaded.sharing_source.startswith("trained sub-task deltas (depth) from weights/multitask_<task>.pt")
    assert "normals: the multi-task model's own head" in loaded.sharing_source
    assert loaded.shared.subtasks["normals"].start_layer == len(loaded.shared.base.encoder.blocks)
    line = loader.describe_checkpoint("multitask")
    assert "[multi-task model: one encoder shared by every task]" in line and "multitask_depth.pt" in line


def test_subtask_files_for_another_base_fall_back_to_exact_deltas(tmp_path, caplog):
    from mtshare_ros.models.vit import DenseViT
    from mtshare_ros.sharing import SharedMultiTaskModel
    from mtshare_ros.sharing.checkpoint import save_subtask
    from mtshare_ros.training.subtask_steps import subtask_from_base

    _, meta = load_checkpoint("independent")
    other = DenseViT(meta["model_config"], "segmentation")  # a freshly initialised, different base
    foreign = SharedMultiTaskModel(other, {"depth": subtask_from_base(other, "depth", "lowrank", 4, 0, 4)})
    ckpt = tmp_path / "ind.pt"
    shutil.copy(INDEPENDENT_CHECKPOINT, ckpt)
    save_subtask(tmp_path / "ind_depth.pt", foreign, "depth")
    with caplog.at_level("WARNING"):
        loaded = loader.load_models(ckpt)
    shared = loaded.shared
    assert "made against base" in caplog.text
    assert loaded.sharing_source == "exact deltas from the independent models"
    assert shared.subtasks["depth"].delta("blocks.0.attn.qkv.weight").kind == "dense"
    line = loader.describe_checkpoint(str(ckpt))  # says what runs, not merely which files exist
    assert "not used, made for another base: ind_depth.pt" in line and "trained sub-task deltas" not in line
