"""The shared engine in half precision, and without host synchronisation inside the layer loop.

Both run everywhere: half precision on the CPU (and on CUDA where present), and the sync-free loop on the
``meta`` device, where any read of a value back to the host raises; on CUDA it is also checked with the
driver's sync debug mode."""

import pytest
import torch

from mtshare_ros.models.vit import ModelConfig, build_task_models
from mtshare_ros.sharing import SharedMultiTaskModel

CFG = ModelConfig(
    img_size=(48, 80), embed_dim=48, depth=3, num_heads=2, feature_layers=(0, 2), head_channels=48, num_classes=5
)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
# tolerances: relative max error of segmentation logits and depth, mean angle of normals (deg)
TOLERANCE = {torch.float16: (0.01, 1.0), torch.bfloat16: (0.06, 3.0)}
THRESHOLDS = {"depth": 0.2, "normals": 0.5}


def _shared() -> SharedMultiTaskModel:
    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "depth", "normals"]).eval()
    subs = {t: models[t] for t in ("depth", "normals")}
    return SharedMultiTaskModel.from_dense(models["segmentation"], subs, "lowrank", rank=4).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_fp32(device, dtype):
    shared = _shared()
    x = torch.randn(2, 3, *CFG.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, _ = shared(x, THRESHOLDS, 0.5)
        shared.to(device, dtype)
        got, stats = shared(x.to(device, dtype), THRESHOLDS, 0.5)
    assert stats.sync_free == (device == "cuda")
    rel, deg = TOLERANCE[dtype]
    for task in ("segmentation", "depth"):
        assert got[task].dtype == dtype
        err = (got[task].float().cpu() - want[task]).abs().max() / want[task].abs().max()
        assert err < rel, (task, float(err))
    cos = (got["normals"].float().cpu() * want["normals"]).sum(1).clamp(-1, 1)
    assert torch.rad2deg(torch.acos(cos)).mean() < deg


def test_sync_free_loop_never_reads_the_device():
    """On ``meta`` tensors every host read (``.item()``, ``bool()``, ``.tolist()``) raises: a layer loop that
    runs there sizes every product without looking at a value. The syncing CPU path does not run there."""
    shared = _shared().to("meta")
    x = torch.empty(2, 3, *CFG.img_size, device="meta")
    with torch.no_grad():
        run = shared.run(x, thresholds=THRESHOLDS, max_token_fraction=0.5, sync_free=True)
        assert [layer.rows for layer in run.layers] == [2 * 8] * CFG.depth  # ceil(0.5 * 15) per frame: the budget
        assert run.outputs["normals"].shape == (2, 3, *CFG.img_size)
        with pytest.raises(RuntimeError, match="meta"):
            shared.run(x, thresholds=THRESHOLDS, max_token_fraction=0.5, sync_free=False)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_no_host_sync_inside_the_layer_loop_on_cuda():
    shared = _shared().to("cuda", torch.float16)
    x = torch.randn(1, 3, *CFG.img_size, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        shared.run(x, thresholds=0.2, max_token_fraction=0.5)  # warm-up (lazy initialisation may sync)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            run = shared.run(x, thresholds=THRESHOLDS, max_token_fraction=0.5)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    stats = shared.summarize(run)
    assert all(layer["depth"].rows == 8 for layer in stats.layers)  # ceil(0.5 * 15): the fixed budget
