"""Temporal sharing in the engine on real small models: exact at threshold 0, near-free on static input,
keyframes where the stream needs them, bounded cache memory."""

import pytest
import torch
from test_sharing_engine import CFG, _models

from mtshare_ros.sharing import SharedMultiTaskModel
from mtshare_ros.sharing.temporal import TemporalCache, TemporalSettings, format_reasons, parse_reasons


@pytest.fixture(scope="module")
def shared():
    base, subs = _models(noise=0.1)
    return SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()


def _video(n: int, step: float = 0.03, seed: int = 0) -> list[torch.Tensor]:
    """A random image drifting a little per frame (a slowly changing scene)."""
    g = torch.Generator().manual_seed(seed)
    frames = [torch.randn(1, 3, *CFG.img_size, generator=g)]
    for _ in range(n - 1):
        frames.append(frames[-1] + step * torch.randn(1, 3, *CFG.img_size, generator=g))
    return frames


def _settings(**kw) -> TemporalSettings:
    return TemporalSettings(**{"enabled": True, "keyframe_interval": 1000, **kw})


@pytest.mark.parametrize("sharing", [0.0, 0.05])
def test_threshold_zero_gives_per_frame_outputs(shared, sharing):
    """Every token moved every frame: the base task is per-frame inference exactly, and each sub-task is computed
    as per-frame task sharing computes it (its delta where it differs from the base, else the base's update)."""
    cache, ts = TemporalCache(), _settings(threshold=0.0, max_token_fraction=1.0)
    with torch.no_grad():
        for i, x in enumerate(_video(6, step=0.3)):
            out, stats = shared(x, sharing, 0.5, temporal=ts, cache=cache)
            want, _ = shared(x, sharing, 0.5)
            assert stats.keyframe == (i == 0) and stats.temporal == (i > 0)
            assert torch.equal(out["segmentation"], want["segmentation"])
            for task in ("depth", "normals"):
                assert torch.allclose(out[task], want[task], atol=1e-5), (i, task)


def test_static_input_recomputes_nothing_after_the_keyframe(shared):
    cache, ts = TemporalCache(), _settings(threshold=0.05, max_token_fraction=0.5)
    x = _video(1)[0]
    with torch.no_grad():
        want, dense = shared(x, 0.05, 0.5)
        _, first = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
        for _ in range(4):
            out, stats = shared(x, 0.05, 0.5, temporal=ts, cache=cache)
    assert first.keyframe and first.macs_total == dense.macs_total
    assert not stats.keyframe and stats.recomputed_fraction == {"segmentation": 0.0, "depth": 0.0, "normals": 0.0}
    for task in want:  # nothing changed: the references reproduce the keyframe exactly
        assert torch.allclose(out[task], want[task], atol=1e-5), task
    # no row of any block ran; what is left is the embedding, the sub-tasks' token scores and the heads
    assert all(row[t].rows == 0 for row in stats.layers for t in row)
    assert all(row["segmentation"].macs == 0 for row in stats.layers)
    assert stats.macs_total < dense.macs_total - sum(row["segmentation"].macs for row in dense.layers)


def test_error_is_bounded_and_shrinks_with_the_threshold(shared):
    video = _video(12, step=0.05)
    errors, costs = [], []
    with torch.no_grad():
        refs = [shared(x, 0.0, 1.0)[0] for x in video]
        for thr in (0.0, 0.02, 0.1, 0.5):
            cache, ts = TemporalCache(), _settings(threshold=thr, max_token_fraction=1.0)
            err, macs = 0.0, 0
            for x, ref in zip(video, refs, strict=True):
                out, stats = shared(x, 0.0, 1.0, temporal=ts, cache=cache)
                err = max(err, float((out["depth"] - ref["depth"]).abs().max()))
                macs += stats.macs_total
            errors.append(err)
            costs.append(macs)
    assert errors[0] < 1e-4
    assert errors == sorted(errors) and costs == sorted(costs, reverse=True), (errors, costs)
    assert costs[-1] < 0.7 * costs[0]


