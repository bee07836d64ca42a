"""Partial heads between keyframes (``sharing/partial_heads.py``) on real small models: a head's output depends on
tokens within ``RADIUS``; crops with the recorded GroupNorm statistics equal the full head with those statistics;
in the engine a static frame runs no head, a local change runs the heads near it only, a whole-token shift reuses
the shifted outputs, keyframes run the full heads, and the executed head multiply-adds follow the area run."""

import copy
import dataclasses

import pytest
import torch
from op_macs import CountMacs

from mtshare_ros.models.vit import DenseHead, DenseViT, ModelConfig
from mtshare_ros.sharing import SharedMultiTaskModel
from mtshare_ros.sharing.heads import GroupedHeads
from mtshare_ros.sharing.partial_heads import RADIUS, HeadCache, HeadGroup, NormStats, plan, run_heads
from mtshare_ros.sharing.temporal import TemporalCache, TemporalSettings

CFG = ModelConfig(img_size=(160, 224), embed_dim=32, depth=3, num_heads=2, feature_layers=(0, 2), head_channels=48,
                  detail_channels=8, num_classes=5)  # 10 x 14 tokens: room for crops away from the borders
GRID = (10, 14)
P = CFG.patch_size


def _randomise_heads(models: list[DenseViT]) -> None:
    """Non-trivial detail projection and GroupNorm affine (they start at zero / one)."""
    with torch.no_grad():
        for m in models:
            for p in m.head.parameters():
                p.normal_(0.0, 0.3)


@pytest.fixture(scope="module")
def shared() -> SharedMultiTaskModel:
    torch.manual_seed(0)
    base = DenseViT(CFG, "segmentation").eval()
    subs = {}
    for task in ("depth", "normals"):
        sub = DenseViT(CFG, task).eval()
        enc = copy.deepcopy(base.encoder)
        with torch.no_grad():
            for p in enc.parameters():
                p.add_(0.1 * torch.randn_like(p) * (p.std() if p.numel() > 1 else 1.0))
        sub.encoder = enc
        subs[task] = sub
    _randomise_heads([base, *subs.values()])
    return SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()


def _feats(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, GRID[0] * GRID[1], CFG.embed_dim, generator=g) for _ in CFG.feature_layers]


def _head() -> DenseHead:
    torch.manual_seed(1)
    head = DenseHead(CFG, "normals", 3).eval()
    _randomise_heads([type("M", (), {"head": head})()])
    return head


def _settings(**kw) -> TemporalSettings:
    """Crops up to the whole map (this map is small: one changed token's crop is 9 x 9 of its 10 x 14 tokens)."""
    return TemporalSettings(**{"enabled": True, "keyframe_interval": 1000, "threshold": 0.05,
                               "max_token_fraction": 0.5, "motion": "off", "partial_heads_area": 1.0, **kw})


def _box_mask(box, grid=GRID) -> torch.Tensor:
    y0, y1, x0, x1 = box
    m = torch.zeros(1, *grid, dtype=torch.bool)
    m[:, y0:y1, x0:x1] = True
    return m.reshape(1, -1)


def _pixels(box) -> tuple[slice, slice]:
    y0, y1, x0, x1 = box
    return slice(y0 * P, y1 * P), slice(x0 * P, x1 * P)


@pytest.mark.parametrize("token", [(4, 6), (0, 0), (9, 13)])
def test_a_token_reaches_the_output_within_the_radius(token):
    """What RADIUS is derived from: with the GroupNorm statistics held (else every pixel moves with them), changing
    one token's features (or its image patch, through the detail branch) changes the output only within RADIUS
    tokens of it; and the change does reach RADIUS tokens away (the bound is tight)."""
    head = _head()
    feats, image = _feats(), torch.randn(1, 3, *CFG.img_size)
    stats = NormStats()
    with torch.no_grad():
        head(feats, GRID, image, stats.record)
        ref = head(feats, GRID, image, stats.frozen)
        moved = [f.clone() for f in feats]
        k = token[0] * GRID[1] + token[1]
        for f in moved:
            f[:, k] += 1.0
        img = image.clone()
        img[..., token[0] * P:(token[0] + 1) * P, token[1] * P:(token[1] + 1) * P] += 1.0
        for out in (head(moved, GRID, image, stats.frozen), head(feats, GRID, img, stats.frozen)):
            diff = (out - ref).abs().amax(1)[0] > 0
            ys, xs = diff.nonzero(as_tuple=True)
            assert ys.min() >= (token[0] - RADIUS) * P and ys.max() < (token[0] + RADIUS + 1) * P
            assert xs.min() >= (token[1] - RADIUS) * P and xs.max() < (token[1] + RADIUS + 1) * P
        far = (head(moved, GRID, image, stats.frozen) - ref).abs().amax(1)[0]
    if token[1] >= RADIUS:
        assert far[:, (token[1] - RADIUS) * P:(token[1] - RADIUS + 1) * P].any()


