"""Sub-tasks on the multi-task base, trained at the node's token budget (step ``budget``), on a tiny model."""

import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.models.checkpoint import save_checkpoint
from mtshare_ros.models.vit import ModelConfig, build_task_models
from mtshare_ros.sharing.checkpoint import load_shared
from mtshare_ros.sharing.tokens import token_budget
from mtshare_ros.training.share_train_cli import build_model, load_share_config, main
from mtshare_ros.training.subtask_steps import penalty_above_budget

CFG = ModelConfig(
    img_size=(64, 96), embed_dim=32, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48, num_classes=15
)
CAP = 0.25


def _multitask(tmp_path):
    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "depth", "normals"], shared_encoder=True).eval()
    return models, save_checkpoint(tmp_path / "multitask.pt", models, CFG, SYNTHETIC_CLASSES)


def _args(mt, out, steps=4):
    return [
        "task=depth", "step=budget", "delta=lowrank", "rank=4", f"base_checkpoint={mt}", f"head_init={mt}",
        f"out={out}", "data.dataset=toy", "train.batch_size=4", f"train.steps={steps}", "train.log_every=1",
        "train.threads=1", "train.lr=3e-3", "train.head_lr=1e-3", "train.penalty_weight=0.1",
        f"train.max_token_fraction={CAP}",
    ]


def test_nothing_recomputed_on_the_multitask_base_is_the_multitask_model(tmp_path):
    models, mt = _multitask(tmp_path)
    shared, _, _ = build_model(load_share_config(None, _args(mt, tmp_path / "o.pt")))
    shared.eval()
    x = torch.randn(2, 3, *CFG.img_size)
    with torch.no_grad():
        want = models["depth"](x)
        for cap in (0.0, CAP, 1.0):  # dW = 0: whatever is recomputed, nothing changes before training
            got = shared.run(x, thresholds=0.0, max_token_fraction=cap, tasks=["depth"]).outputs["depth"]
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_training_at_the_budget_makes_recomputed_tokens_count_and_saves_the_head(tmp_path):
    models, mt = _multitask(tmp_path)
    out = tmp_path / "depth_budget.pt"
    assert main(_args(mt, out, steps=6)) == 0
    shared, meta = load_shared(out)
    shared.eval()
    assert "depth/budget" in meta["provenance"]["train_steps"]
    head = shared.subtasks["depth"].head.state_dict()
    assert any(not torch.equal(head[k], v) for k, v in models["depth"].head.state_dict().items())  # head trained
    x = torch.randn(2, 3, *CFG.img_size)
    with torch.no_grad():
        at_cap = shared.run(x, thresholds=0.0, max_token_fraction=CAP, tasks=["depth"])
        none = shared.run(x, thresholds=0.0, max_token_fraction=0.0, tasks=["depth"])
    n = at_cap.tokens
    k = token_budget(n, CAP)
    assert 0 < k < n
    scored = [layer for layer in at_cap.layers if "depth" in layer.stacked]
    assert scored and all(layer.rows == 2 * k for layer in scored)  # exactly k rows per frame and layer
    # the recomputed tokens change the output: the deltas trained away from zero
    assert (at_cap.outputs["depth"] - none.outputs["depth"]).abs().max() > 1e-4


def test_penalty_ignores_the_top_k_tokens():
    s = torch.tensor([[5.0, 1.0, 2.0, 0.5], [0.1, 0.2, 9.0, 0.3]], requires_grad=True)
    pen = penalty_above_budget([s], budget=1)
    torch.testing.assert_close(pen, torch.tensor((1.0 + 2.0 + 0.5 + 0.1 + 0.2 + 0.3) / 6))
    pen.backward()
    assert s.grad[0, 0] == 0 and s.grad[1, 2] == 0  # the recomputed tokens are not pushed down
    assert (s.grad[0, 1:] > 0).all() and s.grad[1, 0] > 0
    every = penalty_above_budget([s.detach()], budget=4)  # all tokens recomputed: nothing to penalise
    assert every == 0
