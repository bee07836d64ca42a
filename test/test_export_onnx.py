"""The exported ONNX graphs against PyTorch (onnxruntime, CPU) at real input sizes: the trained width and
another one (the width is dynamic), each graph exported once per module. Tolerances from what float32 in
another summation order gives: segmentation labels >= 99.9% equal (ties at class boundaries may flip), depth
within 1e-3 relative, normals within 0.1 degree."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from mtshare_ros.export.onnx import KINDS, export_onnx, graph_of  # noqa: E402
from mtshare_ros.export.runner import BackendUnavailable, OnnxRunner, providers_for  # noqa: E402
from mtshare_ros.models.vit import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from mtshare_ros.sharing.loader import load_models  # noqa: E402
from mtshare_ros.sharing.tokens import token_budget  # noqa: E402

CAP = 0.1


def scene(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A normalised image with structure (gradients, boxes, texture): what a camera shows, not white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.3 + 0.4 * yy, 0.5 + 0.3 * xx, 0.6 - 0.3 * yy * xx], -1)
    for _ in range(8):
        y0, x0 = rng.integers(0, h - 20), rng.integers(0, w - 20)
        img[y0 : y0 + rng.integers(10, h // 2), x0 : x0 + rng.integers(10, w // 2)] = rng.uniform(0, 1, 3)
    img = np.clip(img + 0.03 * rng.standard_normal(img.shape), 0, 1).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def assert_parity(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(ref)
    for task, r in ref.items():
        g = got[task]
        assert g.shape == r.shape and g.dtype == torch.float32, task
        if task == "segmentation":
            agree = (g.argmax(1) == r.argmax(1)).float().mean().item()
            assert agree >= 0.999, f"segmentation labels {agree:.5f} equal"
        elif task == "depth":
            rel = ((g - r).abs() / r.abs().clamp_min(1e-6)).max().item()
            assert rel <= 1e-3, f"depth differs by {rel:.2e} relative"
        elif task == "normals":
            cross = torch.linalg.cross(g, r, dim=1).norm(dim=1)
            deg = torch.rad2deg(torch.atan2(cross, (g * r).sum(1))).max().item()
            assert deg <= 0.1, f"normals differ by {deg:.3f} deg"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every kind exported once (about 20 s each on one core), with the modules they were traced from."""
    out = tmp_path_factory.mktemp("onnx")
    shipped = {"independent": load_models("independent"), "multitask": load_models("multitask"),
               "engine": load_models("default")}
    graphs = {}
    for kind in KINDS:
        loaded = shipped[kind]
        path = export_onnx("default", kind, out, cap=CAP, loaded=loaded)
        graphs[kind] = (path, graph_of(loaded, kind, CAP)[0])
    return graphs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("width", [320, 416])
def test_graph_matches_pytorch_at_the_trained_and_another_width(exported, kind, width):
    path, module = exported[kind]
    runner = OnnxRunner(path)
    x = scene(240, width, seed=width)
    with torch.no_grad():
        ref = dict(zip(runner.outputs, module(x), strict=True))
    assert_parity(runner.run(x), ref)


def test_metadata_says_what_the_graph_is(exported):
    path, _ = exported["engine"]
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["tasks"] == ["segmentation", "depth", "normals"] == OnnxRunner(path).outputs
    assert meta["input_height"] == 240 and meta["patch_size"] == 16 and meta["mode"] == "fixed"
    assert meta["cap"] == CAP and meta["k_at_trained_width"] == token_budget(300, CAP) == math.ceil(CAP * 300)
    assert len(meta["classes"]) == 15 and len(meta["checkpoint_sha256_16"]) == 16
    assert json.loads(exported["multitask"][0].with_suffix(".json").read_text())["checkpoint"].endswith("multitask.pt")


def test_runner_refuses_a_wrong_input_and_a_missing_provider(exported):
    runner = OnnxRunner(exported["engine"][0])
    with pytest.raises(ValueError, match="takes"):
        runner.run(torch.zeros(1, 3, 240, 330))
    with pytest.raises(BackendUnavailable, match="available"):
        OnnxRunner(exported["engine"][0], ["NoSuchExecutionProvider"])
    assert providers_for("cpu") == ["CPUExecutionProvider"]


def test_threshold_mode_does_not_export(tmp_path):
    with pytest.raises(ValueError, match="fixed-budget"):
        export_onnx("default", "engine", tmp_path, mode="threshold")


def test_runtime_runner_picks_the_backend_and_device(exported):
    """The benchmarks' entry point: onnxruntime on the CPU gives the export's parity; a GPU device without its
    provider, an unknown backend, openvino off the CPU are refused with the reason."""
    from mtshare_ros.runtime.onnx_backend import OnnxRunner as Runner

    path, module = exported["engine"]
    x = scene(240, 320, seed=9)
    with torch.no_grad():
        ref = dict(zip(["segmentation", "depth", "normals"], module(x), strict=True))
    assert_parity(Runner(path, backend="onnxruntime", device="cpu", threads=1).run(x), ref)
    import onnxruntime

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailable, match="Execution"):
            Runner(path, device="tensorrt")
    with pytest.raises(ValueError, match="backend must be"):
        Runner(path, backend="tvm")
    with pytest.raises(BackendUnavailable, match="CPU"):
        Runner(path, backend="openvino", device="cuda")