def test_crops_equal_the_full_head_with_the_recorded_statistics():
    """A local change: the crops' pasted pixels are the full head's with the keyframe's statistics (float rounding of
    the affine norm: 1e-5 on outputs of order 1), every other pixel is the cached output bit for bit; the grouped
    heads the same. Against the full head with the current statistics they differ by those statistics' change."""
    heads = [_head(), copy.deepcopy(_head())]
    heads[1].task = "depth"
    with torch.no_grad():
        heads[1].out = torch.nn.Conv2d(heads[1].out.in_channels, 1, 1)
    grouped = GroupedHeads(heads)
    groups = [HeadGroup("normals", ("normals",), lambda f, g, x, norm: [heads[0](f[0], g, x, norm)]),
              HeadGroup("both", ("normals2", "depth"), grouped.forward)]
    image = torch.randn(1, 3, *CFG.img_size)
    f0, f1 = _feats(0), _feats(0)
    box = (3, 6, 5, 8)
    for f in f1:
        f.view(1, *GRID, -1)[:, box[0]:box[1], box[2]:box[3]] += torch.randn(box[1] - box[0], box[3] - box[2], 1)
    cache = HeadCache()
    feats0 = {"normals": f0, "normals2": f0, "depth": f0}
    feats1 = {"normals": f1, "normals2": f1, "depth": f1}
    with torch.no_grad():
        first, computed = run_heads(groups, feats0, GRID, image, cache, None, full_area=1.0)
        assert computed == {t: GRID[0] * GRID[1] for t in first}
        stats = {k: copy.deepcopy(v) for k, v in cache.stats.items()}
        changed = {t: _box_mask(box) for t in feats1}
        out, computed = run_heads(groups, feats1, GRID, image, cache, changed, full_area=1.0)
        frozen = {"normals": heads[0](f1, GRID, image, stats["normals"].frozen)}
        frozen.update(zip(("normals2", "depth"), grouped.forward([f1, f1], GRID, image, stats["both"].frozen),
                          strict=True))
        live = {"normals": heads[0](f1, GRID, image)}
    paste = (box[0] - RADIUS, box[1] + RADIUS, box[2] - RADIUS, box[3] + RADIUS)
    crop = (max(0, paste[0] - RADIUS), min(GRID[0], paste[1] + RADIUS), paste[2] - RADIUS, paste[3] + RADIUS)
    assert computed == {t: (crop[1] - crop[0]) * (crop[3] - crop[2]) for t in out}
    ys, xs = _pixels(paste)
    outside = torch.ones(CFG.img_size, dtype=torch.bool)
    outside[ys, xs] = False
    for t in out:
        assert out[t] is not first[t]  # a new tensor: the previous frame's output is left as it was
        assert torch.allclose(out[t][..., ys, xs], frozen[t][..., ys, xs], atol=1e-5), t
        assert torch.equal(out[t][..., outside], first[t][..., outside]), t
    # the current statistics moved (a fifth of the map changed): the full head with them differs, the crops don't
    assert (live["normals"] - frozen["normals"]).abs().max() > 1e-3


def test_plan_merges_near_parts_and_falls_back_to_the_full_head():
    assert plan(torch.zeros(1, 140, dtype=torch.bool), GRID) == []
    one = plan(_box_mask((4, 5, 6, 7)), GRID, full_area=1.0)
    assert one == [(2, 7, 4, 9)]
    assert plan(_box_mask((4, 5, 6, 7)), GRID, full_area=0.5) is None  # its 9 x 9 crop: over half this map
    two = plan(_box_mask((0, 1, 0, 1)) | _box_mask((9, 10, 13, 14)), GRID, full_area=1.0)  # opposite corners
    assert sorted(two) == [(0, 3, 0, 3), (7, 10, 11, 14)]
    near = plan(_box_mask((0, 1, 0, 1)) | _box_mask((0, 1, 3, 4)), GRID, full_area=1.0)  # one crop costs less
    assert near == [(0, 3, 0, 6)]


