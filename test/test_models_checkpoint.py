"""Checkpoint round trip, mismatch errors and crop positions, on real small models (pretrained weights:
test_pretrained.py)."""

import dataclasses

import pytest
import torch

from mtshare_ros.models import CheckpointError, ModelConfig, build_task_models, load_checkpoint, save_checkpoint
from mtshare_ros.models.checkpoint import CHECKPOINT_VERSION

SMALL = ModelConfig(img_size=(64, 96), embed_dim=48, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48,
                    num_classes=5)
TASKS = ["segmentation", "depth", "normals"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return build_task_models(SMALL, TASKS).eval()


def test_round_trip_gives_identical_outputs(models, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", models, SMALL, [f"c{i}" for i in range(5)], {"steps": 3})
    loaded, meta = load_checkpoint(path)
    assert meta["tasks"] == TASKS and meta["provenance"] == {"steps": 3} and meta["model_config"] == SMALL
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for task in TASKS:
            assert torch.equal(models[task](x), loaded[task](x))


def test_fp16_checkpoint_is_smaller_and_close(models, tmp_path):
    full = save_checkpoint(tmp_path / "f.pt", models, SMALL, ["c"] * 5)
    half = save_checkpoint(tmp_path / "h.pt", models, SMALL, ["c"] * 5, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(models["depth"](x), loaded["depth"](x), rtol=2e-2, atol=1e-3)


def test_other_shape_names_the_differing_tensor(models, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", models, SMALL, ["c"] * 5)
    ckpt = torch.load(path, weights_only=True)
    ckpt["weights"]["depth"]["head.fuse.weight"] = torch.zeros(7, 96, 1, 1)
    torch.save(ckpt, path)
    expected = r"\[depth\].*head\.fuse\.weight.*\(7, 96, 1, 1\) vs model \(48, 96, 1, 1\)"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_other_config_names_the_differing_field(models, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", models, SMALL, ["c"] * 5)
    with pytest.raises(CheckpointError, match="embed_dim: checkpoint 48 vs expected 64"):
        load_checkpoint(path, cfg=dataclasses.replace(SMALL, embed_dim=64))


def test_other_version_is_rejected_with_both_versions(models, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", models, SMALL, ["c"] * 5)
    ckpt = torch.load(path, weights_only=True)
    ckpt["version"] = CHECKPOINT_VERSION + 1
    torch.save(ckpt, path)
    expected = f"version {CHECKPOINT_VERSION + 1} but .* reads version {CHECKPOINT_VERSION}"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path)


def test_missing_task_is_named(models, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_task_models(SMALL, ["segmentation"]), SMALL, ["c"] * 5)
    expected = r"no weights for task\(s\) \['normals'\]; checkpoint has \['segmentation'\]"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(path, tasks=["segmentation", "normals"])


def test_crop_with_offset_uses_the_positions_of_the_full_frame(models):
    """A patch-aligned crop sees the same positional embedding as that region of the full frame."""
    enc = models["depth"].encoder
    x = torch.randn(1, 3, 64, 96)
    full_tokens, grid = enc.embed(x)
    crop_tokens, cgrid = enc.embed(x[..., 16:48, 32:80], offset=(1, 2))
    assert grid == (4, 6) and cgrid == (2, 3)
    full = full_tokens.reshape(1, 4, 6, -1)[:, 1:3, 2:5].reshape(1, 6, -1)
    assert torch.allclose(full, crop_tokens, atol=1e-6)
    with pytest.raises(ValueError, match="outside the 4x6 patch grid"):
        enc.embed(x[..., 16:48, 32:80], offset=(3, 2))
