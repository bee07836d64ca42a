"""Shared checkpoints and sub-task delta files: round trip, and clear refusals of what cannot run."""

import copy

import pytest
import torch

from mtshare_ros.models.checkpoint import CheckpointError, save_checkpoint
from mtshare_ros.models.vit import DenseViT, ModelConfig, build_task_models
from mtshare_ros.sharing import SharedMultiTaskModel, compress
from mtshare_ros.sharing.checkpoint import (
    SharedCheckpointError,
    attach_subtask,
    is_shared_checkpoint,
    load_shared,
    save_shared,
    save_subtask,
)
from mtshare_ros.sharing.loader import load_models

CFG = ModelConfig(
    img_size=(32, 48), embed_dim=32, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48, num_classes=4
)


def _shared(seed: int = 0, kind: str = "lowrank") -> SharedMultiTaskModel:
    torch.manual_seed(seed)
    models = build_task_models(CFG, ["segmentation", "depth", "normals"]).eval()
    subs = {t: models[t] for t in ("depth", "normals")}
    return SharedMultiTaskModel.from_dense(models["segmentation"], subs, kind, rank=3, density=0.3).eval()


def _x() -> torch.Tensor:
    return torch.randn(1, 3, *CFG.img_size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("kind", ["lowrank", "sparse", "rows", "dense"])
def test_shared_round_trip_gives_the_same_outputs(tmp_path, kind):
    model = _shared(kind=kind)
    path = save_shared(tmp_path / "shared.pt", model, ["a", "b", "c", "d"], provenance={"test": True})
    assert is_shared_checkpoint(path)
    loaded, meta = load_shared(path)
    assert meta["kind"] == "shared" and meta["tasks"] == ["segmentation", "depth", "normals"]
    with torch.no_grad():
        want, _ = model(_x(), thresholds=0.05)
        got, _ = loaded(_x(), thresholds=0.05)
    for task in want:
        assert torch.equal(want[task], got[task]), task


def test_shared_prefix_and_narrow_head_survive_the_round_trip(tmp_path):
    from mtshare_ros.training.subtask_steps import subtask_from_base

    model = _shared()
    st = subtask_from_base(model.base, "normals", "lowrank", 3, 0, start_layer=1, head_channels=24)
    model.set_subtask(st)
    loaded, _ = load_shared(save_shared(tmp_path / "s.pt", model, ["a", "b", "c", "d"]))
    st = loaded.subtasks["normals"]
    assert (st.start_layer, st.head_channels) == (1, 24)
    with torch.no_grad():
        assert torch.equal(model(_x(), thresholds=0.1)[0]["normals"], loaded(_x(), thresholds=0.1)[0]["normals"])


def test_subtask_file_alone_is_rejected_with_a_clear_message(tmp_path):
    model = _shared()
    path = save_subtask(tmp_path / "depth_delta.pt", model, "depth")
    assert not is_shared_checkpoint(path)
    with pytest.raises(SharedCheckpointError, match="sub-task delta file for task 'depth'.*cannot run without"):
        load_shared(path)


def test_subtask_file_attaches_to_its_own_base_only(tmp_path):
    model = _shared(seed=0)
    path = save_subtask(tmp_path / "normals_delta.pt", model, "normals")
    same_base = copy.deepcopy(model)
    del same_base.subtasks["normals"]
    assert attach_subtask(same_base, path) == "normals"
    with torch.no_grad():
        want, _ = model(_x(), tasks=["normals"])
        got, _ = same_base(_x(), tasks=["normals"])
    assert torch.equal(want["normals"], got["normals"])
    other = _shared(seed=1)
    with pytest.raises(SharedCheckpointError, match="was made against base"):
        attach_subtask(other, path)


def test_attaching_to_a_model_that_already_ran_replaces_what_it_computes(tmp_path):
    """The engine caches fused weights and head counts between frames; a new sub-task must not run stale ones."""
    trained = _shared(seed=0)
    with torch.no_grad():  # perturb the normals sub-task, so that its file differs from the model's own
        for p in trained.subtasks["normals"].parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = save_subtask(tmp_path / "normals_delta.pt", trained, "normals")
    model = copy.deepcopy(trained)
    model.set_subtask(_shared(seed=0).subtasks["normals"])
    with torch.no_grad():
        before, _ = model(_x(), 0.0, 1.0, tasks=["normals"])  # fills the caches
        attach_subtask(model, path)
        after, _ = model(_x(), 0.0, 1.0, tasks=["normals"])
        want, _ = trained(_x(), 0.0, 1.0, tasks=["normals"])
    assert not torch.allclose(before["normals"], want["normals"])
    assert torch.allclose(after["normals"], want["normals"], atol=1e-6)


def test_dense_checkpoint_is_named_and_convertible(tmp_path):
    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "depth"]).eval()
    path = save_checkpoint(tmp_path / "dense.pt", models, CFG, ["a", "b", "c", "d"])
    with pytest.raises(SharedCheckpointError, match="dense checkpoint of independent models"):
        load_shared(path)
    shared = load_models(path).shared
    with torch.no_grad():
        out, _ = shared(_x())
        assert torch.allclose(out["depth"], models["depth"](_x()), atol=1e-4)


