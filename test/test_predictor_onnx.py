"""The predictor's exported-graph backends (onnxruntime, openvino) against its torch backend on a real-size frame:
the same maps within the export's parity tolerances (segmentation labels >= 99.9% equal, depth 1e-3 relative,
normals 0.1 degree), the same stats for the fixed budget; what a backend cannot run is refused by ``check``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnxscript")

from mtshare_ros.export.runner import BackendUnavailable  # noqa: E402
from mtshare_ros.runtime.onnx_backend import OnnxBackend  # noqa: E402
from mtshare_ros.runtime.predictor import Predictor  # noqa: E402
from mtshare_ros.runtime.settings import FrameSettings, SharingSettings, TemporalSettings  # noqa: E402


def camera_frame(h: int = 480, w: int = 640, seed: int = 3) -> np.ndarray:
    """A uint8 RGB frame with structure (smooth shading and boxes), at a camera's size."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / w
    img = np.stack([60 + 120 * yy, 90 + 100 * xx, 150 - 80 * yy * xx], -1)
    for _ in range(10):
        y0, x0 = rng.integers(0, h - 40), rng.integers(0, w - 40)
        img[y0 : y0 + rng.integers(20, h // 2), x0 : x0 + rng.integers(20, w // 2)] = rng.uniform(0, 255, 3)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One graph cache for the module: both backends run the graphs exported once."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MTSHARE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def torch_predictor(cache):
    return Predictor("default", "cpu")


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def predictors(request, torch_predictor):
    pytest.importorskip(request.param)
    return torch_predictor, Predictor("default", "cpu", backend=request.param)


@pytest.mark.parametrize("mode", ["fixed", "threshold"])
def test_exported_backend_gives_the_torch_maps_and_stats(predictors, mode):
    """Threshold mode runs as fixed on the exported backends (warned once): both compare with torch's fixed mode."""
    torch_p, ort_p = predictors
    rgb = camera_frame()
    ref = torch_p.predict(rgb, FrameSettings(sharing=SharingSettings(mode="fixed", max_token_fraction=0.2)))
    got = ort_p.predict(rgb, FrameSettings(sharing=SharingSettings(mode=mode, max_token_fraction=0.2)))
    assert got.size == ref.size == (240, 320) and set(got.maps) == set(ref.maps)
    seg = (got.maps["segmentation"] == ref.maps["segmentation"]).float().mean().item()
    assert seg >= 0.999, seg
    d, rd = got.maps["depth"], ref.maps["depth"]
    assert torch.equal(d.isnan(), rd.isnan())
    assert ((d - rd).abs() / rd.abs()).nan_to_num(0.0).max().item() <= 1e-3
    n, rn = got.maps["normals"], ref.maps["normals"]
    deg = torch.rad2deg(torch.atan2(torch.linalg.cross(n, rn).norm(dim=-1), (n * rn).sum(-1))).max().item()
    assert deg <= 0.1, deg
    for key in ("gmacs_executed", "gmacs_independent", "recomputed_depth", "recomputed_normals"):
        assert got.stats[key] == pytest.approx(ref.stats[key]), key
    assert got.stats[f"backend_{ort_p.backend}"] == 1.0


def test_exported_backend_without_sharing_runs_the_dense_graph_and_refuses_temporal(predictors):
    torch_p, ort_p = predictors
    rgb = camera_frame(seed=4)
    off = FrameSettings(tasks=("segmentation", "depth"), sharing=SharingSettings(enabled=False))
    got, ref = ort_p.predict(rgb, off), torch_p.predict(rgb, off)
    assert set(got.maps) == {"segmentation", "depth"} and got.stats["sharing"] == 0.0
    assert (got.maps["segmentation"] == ref.maps["segmentation"]).float().mean().item() >= 0.999
    assert "temporal" in ort_p.check(FrameSettings(temporal=TemporalSettings(enabled=True)))
    with pytest.raises(ValueError, match="backend must be"):
        Predictor("default", "cpu", backend="tensorflow")


def test_openvino_backend_refuses_a_gpu_device(torch_predictor):
    pytest.importorskip("openvino")
    with pytest.raises(BackendUnavailable, match="runs on the CPU"):
        OnnxBackend(torch_predictor.loaded, "cuda:0", backend="openvino")


def test_prepare_loads_the_graph_the_settings_run_before_any_frame(predictors):
    """The node and replay call ``prepare`` at configure: the first frame does not wait for an export."""
    _, exported = predictors
    fresh = Predictor("default", "cpu", backend=exported.backend)
    assert fresh.onnx.graphs == []
    fresh.prepare(FrameSettings(sharing=SharingSettings(mode="fixed", max_token_fraction=0.3)))
    assert fresh.onnx.graphs == [("engine", 0.3)]
    fresh.prepare(FrameSettings(sharing=SharingSettings(enabled=False)))
    assert fresh.onnx.graphs == [("engine", 0.3), ("independent", 1.0)]
