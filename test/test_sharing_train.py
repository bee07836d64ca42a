"""The three sharing training steps on a tiny model and the procedural toy scenes, through the CLI."""

import itertools

import torch
from torch.utils.data import DataLoader

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.models.checkpoint import save_checkpoint
from mtshare_ros.models.vit import ModelConfig, build_task_models
from mtshare_ros.sharing import SharedMultiTaskModel
from mtshare_ros.sharing.checkpoint import load_shared
from mtshare_ros.sharing.deltas import SparseDelta
from mtshare_ros.training.share_train_cli import main
from mtshare_ros.training.subtask_steps import subtask_from_base, train_subtask
from mtshare_ros.training.toy_data import ToyScenes

CFG = ModelConfig(
    img_size=(64, 96), embed_dim=32, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48, num_classes=15
)
COMMON = ["data.dataset=toy", "train.batch_size=4", "train.steps=3", "train.log_every=1", "train.threads=1"]


def _base_checkpoint(tmp_path):
    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation"]).eval()
    return save_checkpoint(tmp_path / "dense.pt", models, CFG, SYNTHETIC_CLASSES)


def test_three_steps_through_the_cli_keep_a_fixed_pattern(tmp_path):
    dense = _base_checkpoint(tmp_path)
    out = tmp_path / "{task}_s{n}.pt"
    assert (
        main(
            [
                "task=depth",
                "step=l1",
                f"base_checkpoint={dense}",
                f"out={str(out).replace('{n}', '1')}",
                *COMMON,
                "train.penalty_weight=0.01",
            ]
        )
        == 0
    )
    s1 = str(out).format(task="depth", n=1)
    assert (
        main(
            ["task=depth", "step=pattern", "density=0.1", f"init={s1}", f"out={str(out).replace('{n}', '2')}", *COMMON]
        )
        == 0
    )
    s2 = str(out).format(task="depth", n=2)
    pattern, _ = load_shared(s2)
    deltas = pattern.subtasks["depth"].deltas
    assert all(isinstance(d, SparseDelta) for d in deltas.values())
    key = "blocks__0__mlp__fc1__weight"
    assert deltas[key].values.numel() == round(0.1 * deltas[key].out_features * deltas[key].in_features)
    assert (
        main(
            [
                "task=depth",
                "step=activation",
                f"init={s2}",
                f"out={str(out).replace('{n}', '3')}",
                *COMMON,
                "train.threshold=0.05",
                "train.penalty_weight=0.1",
                "train.max_token_fraction=0.5",
            ]
        )
        == 0
    )
    final, meta = load_shared(str(out).format(task="depth", n=3))
    after = final.subtasks["depth"].deltas[key]
    assert torch.equal(after.index, deltas[key].index)  # the pattern stayed fixed
    assert not torch.equal(after.values, deltas[key].values)  # its values trained
    assert set(meta["provenance"]["train_steps"]) == {"depth/l1", "depth/pattern", "depth/activation"}
    # the base never moves
    assert all(
        torch.equal(a, b)
        for a, b in zip(final.base.state_dict().values(), pattern.base.state_dict().values(), strict=True)
    )


def test_a_fresh_subtask_equals_the_base_and_skips_everything():
    torch.manual_seed(0)
    base = build_task_models(CFG, ["segmentation"])["segmentation"].eval()
    shared = SharedMultiTaskModel(base, {"depth": subtask_from_base(base, "depth", "lowrank", 4, seed=0)}).eval()
    x = torch.randn(1, 3, *CFG.img_size)
    with torch.no_grad():
        _, stats = shared(x, thresholds=1e-6)
    assert stats.recomputed_fraction["depth"] == 0.0


def test_activation_step_shrinks_activation_deltas():
    torch.manual_seed(0)
    base = build_task_models(CFG, ["segmentation"])["segmentation"].eval()
    st = subtask_from_base(base, "depth", "lowrank", 4, seed=0)
    with torch.no_grad():
        for d in st.deltas.values():
            d.b.normal_(0, 0.3)  # a sub-task far from the base
    shared = SharedMultiTaskModel(base, {"depth": st})
    data = DataLoader(ToyScenes(16, CFG.img_size, seed=0), batch_size=4)
    hist = train_subtask(
        shared,
        "depth",
        "activation",
        itertools.cycle(data),
        steps=12,
        lr=3e-3,
        penalty_weight=1.0,
        threshold=0.05,
        log_every=1,
    )
    assert hist[-1]["penalty"] < 0.7 * hist[0]["penalty"], hist


def test_lowrank_steps_with_a_shared_prefix_export_a_subtask_that_attaches_to_its_base(tmp_path):
    """The shipped recipe in small: step 1 on the owned last block, step 3 with a token cap, then the
    exported fp16 sub-task file attaches to the dense base it was trained on."""
    from mtshare_ros.models.checkpoint import load_checkpoint
    from mtshare_ros.sharing.checkpoint import attach_subtask

    dense = _base_checkpoint(tmp_path)
    s1, s3, sub = tmp_path / "n1.pt", tmp_path / "n3.pt", tmp_path / "normals_sub.pt"
    lowrank = ["task=normals", "delta=lowrank", "rank=4", "start_layer=1", "head_channels=24", *COMMON,
               "train.batch_augment.hflip=true", "train.batch_augment.colour=0.2"]
    assert main([*lowrank, "step=l1", f"base_checkpoint={dense}", f"out={s1}"]) == 0
    step3 = ["step=activation", f"init={s1}", f"out={s3}", f"export={sub}", "train.max_token_fraction=0.5"]
    assert main([*lowrank, *step3, "train.threshold=0.01"]) == 0
    trained, _ = load_shared(s3)
    st = trained.subtasks["normals"]
    assert (st.start_layer, st.head_channels) == (1, 24)
    models, _ = load_checkpoint(dense)
    engine = SharedMultiTaskModel(models["segmentation"], {})
    assert attach_subtask(engine, sub) == "normals"
    x = torch.randn(1, 3, *CFG.img_size)
    with torch.no_grad():
        got, stats = engine(x, thresholds=0.01, max_token_fraction=0.5)
        want, _ = trained(x, thresholds=0.01, max_token_fraction=0.5)
    assert torch.allclose(got["normals"], want["normals"], atol=2e-2)  # fp16 storage of the deltas
    assert stats.layers[0]["normals"].macs == 0 and stats.layers[1]["normals"].rows <= 12  # 24 tokens x 0.5


