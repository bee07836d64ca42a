"""Frames of several cameras in one pass equal each frame alone (the shipped models, task sharing on): the batch
reorders float sums only, so labels agree on >= 99.9% of pixels, depth to 1e-4 relative, unit normals to 1e-4
(99.9% of pixels); token selection stays per frame (a frame's recomputed tokens do not depend on the other frames)."""

import numpy as np
import pytest
import torch

from mtshare_ros.ros.harness import pattern_frame
from mtshare_ros.runtime.predictor import Predictor
from mtshare_ros.runtime.settings import FrameSettings


@pytest.fixture(scope="module")
def predictor():
    torch.set_num_threads(1)
    return Predictor("default", "cpu")


@pytest.mark.parametrize("sharing", [True, False])
def test_a_batch_of_cameras_equals_each_camera_alone(predictor, sharing):
    from dataclasses import replace

    settings = FrameSettings()
    settings = replace(settings, sharing=replace(settings.sharing, enabled=sharing))
    frames = [pattern_frame(s, 240, 320) for s in (0, 1, 2)]
    batch = predictor.predict_batch(frames, settings)
    singles = [predictor.predict(rgb, settings) for rgb in frames]
    for alone, together in zip(singles, batch, strict=True):
        labels = (alone.maps["segmentation"] == together.maps["segmentation"]).float().mean().item()
        assert labels >= 0.999, labels
        for task in ("depth", "normals"):
            a, b = alone.maps[task], together.maps[task]
            finite = torch.isfinite(a) & torch.isfinite(b)
            assert (torch.isfinite(a) == torch.isfinite(b)).float().mean() >= 0.999
            # depth relative to itself; normals are unit vectors, so their error is relative to 1
            scale = a.abs().clamp_min(1e-3) if task == "depth" else torch.ones_like(a)
            rel = ((a - b).abs() / scale)[finite]
            assert rel.quantile(0.999).item() <= 1e-4, (task, rel.max().item())
    if sharing:  # each frame selects its own tokens: the batch recomputes the frames' tokens, no more, no fewer
        assert batch[0].stats["batch"] == 3.0
        for task in ("depth", "normals"):
            mean = np.mean([p.stats[f"recomputed_{task}"] for p in singles])
            assert batch[0].stats[f"recomputed_{task}"] == pytest.approx(mean, abs=1e-6), task
    assert np.isclose(batch[0].stats.get("gmacs_executed", 0.0), batch[1].stats.get("gmacs_executed", 0.0))


def test_a_batch_refuses_mixed_sizes_and_temporal(predictor):
    from dataclasses import replace

    with pytest.raises(ValueError, match="one inference size"):
        predictor.predict_batch([pattern_frame(0, 240, 320), pattern_frame(0, 240, 480)], FrameSettings())
    temporal = replace(FrameSettings(), temporal=replace(FrameSettings().temporal, enabled=True))
    with pytest.raises(ValueError, match="without temporal"):
        predictor.predict_batch([pattern_frame(0, 240, 320)] * 2, temporal)
