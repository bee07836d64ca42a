"""The predictor's exported-graph backends (onnxruntime here, openvino in a child process: openvino_parity.py)
against its torch backend on a real-size frame:
the same maps within the export's parity tolerances (segmentation labels >= 99.9% equal, depth 1e-3 relative,
normals 0.1 degree), the same stats for the fixed budget; what a backend cannot run is refused by ``check``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxscript")

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
    """One graph cache for the module (the openvino child process inherits it): graphs exported once."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MTSHARE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def torch_predictor(cache):
    return Predictor("default", "cpu")


@pytest.fixture(scope="module")
def predictors(torch_predictor):
    pytest.importorskip("onnxruntime")
    return torch_predictor, Predictor("default", "cpu", backend="onnxruntime")


def compare(got, ref) -> dict:
    """What the parity tolerances are judged on, for one frame of an exported backend against torch."""
    d, rd = got.maps["depth"], ref.maps["depth"]
    n, rn = got.maps["normals"], ref.maps["normals"]
    return {
        "size": [list(got.size), list(ref.size)], "maps": [sorted(got.maps), sorted(ref.maps)],
        "seg_equal": (got.maps["segmentation"] == ref.maps["segmentation"]).float().mean().item(),
        "depth_nan_same": bool(torch.equal(d.isnan(), rd.isnan())),
        "depth_rel": ((d - rd).abs() / rd.abs()).nan_to_num(0.0).max().item(),
        "normals_deg": torch.rad2deg(torch.atan2(torch.linalg.cross(n, rn).norm(dim=-1),
                                                 (n * rn).sum(-1))).max().item(),
        "stats": {k: [got.stats[k], ref.stats[k]] for k in ("gmacs_executed", "gmacs_independent",
                                                               "recomputed_depth", "recomputed_normals")},
        "backend_flag": [k for k, v in got.stats.items() if k.startswith("backend_") and v == 1.0],
    }


def assert_parity(c: dict, backend: str) -> None:
    assert c["size"] == [[240, 320], [240, 320]] and c["maps"][0] == c["maps"][1]
    assert c["seg_equal"] >= 0.999, c["seg_equal"]
    assert c["depth_nan_same"] and c["depth_rel"] <= 1e-3, c["depth_rel"]
    assert c["normals_deg"] <= 0.1, c["normals_deg"]
    for key, (a, b) in c["stats"].items():
        assert a == pytest.approx(b), key
    assert c["backend_flag"] == [f"backend_{backend}"]


@pytest.mark.parametrize("mode", ["fixed", "threshold"])
def test_exported_backend_gives_the_torch_maps_and_stats(predictors, mode):
    """Threshold mode runs as fixed on the exported backends (warned once): both compare with torch's fixed mode."""
    torch_p, ort_p = predictors
    rgb = camera_frame()
    ref = torch_p.predict(rgb, FrameSettings(sharing=SharingSettings(mode="fixed", max_token_fraction=0.2)))
    got = ort_p.predict(rgb, FrameSettings(sharing=SharingSettings(mode=mode, max_token_fraction=0.2)))
    assert_parity(compare(got, ref), ort_p.backend)


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


def test_openvino_backend_gives_the_torch_maps_in_its_own_process(cache):
    """openvino runs in a child process (test/openvino_parity.py says why): the same parity, the graph prepared
    before the first frame, and a GPU device refused."""
    pytest.importorskip("openvino")
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, str(here / "openvino_parity.py")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["graphs_before"] == [] and out["graphs_prepared"] == [["engine", 0.2]]
    for mode in ("fixed", "threshold"):
        assert_parity(out[mode], "openvino")
    assert "runs on the CPU" in out["gpu_refused"]


def test_prepare_loads_the_graph_the_settings_run_before_any_frame(predictors):
    """The node and replay call ``prepare`` at configure: the first frame does not wait for an export."""
    _, exported = predictors
    fresh = Predictor("default", "cpu", backend=exported.backend)
    assert fresh.onnx.graphs == []
    fresh.prepare(FrameSettings(sharing=SharingSettings(mode="fixed", max_token_fraction=0.3)))
    assert fresh.onnx.graphs == [("engine", 0.3)]
    fresh.prepare(FrameSettings(sharing=SharingSettings(enabled=False)))
    assert fresh.onnx.graphs == [("engine", 0.3), ("independent", 1.0)]
