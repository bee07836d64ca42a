"""The shared engine on CUDA: half precision, and no host synchronisation inside the layer loop.

Skipped where no GPU is present (as on the 2-core development machine)."""

import pytest
import torch

from mtshare_ros.models.vit import ModelConfig, build_task_models
from mtshare_ros.sharing import SharedMultiTaskModel

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CFG = ModelConfig(
    img_size=(48, 80), embed_dim=48, depth=3, num_heads=2, feature_layers=(0, 2), head_channels=48, num_classes=5
)


def _shared() -> SharedMultiTaskModel:
    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "depth", "normals"]).eval()
    subs = {t: models[t] for t in ("depth", "normals")}
    return SharedMultiTaskModel.from_dense(models["segmentation"], subs, "lowrank", rank=4).eval()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_fp32(dtype):
    shared = _shared()
    x = torch.randn(2, 3, *CFG.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, _ = shared(x)
        shared.to("cuda", dtype)
        got, stats = shared(x.to("cuda", dtype))
    assert stats["sync_free"]
    for task in want:
        assert got[task].dtype == dtype
        err = (got[task].float().cpu() - want[task]).abs().max() / want[task].abs().max()
        assert err < 0.05, (task, float(err))


def test_no_host_sync_inside_the_layer_loop():
    shared = _shared().to("cuda", torch.float16)
    x = torch.randn(1, 3, *CFG.img_size, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        shared.run_raw(x, thresholds=0.2, max_token_fraction=0.5)  # warm-up (lazy initialisation may sync)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            raw = shared.run_raw(x, thresholds={"depth": 0.2, "normals": 0.5}, max_token_fraction=0.5)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    stats = shared._stats(raw)
    assert all(layer["depth"]["rows"] == 8 for layer in stats["layers"])  # ceil(0.5 * 15): the fixed budget