def test_keyframes_come_at_the_interval_on_a_scene_cut_and_after_reset(shared):
    cache, ts = TemporalCache(), _settings(threshold=0.1, max_token_fraction=0.3, keyframe_interval=4)
    video = _video(10, step=0.01)
    flags = []
    with torch.no_grad():
        for x in video:
            flags.append(shared(x, 0.05, 0.3, temporal=ts, cache=cache)[1].keyframe)
        assert flags == [True, False, False, False, True, False, False, False, True, False]
        assert cache.keyframe_reasons == {"start": 1, "interval": 2}
        cut = torch.randn(1, 3, *CFG.img_size, generator=torch.Generator().manual_seed(9))  # another scene
        _, stats = shared(cut, 0.05, 0.3, temporal=ts, cache=cache)
        assert stats.keyframe and stats.recomputed_fraction["segmentation"] == 1.0
        assert cache.keyframe_reason == "scene_cut"
        assert not shared(cut, 0.05, 0.3, temporal=ts, cache=cache)[1].keyframe
        cache.reset()
        assert cache.nbytes() == 0
        assert shared(cut, 0.05, 0.3, temporal=ts, cache=cache)[1].keyframe
        # another resolution or task set is another stream
        assert shared(cut, 0.05, 0.3, tasks=["depth"], temporal=ts, cache=cache)[1].keyframe
        assert cache.keyframe_reason == "signature"
        small = cut[..., :32, :48]
        assert shared(small, 0.05, 0.3, tasks=["depth"], temporal=ts, cache=cache)[1].keyframe
    counts = {"start": 2, "interval": 2, "scene_cut": 1, "signature": 2}
    assert cache.keyframe_reasons == counts and sum(counts.values()) == cache.keyframes
    # the one-line form /diagnostics carries reads back as the counts, most frequent first
    line = format_reasons(cache.keyframe_reasons)
    assert line == "interval=2 signature=2 start=2 scene_cut=1" and parse_reasons(line) == counts
    assert parse_reasons("scene_cut=x bogus=3 drift=4") == {"drift": 4}
    with pytest.raises(ValueError, match="unknown keyframe reason"):
        cache.note_keyframe("because")


def test_tokens_left_out_by_the_cap_bring_the_next_keyframe_early(shared):
    """A cap far below what changes defers tokens past the threshold; their error is not bounded, so they add
    up to a keyframe long before the interval."""
    cache, ts = TemporalCache(), _settings(threshold=0.01, max_token_fraction=0.1, max_deferred=0.5,
                                           scene_cut_fraction=1.0)
    flags = []
    with torch.no_grad():
        for x in _video(12, step=0.2):
            flags.append(shared(x, 0.05, 0.3, temporal=ts, cache=cache)[1].keyframe)
    assert flags[0] and sum(flags[1:]) >= 2, flags
    assert cache.keyframe_reasons.get("deferred", 0) == sum(flags[1:]), cache.keyframe_reasons


def test_cache_memory_is_constant_over_a_long_stream(shared):
    cache, ts = TemporalCache(), _settings(threshold=0.05, max_token_fraction=0.3, keyframe_interval=50)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, *CFG.img_size, generator=g)
    sizes = set()
    with torch.no_grad():
        for i in range(1000):
            x = x + 0.02 * torch.randn(x.shape, generator=g)
            shared(x, 0.05, 0.3, temporal=ts, cache=cache)
            if i >= 1:
                sizes.add(cache.nbytes())
    n, c, depth = 15, CFG.embed_dim, CFG.depth
    streams = 3  # the base task and two stacked sub-tasks
    # inp, out, qkv per block and stream, and the base task's two activation norms per token, float32
    refs = depth * (streams * n * (c + c + 3 * c) + 2 * n) * 4
    # the heads' last outputs (5 classes, depth, 3 normals at full size) and GroupNorm statistics (mean and 1/std
    # per group of both stages: 8 groups for the base head, 2 x 8 for the grouped sub-task heads)
    # the features each task's output read (both feature layers per token)
    heads = (5 + 1 + 3) * CFG.img_size[0] * CFG.img_size[1] * 4 + (8 + 16) * 2 * 2 * 4 + 3 * n * 2 * c * 4
    assert sizes == {refs + heads}
    assert cache.frames == 1000 and cache.keyframes == 20


