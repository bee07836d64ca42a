"""The shipped default weights: loadable, documented provenance, and better than chance on a held-out room."""

import numpy as np
import pytest
import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.models import load_checkpoint
from mtshare_ros.models.checkpoint import DEFAULT_CHECKPOINT
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD
from mtshare_ros.training.metrics import DepthMetrics, NormalsMetrics, SegmentationMetrics


@pytest.fixture(scope="module")
def default():
    return load_checkpoint("default")


def test_default_is_small_fp16_with_provenance(default):
    models, meta = default
    assert list(models) == ["segmentation", "depth", "normals"]
    assert tuple(meta["class_names"]) == SYNTHETIC_CLASSES
    assert DEFAULT_CHECKPOINT.stat().st_size < 8e6 * len(models)  # fp16: a few MB per task
    prov = meta["provenance"]
    for key in ("command", "config", "steps", "train_time_s", "git_commit", "dataset", "val_metrics"):
        assert key in prov, key
    assert prov["command"].startswith("mtshare train --config config/train/synthetic_small.yaml")


def test_default_beats_chance_on_a_room_it_never_saw(default):
    """One frame of room 39 of the standard dataset (its val split), rendered here."""
    from mtshare_ros.data.synthetic import render_sequence

    frame = next(iter(render_sequence(39, 1)))
    models, _ = default
    torch.set_num_threads(1)
    x = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = {task: m(x) for task, m in models.items()}
    seg, dep, nor = SegmentationMetrics(len(SYNTHETIC_CLASSES)), DepthMetrics(), NormalsMetrics()
    seg.update(out["segmentation"], torch.from_numpy(frame.segmentation.astype(np.int64))[None])
    dep.update(out["depth"], torch.from_numpy(frame.depth)[None])
    nor.update(out["normals"], torch.from_numpy(frame.normals).permute(2, 0, 1)[None])
    # chance: ~1/15 pixel accuracy, abs-rel of a constant guess ~0.3, ~60 degrees for a constant normal
    assert seg.compute()["pixel_acc"] > 0.4
    assert dep.compute()["abs_rel"] < 0.35
    assert nor.compute()["mean_deg"] < 45.0
    assert torch.allclose(out["normals"].norm(dim=1), torch.ones(1), atol=1e-3)
