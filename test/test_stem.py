"""``model.stem: mobilenetv2`` on real small models: the token grid of the patch stem, checkpoints that say which
stem they hold (and shipped ones that say nothing), MACs that count the stem, ONNX export, a warm start of the stem
under a patch model's blocks and heads, and the shared engine with sub-tasks that share the stem."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from op_macs import CountMacs

from mtshare_ros.models import ModelConfig, build_task_models, load_checkpoint, save_checkpoint
from mtshare_ros.models.vit import DenseViT
from mtshare_ros.sharing import SharedMultiTaskModel
from mtshare_ros.sharing.cost import dense_model_macs, embed_macs
from mtshare_ros.training.config import ConfigError, load_config, model_config
from mtshare_ros.training.subtask_steps import subtask_from_base
from mtshare_ros.training.toy_data import ToyScenes
from mtshare_ros.training.trainer import Trainer, train

PATCH = ModelConfig(img_size=(64, 64), embed_dim=48, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48,
                    num_classes=15)
STEM = dataclasses.replace(PATCH, stem="mobilenetv2")
TASKS = ["segmentation", "depth", "normals"]
TINY = [
    "model.img_size=[64,64]", "model.embed_dim=48", "model.depth=2", "model.num_heads=2",
    "model.feature_layers=[0,1]", "model.head_channels=48", "data.dataset=toy", "data.size=[64,64]",
    "data.num_workers=0", "train.batch_size=8", "train.warmup_steps=2", "train.threads=1", "train.log_every=1",
    "train.shared_encoder=true",
]


def stem_model(task="depth", seed=0):
    torch.manual_seed(seed)
    return DenseViT(STEM, task).eval()


def test_the_stem_gives_the_patch_stems_token_grid():
    model = stem_model()
    x = torch.randn(2, 3, 64, 96)  # another size than img_size: the grid follows the input, as with patches
    tokens, grid = model.encoder.embed(x)
    assert grid == (4, 6) and tokens.shape == (2, 24, 48)
    assert not hasattr(model.encoder, "patch_embed")  # code reaching for the patch convolution fails loudly
    assert model(x).shape == (2, 1, 64, 96)
    crop, cgrid = model.encoder.embed(x[..., 16:48, 16:64], offset=(1, 1))  # a training crop's positions
    assert cgrid == (2, 3) and crop.shape == (2, 6, 48)


def test_checkpoints_record_the_stem_and_shipped_ones_stay_patch(tmp_path):
    models = build_task_models(STEM, TASKS, shared_encoder=True).eval()
    path = save_checkpoint(tmp_path / "stem.pt", models, STEM, [f"c{i}" for i in range(15)])
    loaded, meta = load_checkpoint(path)
    assert meta["model_config"].stem == "mobilenetv2"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded["depth"](x), models["depth"](x))
    assert "stem" not in PATCH.to_dict() and "pretrained" not in STEM.to_dict()
    shipped = Path(__file__).resolve().parents[1] / "mtshare_ros" / "weights" / "multitask.pt"
    assert "stem" not in torch.load(shipped, map_location="cpu", weights_only=False)["model_config"]
    assert load_checkpoint(shipped)[1]["model_config"].stem == "patch"


def test_macs_count_the_stem():
    model = stem_model()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad(), CountMacs() as counter:
        model(x)
    assert dense_model_macs(model, (64, 96)) == counter.macs
    with torch.no_grad(), CountMacs() as stem_count:
        model.encoder.stem(x)
    assert embed_macs(model, 24) == stem_count.macs
    patch = DenseViT(PATCH, "depth")
    assert embed_macs(model, 24) > 10 * embed_macs(patch, 24)  # the stem is not free: ~20 convolutions per patch


@pytest.mark.parametrize("dynamo", [True, False])  # torch.export's exporter (the default) and TorchScript's
def test_a_stem_model_exports_to_onnx_and_runs_the_same(tmp_path, dynamo):
    ort = pytest.importorskip("onnxruntime")
    model = stem_model()
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "stem.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["image"], output_names=["depth"])
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_config_checks_the_stem():
    cfg = load_config(None, ["model.stem=mobilenetv2"])
    assert model_config(cfg, 15).stem == "mobilenetv2"
    with pytest.raises(ConfigError, match="model.stem 'resnet'"):
        model_config(load_config(None, ["model.stem=resnet"]), 15)
    with pytest.raises(ConfigError, match="model.patch_size must be 16"):
        model_config(load_config(None, ["model.stem=mobilenetv2", "model.patch_size=8", "model.img_size=[64,64]"]),
                     15)
    with pytest.raises(ConfigError, match="backbone.pretrained is now model.pretrained"):
        load_config(None, ["backbone.pretrained=x.pth"])


def test_stem_starts_from_imagenet_under_a_patch_models_blocks_and_heads(tmp_path):
    """``model.pretrained`` (a MobileNetV2 file) with ``train.init`` (a patch-stem multi-task checkpoint): the stem
    from the file, blocks, positional embedding and heads from the checkpoint, its patch embedding unused."""
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v2().eval()
    torch.save(net.state_dict(), tmp_path / "mnv2.pth")
    train(load_config(None, [*TINY, f"train.out_dir={tmp_path / 'a'}", "train.steps=1"]), ToyScenes(16, (64, 64)),
          None)
    source, _ = load_checkpoint(tmp_path / "a" / "model.pt")
    cfg = load_config(None, [*TINY, f"train.out_dir={tmp_path / 'b'}", "train.steps=1", "model.stem=mobilenetv2",
                             f"model.pretrained={tmp_path / 'mnv2.pth'}", f"train.init={tmp_path / 'a' / 'model.pt'}"])
    trainer = Trainer(cfg, ToyScenes(16, (64, 64)), None)
    enc = trainer.models["depth"].encoder
    assert torch.equal(enc.blocks[1].attn.qkv.weight, source["depth"].encoder.blocks[1].attn.qkv.weight)
    assert torch.equal(enc.pos_embed, source["depth"].encoder.pos_embed)
    assert torch.equal(trainer.models["normals"].head.out.weight, source["normals"].head.out.weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = net.features[:14](x)
        assert torch.allclose(enc.stem.features(x), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    trainer.run()  # trains and writes a checkpoint of the stem model
    assert load_checkpoint(tmp_path / "b" / "model.pt")[1]["model_config"].stem == "mobilenetv2"


def test_engine_shares_the_stem_and_refuses_subtasks_with_their_own():
    base = stem_model("segmentation")
    st = subtask_from_base(base, "depth", "lowrank", rank=4, seed=0, start_layer=1, head_channels=24)
    with torch.no_grad():
        for p in st.deltas.parameters():
            p.add_(0.1 * torch.randn_like(p))
    shared = SharedMultiTaskModel(base, {"depth": st}).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        shared(x)  # the first call applies the deltas to the weights once (a load-time cost, not per frame)
    with torch.no_grad(), CountMacs() as counter:
        out, stats = shared(x, thresholds=0.0)
    assert torch.allclose(out["depth"], st.to_dense_model(base)(x), atol=1e-4)
    assert stats.macs_total == counter.macs
    own = subtask_from_base(base, "depth", "lowrank", rank=4, seed=0, start_layer=0)
    with pytest.raises(ValueError, match="starts at block 0 .* patch stem only.*start_layer >= 1"):
        SharedMultiTaskModel(base, {"depth": own})