def test_the_temporal_step_makes_neighbouring_activations_closer():
    """The method's temporal fine-tuning step: the penalty on block-input changes between neighbouring frames
    falls while it trains (a small model, pairs of drifting images with labels)."""
    from mtshare_ros.models.vit import DenseViT
    from mtshare_ros.training.temporal_step import block_inputs, temporal_penalty, train_temporal

    torch.manual_seed(0)
    model = DenseViT(CFG, "segmentation")
    g = torch.Generator().manual_seed(1)
    pairs = []
    for _ in range(6):
        a = torch.rand(1, 3, *CFG.img_size, generator=g)
        image = torch.cat([a, (a + 0.05 * torch.randn(a.shape, generator=g)).clamp(0, 1)])
        seg = torch.randint(0, CFG.num_classes, (1, *CFG.img_size), generator=g).repeat(2, 1, 1)
        pairs.append({"image": image, "segmentation": seg})

    def penalty() -> float:
        with torch.no_grad():
            x = torch.cat([p["image"] for p in pairs])
            inputs, _ = block_inputs(model, (x - 0.45) / 0.25)
            return float(temporal_penalty([t[0::2] for t in inputs], [t[1::2] for t in inputs]))

    before = penalty()
    history = train_temporal(model, pairs, steps=40, batch_size=2, lr=1e-3, penalty_weight=10.0, distill_weight=0.0)
    assert penalty() < 0.7 * before and history[-1]["penalty"] < history[0]["penalty"]


# ---------------------------------------------------------------------------------------- motion compensation
SHIFT_HW = (96, 160)  # 6 x 10 tokens: room for whole-token shifts


def _scene(seed: int = 0) -> torch.Tensor:
    """A smooth random scene larger than the camera's view, which crops of it pan across."""
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.randn(1, 3, 40, 60, generator=g), scale_factor=4, mode="bilinear")


