"""A multi-task checkpoint runs its one encoder once per frame, whatever the sharing setting (issue 27: with
sharing off it used to run it once per task, 1.8x the time for identical outputs)."""

from __future__ import annotations

import numpy as np
import torch

from mtshare_ros.runtime.predictor import Predictor
from mtshare_ros.runtime.settings import FrameSettings, SharingSettings


def _frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)


def test_multitask_checkpoint_runs_its_encoder_once_with_sharing_off():
    predictor = Predictor("multitask", device="cpu")
    encoders = {id(m.encoder): m.encoder for m in predictor.models.values()}
    assert len(encoders) == 1, "the tasks of a multi-task checkpoint hold one encoder object"
    calls = []
    handle = next(iter(encoders.values())).register_forward_hook(lambda *a: calls.append(1))
    try:
        off = predictor.predict(_frame(), FrameSettings(sharing=SharingSettings(enabled=False)))
        assert len(calls) == 1
        # the same maps as each task's own model run alone (one encoder, its head)
        x, _, _ = predictor.preprocess(_frame())
        with torch.inference_mode():
            alone = {t: m(x) for t, m in predictor.models.items()}
        calls.clear()
        seg = alone["segmentation"][0].max(0).indices.to(torch.uint8)
        assert torch.equal(off.maps["segmentation"], seg)
        torch.testing.assert_close(off.maps["normals"], alone["normals"][0].permute(1, 2, 0), rtol=1e-5, atol=1e-6)
    finally:
        handle.remove()


def test_independent_checkpoint_still_runs_one_encoder_per_task():
    predictor = Predictor("independent", device="cpu")
    assert len({id(m.encoder) for m in predictor.models.values()}) == len(predictor.models)


def test_default_engine_reports_which_subtasks_own_blocks():
    """The default engine: depth owns every block of its trained sub-task, normals none (the multi-task head on
    the shared encoder), so its 0% recomputed is by design and the stats say so (the demo reads it)."""
    predictor = Predictor("default", device="cpu")
    depth = len(predictor.shared.base.encoder.blocks)
    stats = predictor.predict(_frame()).stats
    assert stats["own_blocks_depth"] == depth and stats["own_blocks_normals"] == 0
    assert stats["recomputed_normals"] == 0.0 and 0.0 < stats["recomputed_depth"] <= 0.1 + 1e-9