def _video_frames(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, *CFG.img_size, generator=torch.Generator().manual_seed(seed))


def _capture_full(model: SharedMultiTaskModel, calls: list):
    """The base head's inputs on full maps (a forward pre-hook: what the full-heads stream's head ran on)."""
    def hook(_mod, args, kwargs):
        if args[1] == GRID:
            calls.append(args)
    return model.base.head.register_forward_pre_hook(hook, with_kwargs=True)


def test_a_static_frame_runs_no_head_and_returns_the_cached_outputs(shared):
    cache, ts = TemporalCache(), _settings()
    full = TemporalCache()
    x = _video_frames()
    with torch.no_grad():
        first, key = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
        shared(x, 0.05, 0.5, temporal=_settings(partial_heads=False), cache=full)
        shared(x, 0.05, 0.5, temporal=ts, cache=cache)  # the first temporal frame fuses weights once: not counted
        with CountMacs() as counter:
            out, stats = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
        _, with_heads = shared(x, 0.05, 0.5, temporal=_settings(partial_heads=False), cache=full)
    head_full = shared.head_macs(shared.run(x, 0.05, 0.5))
    assert key.keyframe and not stats.keyframe
    assert stats.recomputed_fraction == {"segmentation": 0.0, "depth": 0.0, "normals": 0.0}
    for t in out:
        assert torch.equal(out[t], first[t]), t
    # no block row and no head ran: what is left is the embedding and the sub-tasks' token scores
    assert stats.macs_total == counter.macs
    assert with_heads.macs_total - stats.macs_total == sum(head_full.values())


def test_a_local_change_runs_the_heads_near_it_only(shared):
    """Frame 2 changes a patch-aligned region of frame 1. Partial heads: the base task's pixels near the changed
    tokens are the full head's on this frame's features with the keyframe's statistics (1e-5), the others the
    keyframe's output; against the full-heads stream (same encoder work) every task stays close; head MACs and
    the operator count agree."""
    x0 = _video_frames()
    x1 = x0.clone()
    box = (4, 6, 5, 8)
    ys, xs = _pixels(box)
    x1[..., ys, xs] = torch.randn(1, 3, ys.stop - ys.start, xs.stop - xs.start, generator=torch.Generator()
                                  .manual_seed(9))
    part, full = (TemporalCache(), _settings()), (TemporalCache(), _settings(partial_heads=False))
    calls: list = []
    with torch.no_grad():
        key, _ = shared(x0, 0.05, 0.5, temporal=part[1], cache=part[0])
        shared(x0, 0.05, 0.5, temporal=full[1], cache=full[0])
        stats0 = copy.deepcopy(part[0].heads.stats["segmentation"])
        warm = TemporalCache()  # a temporal frame fuses its weights once: not counted below
        for x in (x0, x1):
            shared(x, 0.05, 0.5, temporal=part[1], cache=warm)
        with CountMacs() as counter:
            out, stats = shared(x1, 0.05, 0.5, temporal=part[1], cache=part[0])
        handle = _capture_full(shared, calls)
        try:
            want, full_stats = shared(x1, 0.05, 0.5, temporal=full[1], cache=full[0])
        finally:
            handle.remove()
        feats, grid, image = calls[-1][:3]
        frozen = shared.base.head(feats, grid, image, stats0.frozen)
    assert not stats.keyframe and stats.macs_total == counter.macs
    assert stats.recomputed_fraction == full_stats.recomputed_fraction  # the heads do not change the encoder's work
    head_full = shared.head_macs(shared.run(x1, 0.05, 0.5))
    saved = {t: full_stats.macs[t] - stats.macs[t] for t in out}
    assert all(0 < saved[t] < head_full[t] for t in out), saved
    m = torch.zeros(CFG.img_size, dtype=torch.bool)
    m[(box[0] - RADIUS) * P:(box[1] + RADIUS) * P, (box[2] - RADIUS) * P:(box[3] + RADIUS) * P] = True
    changed = (out["segmentation"] != key["segmentation"]).any(1)[0]
    assert changed.any() and not (changed & ~m).any()  # only near the change; reused elsewhere
    assert torch.allclose(out["segmentation"][..., m], frozen[..., m], atol=1e-5)
    # against the full heads with the current statistics: the statistics' change, small for a local change
    for t in out:
        scale = float(want[t].abs().mean())
        assert float((out[t] - want[t]).abs().mean()) < 0.05 * scale, t