def test_head_init_starts_the_subtask_head_from_the_independent_model(tmp_path):
    import pytest

    from mtshare_ros.training.share_train_cli import ShareConfigError, build_model, load_share_config

    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "depth"]).eval()
    dense = save_checkpoint(tmp_path / "dense.pt", models, CFG, SYNTHETIC_CLASSES)
    args = ["task=depth", "step=l1", "delta=lowrank", f"base_checkpoint={dense}", f"head_init={dense}"]
    shared, _, _ = build_model(load_share_config(None, args))
    got = shared.subtasks["depth"].head.state_dict()
    for name, value in models["depth"].head.state_dict().items():
        assert torch.equal(got[name], value), name
    with pytest.raises(ShareConfigError, match="head_channels to its width"):
        build_model(load_share_config(None, [*args, "head_channels=24"]))
    with pytest.raises(ShareConfigError, match="only step l1"):
        load_share_config(None, ["task=depth", "step=activation", f"init={dense}", f"head_init={dense}"])


def test_distillation_pulls_the_subtask_towards_its_teacher():
    """With a teacher (``distill``), the sub-task ends closer to the teacher's output than the same run without."""

    def angle_to(teacher, shared, x):
        with torch.no_grad():
            got = shared(x, tasks=["normals"])[0]["normals"]
            return torch.rad2deg(torch.acos((got * teacher(x)).sum(1).clamp(-1, 1))).mean()

    torch.manual_seed(0)
    models = build_task_models(CFG, ["segmentation", "normals"]).eval()
    data = DataLoader(ToyScenes(16, CFG.img_size, seed=0), batch_size=4)
    x = torch.randn(2, 3, *CFG.img_size, generator=torch.Generator().manual_seed(3))
    angles = {}
    for weight in (0.0, 5.0):
        st = subtask_from_base(models["segmentation"], "normals", "lowrank", 4, seed=0)
        shared = SharedMultiTaskModel(models["segmentation"], {"normals": st})
        train_subtask(shared, "normals", "l1", itertools.cycle(data), steps=15, lr=3e-3, delta="lowrank",
                      teacher=models["normals"] if weight else None, distill_weight=weight, log_every=15)
        angles[weight] = float(angle_to(models["normals"], shared.eval(), x))
    assert angles[5.0] < 0.8 * angles[0.0], angles


def test_growing_a_subtask_keeps_its_outputs_and_adds_trainable_capacity(tmp_path):
    """``grow`` (rank up, start layer down) changes nothing the sub-task computes until it trains, and what it
    adds does train; it refuses to shrink, and the CLI refuses it where there is nothing to grow."""
    import pytest

    from mtshare_ros.sharing.deltas import LowRankDelta
    from mtshare_ros.training.share_train_cli import ShareConfigError, load_share_config
    from mtshare_ros.training.subtask_steps import grow_subtask

    torch.manual_seed(0)
    base = build_task_models(CFG, ["segmentation"])["segmentation"].eval()
    st = subtask_from_base(base, "depth", "lowrank", 4, seed=0, start_layer=1)
    with torch.no_grad():
        for d in st.deltas.values():
            d.b.normal_(0, 0.3)  # a trained-looking sub-task, not the base
    shared = SharedMultiTaskModel(base, {"depth": st}).eval()
    x = torch.randn(2, 3, *CFG.img_size)
    with torch.no_grad():
        want = shared(x)[0]["depth"]
    grown = grow_subtask(st, base, rank=8, start_layer=0, seed=1)
    assert grown.start_layer == 0 and grown.storage()["values"] > st.storage()["values"]
    assert {d.rank for d in grown.deltas.values() if isinstance(d, LowRankDelta)} == {8}
    shared.set_subtask(grown)
    with torch.no_grad():
        got = shared(x)[0]["depth"]
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-5)

    data = DataLoader(ToyScenes(8, CFG.img_size, seed=0), batch_size=4)
    train_subtask(shared, "depth", "activation", itertools.cycle(data), steps=2, lr=1e-2, log_every=2)
    new_block = grown.delta("blocks.0.attn.qkv.weight")
    assert new_block.b.abs().sum() > 0  # the joined block learnt
    assert grown.delta("blocks.1.mlp.fc1.weight").b[:, 4:].abs().sum() > 0  # so did the added rank

    with pytest.raises(ValueError, match="cannot give back"):
        grow_subtask(grown, base, start_layer=1)
    with pytest.raises(ValueError, match="cannot lower"):
        grow_subtask(grown, base, rank=2)
    with pytest.raises(ShareConfigError, match="grow"):
        load_share_config(None, ["step=l1", "grow={rank: 8}"])
    with pytest.raises(ShareConfigError, match="grow"):
        load_share_config(None, ["step=activation", f"init={tmp_path}/x.pt", "grow={width: 8}"])