def _crop(scene: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    return scene[..., 32 + dy: 32 + dy + SHIFT_HW[0], 40 + dx: 40 + dx + SHIFT_HW[1]].contiguous()


def test_phase_correlation_measures_a_known_shift():
    from mtshare_ros.sharing.motion import estimate_shift, grey

    scene = _scene(1)
    for dy, dx in ((0, 16), (-8, 12), (5, -3)):
        est = estimate_shift(grey(_crop(scene, 0, 0)), grey(_crop(scene, -dy, -dx)))
        assert abs(est[0] - dy) < 1.5 and abs(est[1] - dx) < 1.5 and est[2] > 0.2, (dy, dx, est)


def test_an_integer_patch_shift_of_a_static_scene_recomputes_only_the_entering_border(shared):
    """The view moves by whole patches: with compensation each moved token meets its moved reference exactly
    (position embeddings corrected), in every block; only the column or row entering the view is recomputed.
    Without it the same frame is a scene cut."""
    scene = _scene()
    gh, gw = SHIFT_HW[0] // CFG.patch_size, SHIFT_HW[1] // CFG.patch_size
    views = [(0, 0), (0, -16), (0, -32), (-16, -32)]  # content moves right, right, then down
    border = [None, gh, gh, gw]
    for motion in ("image", "off"):
        cache, ts = TemporalCache(), _settings(threshold=0.05, max_token_fraction=0.5, motion=motion)
        with torch.no_grad():
            for k, (dy, dx) in enumerate(views):
                _, stats = shared(_crop(scene, dy, dx), 0.05, 0.5, temporal=ts, cache=cache)
                if k == 0:
                    assert stats.keyframe
                elif motion == "image":
                    assert not stats.keyframe, k
                    assert [row["segmentation"].rows for row in stats.layers] == [border[k]] * CFG.depth, k
                    assert cache.motion.applied == (-dy // 16, -dx // 16)
                else:
                    assert stats.keyframe, k


def test_a_sub_patch_pan_of_a_static_scene_recomputes_only_the_uncovered_edge(shared):
    """The view moves by 3, then 6 pixels, less than a patch: with compensation each frame is moved back onto the
    keyframe's pixels, so every token but the column at the edge the move uncovers meets its reference exactly,
    and the outputs are the keyframe's moved with the scene away from that edge. Without it most tokens change."""
    scene = _scene()
    gh, w = SHIFT_HW[0] // CFG.patch_size, SHIFT_HW[1]
    rows = {}
    for motion in ("image", "off"):
        cache = TemporalCache()
        ts = _settings(threshold=0.05, max_token_fraction=1.0, motion=motion, scene_cut_fraction=1.0,
                       max_drift=1e9, max_deferred=1e9)
        with torch.no_grad():
            key, _ = shared(_crop(scene, 0, 0), 0.05, 1.0, temporal=ts, cache=cache)
            for dx in (3, 6):
                out, stats = shared(_crop(scene, 0, -dx), 0.05, 1.0, temporal=ts, cache=cache, shift=(0.0, 3.0))
                assert not stats.keyframe
                rows[motion, dx] = [row["segmentation"].rows for row in stats.layers]
                if motion == "off":
                    continue
                assert cache.motion.applied == (0, 0) and cache.motion.pixels(CFG.patch_size) == (0, dx)
                assert rows[motion, dx] == [gh] * CFG.depth, rows
                keep = w - 3 * CFG.patch_size  # clear of the recomputed column and of the heads' reach
                for t in out:
                    torch.testing.assert_close(out[t][..., dx:keep], key[t][..., : keep - dx], rtol=0, atol=1e-5)
    for dx in (3, 6):
        assert sum(rows["off", dx]) > 3 * sum(rows["image", dx]), rows


def test_a_motion_given_by_the_caller_replaces_the_image_estimate(shared):
    """The caller knows the motion (the camera's pose): the buffers follow it without an image estimate."""
    scene = _scene()
    cache, ts = TemporalCache(), _settings(threshold=0.05, max_token_fraction=0.5)
    gh = SHIFT_HW[0] // CFG.patch_size
    with torch.no_grad():
        shared(_crop(scene, 0, 0), 0.05, 0.5, temporal=ts, cache=cache)
        _, stats = shared(_crop(scene, 0, -16), 0.05, 0.5, temporal=ts, cache=cache, shift=(0.0, 16.0))
    assert not stats.keyframe and cache.motion.applied == (0, 1) and cache.motion.source == "given"
    assert [row["segmentation"].rows for row in stats.layers] == [gh] * CFG.depth


def test_measured_drift_brings_a_keyframe_before_the_interval(shared):
    """Reused tokens whose inputs drift from their references raise the drift estimate; past ``max_drift`` the
    next frame is a keyframe, long before the interval."""
    flags = {}
    for max_drift in (0.0, 10.0):
        cache, ts = TemporalCache(), _settings(threshold=0.3, max_token_fraction=1.0, max_drift=max_drift,
                                               scene_cut_fraction=1.0, max_deferred=1e9)
        with torch.no_grad():
            flags[max_drift] = [shared(x, 0.05, 0.3, temporal=ts, cache=cache)[1].keyframe
                                for x in _video(8, step=0.05)]
        assert cache.drift > 0
        assert set(cache.keyframe_reasons) <= {"start", "drift"}, cache.keyframe_reasons
    assert flags[10.0] == [True] + [False] * 7
    assert sum(flags[0.0]) >= 4, flags