def test_a_whole_token_shift_reuses_the_shifted_outputs(shared):
    """The camera pans by one token: the references and the head outputs move with the content; the heads run on
    the entering column's neighbourhood only, and elsewhere return the keyframe's output moved by 16 px."""
    x0 = _video_frames()
    x1 = torch.roll(x0, shifts=P, dims=-1)
    x1[..., :P] = torch.randn(1, 3, CFG.img_size[0], P, generator=torch.Generator().manual_seed(4))
    cache, ts = TemporalCache(), _settings(motion="image", partial_heads_shift=True)
    plain = TemporalCache()  # the default: a realigned frame runs the full heads
    with torch.no_grad():
        key, _ = shared(x0, 0.05, 0.5, temporal=ts, cache=cache)
        out, stats = shared(x1, 0.05, 0.5, temporal=ts, cache=cache, shift=(0.0, float(P)))
        shared(x0, 0.05, 0.5, temporal=_settings(motion="image"), cache=plain)
        _, full = shared(x1, 0.05, 0.5, temporal=_settings(motion="image"), cache=plain, shift=(0.0, float(P)))
    assert not full.keyframe and full.recomputed_fraction == stats.recomputed_fraction
    assert full.macs_total - stats.macs_total > 0.5 * sum(shared.head_macs(shared.run(x1, 0.05, 0.5)).values())
    assert not stats.keyframe and cache.motion.applied == (0, 1)
    for t in out:
        moved = torch.roll(key[t], shifts=P, dims=-1)
        assert torch.equal(out[t][..., (1 + RADIUS) * P:], moved[..., (1 + RADIUS) * P:]), t
        assert not torch.equal(out[t][..., :P], moved[..., :P]), t  # the entering column was computed
    # the column entering and its neighbourhood: a crop of the map's full height and 1 + 2 RADIUS columns wide
    head_full = shared.head_macs(shared.run(x1, 0.05, 0.5))
    share = GRID[0] * (1 + 2 * RADIUS) / (GRID[0] * GRID[1])
    dense = {t: stats.macs_dense[t] for t in out}
    for t in out:
        assert stats.macs[t] < dense[t] - (1 - share) * head_full[t] + 1, t


def test_keyframes_run_the_full_heads(shared):
    cache, ts = TemporalCache(), _settings()
    x = _video_frames()
    with torch.no_grad():
        want, dense = shared(x, 0.05, 0.5)
        out, key = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
        cache.reset()
        again, key2 = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
    assert key.keyframe and key2.keyframe
    assert key.macs_total == dense.macs_total == key2.macs_total
    for t in want:
        assert torch.equal(out[t], want[t]) and torch.equal(again[t], want[t]), t


def test_head_macs_fall_with_the_changed_area(shared):
    x0 = _video_frames()
    macs = []
    for width in (1, 3, 6, 14):
        x1 = x0.clone()
        x1[..., 3 * P:7 * P, :width * P] += 2.0 * torch.randn(1, 3, 4 * P, width * P,
                                                              generator=torch.Generator().manual_seed(width))
        cache, ts = TemporalCache(), _settings(max_token_fraction=1.0, scene_cut_fraction=1.0)
        with torch.no_grad():
            shared(x0, 0.05, 1.0, temporal=ts, cache=cache)
            _, stats = shared(x1, 0.05, 1.0, temporal=ts, cache=cache)
        assert not stats.keyframe
        macs.append(stats.macs["segmentation"] - stats.layers[0]["segmentation"].macs)
    assert macs == sorted(macs) and macs[0] < macs[-1], macs


def test_turning_partial_heads_off_keeps_the_full_heads(shared):
    """``partial_heads`` off: the temporal frame runs the full heads (the variant the benchmark sets beside)."""
    cache, ts = TemporalCache(), _settings(partial_heads=False)
    x = _video_frames()
    with torch.no_grad():
        _, key = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
        _, stats = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
    head_full = shared.head_macs(shared.run(x, 0.05, 0.5))
    assert not stats.keyframe and all(stats.macs[t] >= head_full[t] for t in head_full)
    assert dataclasses.replace(ts, partial_heads=True).partial_heads and not cache.heads.outputs
