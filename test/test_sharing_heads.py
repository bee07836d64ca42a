"""Sub-task heads run as grouped convolutions give the separate heads' outputs with the same multiply-adds."""

import dataclasses

import pytest
import torch
from op_macs import CountMacs

from mtshare_ros.models.vit import DenseHead, ModelConfig
from mtshare_ros.sharing.cost import head_macs
from mtshare_ros.sharing.heads import GroupedHeads, can_group

CFG = ModelConfig(img_size=(48, 80), embed_dim=24, feature_layers=(0, 2), head_channels=24, detail_channels=8)


def _heads(cfg: ModelConfig = CFG) -> list[DenseHead]:
    torch.manual_seed(0)
    heads = [DenseHead(cfg, "depth", 1), DenseHead(cfg, "normals", 3), DenseHead(cfg, "segmentation", 5)]
    with torch.no_grad():
        for h in heads:
            for p in h.parameters():
                p.normal_(0.0, 0.3)  # the detail projection and GroupNorm affine start non-trivial
    return heads


@pytest.mark.parametrize("detail", [8, 0])
def test_grouped_heads_equal_separate_heads(detail):
    cfg = dataclasses.replace(CFG, detail_channels=detail)
    heads = _heads(cfg)
    grid = (3, 5)
    image = torch.randn(2, 3, *cfg.img_size)
    feats = [[torch.randn(2, 15, cfg.embed_dim) for _ in cfg.feature_layers] for _ in heads]
    grouped = GroupedHeads(heads)
    with torch.no_grad(), CountMacs() as grouped_count:
        outs = grouped.forward(feats, grid, image)
    separate = 0
    for h, f, out in zip(heads, feats, outs, strict=True):
        with torch.no_grad(), CountMacs() as count:
            want = h(f, grid, image)
        assert out.shape == want.shape
        assert torch.allclose(out, want, atol=1e-5), h.task
        # what the engine counts for a head (one frame, by hooks) is what the separate head runs
        assert head_macs(h, len(cfg.feature_layers), grid, cfg.embed_dim, tuple(cfg.img_size)) * 2 == count.macs
        separate += count.macs
    assert grouped_count.macs == separate  # the grouped run does the separate heads' work, no more


def test_heads_of_other_layouts_are_not_grouped():
    narrow = DenseHead(dataclasses.replace(CFG, head_channels=12), "depth", 1)
    plain = DenseHead(dataclasses.replace(CFG, detail_channels=0), "depth", 1)
    wide = DenseHead(CFG, "normals", 3)
    assert can_group([DenseHead(CFG, "depth", 1), wide])
    assert not can_group([wide])
    assert not can_group([narrow, wide]) and not can_group([plain, wide])
    with pytest.raises(ValueError, match="different layouts"):
        GroupedHeads([narrow, wide])


def test_gradients_reach_every_head():
    heads = _heads()[:2]
    feats = [[torch.randn(1, 15, CFG.embed_dim) for _ in CFG.feature_layers] for _ in heads]
    outs = GroupedHeads(heads).forward(feats, (3, 5), torch.randn(1, 3, *CFG.img_size))
    sum(o.sum() for o in outs).backward()
    for h in heads:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in h.parameters()), h.task