def test_garbage_and_missing_files_are_rejected(tmp_path):
    with pytest.raises(SharedCheckpointError, match="not found"):
        load_shared(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SharedCheckpointError, match="not a readable torch checkpoint"):
        load_shared(bad)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(SharedCheckpointError, match="not a shared checkpoint"):
        load_shared(tmp_path / "other.pt")


def test_compression_reconstructs_what_it_keeps_and_stores_less():
    g = torch.Generator().manual_seed(0)
    low = torch.randn(40, 3, generator=g) @ torch.randn(3, 24, generator=g)
    d = compress(low, "lowrank", rank=3)
    assert torch.allclose(d.dense(), low, atol=1e-5) and d.stored_values() == 3 * (40 + 24)
    x = torch.randn(5, 24, generator=g)
    assert torch.allclose(d.apply(x), x @ low.t(), atol=1e-4)
    w = torch.randn(40, 24, generator=g)
    sparse = compress(w, "sparse", density=0.25)
    kept = sparse.dense()
    assert (kept != 0).sum() == 240 and torch.equal(kept[kept != 0], w[kept != 0])
    assert kept.abs().max() == w.abs().max()
    rows = compress(w, "rows", row_fraction=0.1)
    assert rows.stored_values() == 4 * 24
    assert torch.allclose(rows.apply(x), x @ rows.dense().t(), atol=1e-5)
    assert compress(torch.zeros(4, 4), "lowrank").kind == "zero"
    with pytest.raises(ValueError, match="unknown delta kind"):
        compress(w, "blocky")


def test_storage_of_a_lowrank_subtask_is_small():
    model = _shared()
    full = sum(p.numel() for p in DenseViT(CFG, "depth").parameters())
    st = model.subtasks["depth"].storage()
    assert st["values"] < full
    assert st["delta_values"] == sum(d.stored_values() for d in model.subtasks["depth"].deltas.values())


def test_one_loader_takes_both_kinds(tmp_path):
    """``load_models`` gives the engine and the dense models from a shared and from a dense checkpoint."""
    model = _shared()
    shared_path = save_shared(tmp_path / "s.pt", model, ["a", "b", "c", "d"])
    loaded = load_models(shared_path)
    assert loaded.sharing_source == "shared checkpoint" and loaded.shared.tasks == model.tasks
    assert loaded.dense["segmentation"] is loaded.shared.base and loaded.class_names == ["a", "b", "c", "d"]
    with torch.no_grad():  # the dense sub-task model is W_base + dW: what the engine computes at threshold 0
        want, _ = loaded.shared(_x(), 0.0, 1.0)
        assert torch.allclose(loaded.dense["normals"](_x()), want["normals"], atol=1e-4)
    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "normals"]).eval()
    dense_path = save_checkpoint(tmp_path / "d.pt", models, CFG, ["a", "b", "c", "d"])
    converted = load_models(dense_path)
    assert converted.sharing_source.startswith("exact deltas") and converted.shared.tasks == ["segmentation", "normals"]
    assert load_models(dense_path, shared=False).shared is None
    with pytest.raises(CheckpointError, match="no weights for task"):
        load_models(dense_path, tasks=["depth"])
    with pytest.raises(CheckpointError, match="not found"):
        load_models(tmp_path / "missing.pt")


def test_trained_subtasks_beside_a_dense_checkpoint_are_what_its_engine_runs(tmp_path):
    """A newly trained set (dense models plus ``<stem>_<task>.pt`` sub-task files, as scripts/train_v3.sh writes
    it) runs in the engine as the shipped set does, before it is shipped; files made for another base are not."""
    from mtshare_ros.sharing.loader import describe_checkpoint

    model = _shared(seed=0)
    torch.manual_seed(0)
    dense = build_task_models(CFG, ["segmentation", "depth", "normals"]).eval()
    dense["segmentation"].load_state_dict(model.base.state_dict())
    path = save_checkpoint(tmp_path / "v9.pt", dense, CFG, ["a", "b", "c", "d"])
    save_subtask(tmp_path / "v9_normals.pt", model, "normals")
    save_subtask(tmp_path / "v9_depth.pt", _shared(seed=1), "depth")  # another base: refused, exact deltas
    loaded = load_models(path)
    assert loaded.sharing_source == f"trained sub-task deltas (normals) from {tmp_path.name}/v9_<task>.pt"
    with torch.no_grad():
        want, _ = model(_x(), 0.05, 0.5, tasks=["normals"])
        got, _ = loaded.shared(_x(), 0.05, 0.5, tasks=["normals"])
    assert torch.equal(want["normals"], got["normals"])
    assert loaded.shared.subtasks["depth"].delta("blocks.0.attn.qkv.weight").kind == "dense"
    line = describe_checkpoint(str(path))
    assert "trained sub-task deltas for the shared engine: v9_normals.pt" in line
    assert "not used, made for another base: v9_depth.pt" in line
