"""The shared engine on real small models: exactness at threshold 0, the documented approximation above it,
batching across sub-tasks, executed cost counted from what ran."""

import copy

import pytest
import torch
import torch.nn.functional as F
from op_macs import CountMacs

from mtshare_ros.models.vit import DenseViT, ModelConfig
from mtshare_ros.sharing import SharedMultiTaskModel
from mtshare_ros.sharing.cost import dense_model_macs
from mtshare_ros.sharing.tokens import delta_score, token_budget
from mtshare_ros.training.subtask_steps import subtask_from_base

CFG = ModelConfig(
    img_size=(48, 80), embed_dim=48, depth=3, num_heads=2, feature_layers=(0, 2), head_channels=48, num_classes=5
)  # 3 x 5 = 15 tokens: odd on purpose


def _models(noise: float = 0.05, seed: int = 0) -> tuple[DenseViT, dict[str, DenseViT]]:
    """A base and two sub-tasks whose encoders are the base plus noise (like fine-tuned siblings)."""
    torch.manual_seed(seed)
    base = DenseViT(CFG, "segmentation").eval()
    subs = {}
    for task in ("depth", "normals"):
        sub = DenseViT(CFG, task).eval()
        enc = copy.deepcopy(base.encoder)
        with torch.no_grad():
            for p in enc.parameters():
                p.add_(noise * torch.randn_like(p) * (p.std() if p.numel() > 1 else 1.0))
        sub.encoder = enc
        subs[task] = sub
    return base, subs


def _images(b: int = 2) -> torch.Tensor:
    return torch.randn(b, 3, *CFG.img_size, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize(
    "kind,args",
    [("dense", {}), ("lowrank", {"rank": 6}), ("sparse", {"density": 0.2}), ("rows", {"row_fraction": 0.25})],
)
def test_threshold_zero_equals_dense_subtask_models(kind, args):
    base, subs = _models()
    shared = SharedMultiTaskModel.from_dense(base, subs, kind, **args).eval()
    x = _images()
    with torch.no_grad():
        out, stats = shared(x, thresholds=0.0, max_token_fraction=1.0)
        assert torch.allclose(out["segmentation"], base(x), atol=1e-5)
        for task in subs:
            dense = shared.subtasks[task].to_dense_model(base)
            assert torch.allclose(out[task], dense(x), atol=1e-4), task
    assert stats.recomputed_fraction == {"segmentation": 1.0, "depth": 1.0, "normals": 1.0}


def test_executed_macs_equal_the_operator_count_of_what_ran():
    base, subs = _models(noise=0.2)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    x = _images()
    with torch.no_grad():
        # the first call applies the deltas to the weights and prepares the scoring factors once (a load-time
        # cost, not per frame)
        shared(x)
        shared(x, thresholds=0.15)
    for thr, frac in [(0.0, 1.0), (0.15, 1.0), (0.0, 0.4), (0.3, 0.6)]:
        with torch.no_grad(), CountMacs() as counter:
            _, stats = shared(x, thresholds=thr, max_token_fraction=frac)
        assert stats.macs_total == counter.macs, (thr, frac)
        assert stats.macs_total == sum(stats.macs.values())


def test_dense_equivalent_macs_match_a_dense_run():
    base, subs = _models()
    shared = SharedMultiTaskModel.from_dense(base, subs, "dense").eval()
    x = _images(1)
    _, stats = shared(x)
    for task, model in [("segmentation", base), *subs.items()]:
        with torch.no_grad(), CountMacs() as counter:
            model(x)
        assert stats.macs_dense[task] == counter.macs, task
        assert dense_model_macs(model, CFG.img_size) == counter.macs, task  # what the benchmark counts


def test_cost_does_not_grow_with_the_threshold():
    """Monotone over thresholds > 0. Threshold 0 recomputes everything without scoring any token, so it
    costs the scoring less than a tiny positive threshold that also recomputes (nearly) everything."""
    base, subs = _models(noise=0.1)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    x = _images()
    costs, fractions = [], []
    with torch.no_grad():
        for thr in (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 10.0):
            _, stats = shared(x, thresholds=thr)
            costs.append(stats.macs_total)
            fractions.append(stats.recomputed_fraction["depth"])
    assert all(a >= b for a, b in zip(costs[1:], costs[2:], strict=False)), costs
    assert all(a >= b for a, b in zip(fractions, fractions[1:], strict=False)), fractions
    assert costs[0] > costs[-1] and fractions[-1] == 0.0  # the range actually spans something


def test_token_cap_bounds_the_rows_that_run():
    base, subs = _models(noise=0.3)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    n = 15
    with torch.no_grad():
        _, stats = shared(_images(1), thresholds=0.0, max_token_fraction=0.3)
    for layer in stats.layers:
        for task in ("depth", "normals"):
            assert layer[task].rows == token_budget(n, 0.3)


def _reference(shared: SharedMultiTaskModel, x: torch.Tensor, task: str, thr: float, frac: float) -> torch.Tensor:
    """The documented semantics computed the slow way: full dense sub-task block on every token, then masks.

    Tokens are scored by their input change and by what the sub-task's QKV and first-MLP weights change
    (relative to the base's activations); selected tokens take the sub-task's result; keys/values of
    unselected tokens are the base's; unselected tokens take the base's residual update.
    """
    base = shared.base
    sub = shared.subtasks[task].to_dense_model(base)
    enc_b, enc_s = base.encoder, sub.encoder
    xb, grid = enc_b.embed(x)
    xs, _ = enc_s.embed(x)
    n = xb.shape[1]
    budget = token_budget(n, frac)
    feats = []
    for li, (bb, bs) in enumerate(zip(enc_b.blocks, enc_s.blocks, strict=True)):
        score = delta_score(xs, xb)
        qkv_b = bb.attn.qkv(bb.norm1(xb))
        q_, k_, v_ = qkv_b.reshape(*xb.shape[:2], 3, bb.attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        mid_b = xb + bb.attn.proj(F.scaled_dot_product_attention(q_, k_, v_).transpose(1, 2).reshape(xb.shape))
        fc1_b = bb.mlp.fc1(bb.norm2(mid_b))
        for lin, norm, act in (("qkv", "norm1", qkv_b), ("fc1", "norm2", fc1_b)):
            lin_s = bs.attn.qkv if lin == "qkv" else bs.mlp.fc1
            lin_b = bb.attn.qkv if lin == "qkv" else bb.mlp.fc1
            change = getattr(bs, norm)(xs) @ (lin_s.weight - lin_b.weight).t()
            score = torch.maximum(score, change.norm(dim=-1) / (act.norm(dim=-1) + 1e-6))
        mask = torch.zeros_like(score, dtype=torch.bool)
        for i in range(score.shape[0]):
            order = score[i].argsort(descending=True)[:budget]
            mask[i, order] = score[i, order] > thr if thr > 0 else True
        yb = bb(xb)

        def qkv(blk, t):
            b_, n_, c_ = t.shape
            h, d = blk.attn.num_heads, blk.attn.head_dim
            return blk.attn.qkv(blk.norm1(t)).reshape(b_, n_, 3, h, d).permute(2, 0, 3, 1, 4).unbind(0)

        _, kb, vb = qkv(bb, xb)
        qs, ks, vs = qkv(bs, xs)
        m4 = mask[:, None, :, None]
        o = F.scaled_dot_product_attention(qs, torch.where(m4, ks, kb), torch.where(m4, vs, vb))
        mid = xs + bs.attn.proj(o.transpose(1, 2).reshape(xs.shape))
        full = mid + bs.mlp(bs.norm2(mid))
        xs = torch.where(mask[..., None], full, xs + yb - xb)
        xb = yb
        if li in shared.cfg.feature_layers:
            feats.append(enc_s.norm(xs) if li == len(enc_b.blocks) - 1 else xs)
    return sub.head(feats, grid, x)


@pytest.mark.parametrize("thr,frac", [(0.07, 1.0), (0.065, 0.5), (0.0, 0.4), (0.075, 0.8)])
def test_partial_recompute_matches_the_documented_approximation(thr, frac):
    base, subs = _models(noise=0.1)
    shared = SharedMultiTaskModel.from_dense(base, subs, "rows", row_fraction=0.3).eval()
    x = _images(3)
    with torch.no_grad():
        out, stats = shared(x, thresholds=thr, max_token_fraction=frac)
        for task in subs:
            assert torch.allclose(out[task], _reference(shared, x, task, thr, frac), atol=1e-4), task
            assert 0.0 < stats.recomputed_fraction[task] < 1.0


def test_error_is_measured_and_shrinks_to_zero_with_the_threshold():
    base, subs = _models(noise=0.05)
    shared = SharedMultiTaskModel.from_dense(base, subs, "dense").eval()
    x = _images()
    with torch.no_grad():
        dense = shared.subtasks["depth"].to_dense_model(base)(x)
        errors = []
        for thr in (0.0, 0.05, 0.2):
            out, _ = shared(x, thresholds=thr)
            errors.append((out["depth"] - dense).abs().mean().item())
    assert errors[0] < 1e-5 < errors[-1]


def test_batched_subtasks_equal_per_task_runs_and_sync_free_mode():
    base, subs = _models(noise=0.1)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    x = _images(2)
    thr = {"depth": 0.05, "normals": 0.15}
    with torch.no_grad():
        both, stats = shared(x, thresholds=thr, max_token_fraction=0.7)
        fixed, fixed_stats = shared(x, thresholds=thr, max_token_fraction=0.7, sync_free=True)
        for task in subs:
            alone, alone_stats = shared(x, thresholds=thr, max_token_fraction=0.7, tasks=[task])
            assert set(alone) == {"segmentation", task}
            assert torch.allclose(both[task], alone[task], atol=1e-5), task
            # batched, a sub-task runs as many rows as the neediest one (padding, computed and counted)
            assert alone_stats.macs[task] <= stats.macs[task]
            assert alone_stats.recomputed_fraction[task] == stats.recomputed_fraction[task]
            assert torch.allclose(both[task], fixed[task], atol=1e-5), task
            assert fixed_stats.rows_fraction[task] >= stats.rows_fraction[task]
    assert stats.recomputed_fraction["depth"] > stats.recomputed_fraction["normals"]
    for layer in stats.layers:
        assert layer["depth"].rows == layer["normals"].rows  # one batched product per layer


def test_subtask_equal_to_base_is_free_and_exact_at_any_threshold():
    torch.manual_seed(0)
    base = DenseViT(CFG, "segmentation").eval()
    sub = DenseViT(CFG, "depth").eval()
    sub.encoder = copy.deepcopy(base.encoder)
    shared = SharedMultiTaskModel.from_dense(base, {"depth": sub}, "lowrank", rank=4).eval()
    assert all(d.kind == "zero" for d in shared.subtasks["depth"].deltas.values())
    x = _images(1)
    with torch.no_grad():
        out, stats = shared(x, thresholds=0.01)
        assert torch.allclose(out["depth"], sub(x), atol=1e-5)
    assert stats.recomputed_fraction["depth"] == 0.0
    assert all(layer["depth"].macs == 0 for layer in stats.layers)


def test_bad_arguments_are_named():
    base, subs = _models()
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=2)
    with pytest.raises(ValueError, match="no threshold for sub-task"):
        shared(_images(1), thresholds={"depth": 0.1})
    with pytest.raises(ValueError, match="unknown sub-task"):
        shared(_images(1), tasks=["boundaries"])
    with pytest.raises(ValueError, match="max_token_fraction"):
        shared(_images(1), max_token_fraction=1.5)


def test_other_input_sizes_and_training_crops_match_the_dense_models():
    """Frames of another aspect ratio (resampled positions) and patch-aligned crops (sliced positions)."""
    base, subs = _models(noise=0.1)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    wide = torch.randn(1, 3, 48, 112, generator=torch.Generator().manual_seed(3))
    crop = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out, stats = shared(wide)
        assert stats.tokens == 3 * 7
        for task in subs:
            assert torch.allclose(out[task], shared.subtasks[task].to_dense_model(base)(wide), atol=1e-4), task
        out, _ = shared(crop, offset=(1, 2))
        for task in subs:
            dense = shared.subtasks[task].to_dense_model(base)
            assert torch.allclose(out[task], dense(crop, offset=(1, 2)), atol=1e-4), task


def test_shared_prefix_layers_cost_nothing_and_the_rest_stays_exact():
    """A sub-task starting at block 2 stores nothing for the embedding and blocks 0-1, spends no MACs there,
    and at threshold 0 still equals its dense model; its narrower head is its own."""
    base, _ = _models()
    torch.manual_seed(3)
    st = subtask_from_base(base, "depth", "lowrank", rank=4, seed=0, start_layer=2, head_channels=24)
    with torch.no_grad():
        for p in st.deltas.parameters():
            p.add_(0.1 * torch.randn_like(p))
    names = [n.replace("__", ".") for n in [*st.deltas.keys(), *st.vectors.keys()]]
    assert names and all(n.startswith(("blocks.2.", "norm.")) for n in names), names
    assert sum(p.numel() for p in st.head.parameters()) < sum(p.numel() for p in base.head.parameters())
    shared = SharedMultiTaskModel(base, {"depth": st}).eval()
    x = _images()
    with torch.no_grad():
        out, stats = shared(x, thresholds=0.0)
        assert torch.allclose(out["depth"], st.to_dense_model(base)(x), atol=1e-4)
        _, thr_stats = shared(x, thresholds=0.5)
    per_layer = [layer["depth"].macs for layer in stats.layers]
    assert per_layer[0] == per_layer[1] == 0 and per_layer[2] > 0
    assert [layer["depth"].recomputed for layer in stats.layers] == [0.0, 0.0, 1.0]
    assert thr_stats.macs["depth"] <= stats.macs["depth"]


@pytest.mark.parametrize("normals_rank", [4, 3])  # one batched group, or one group per rank
def test_lowrank_weight_score_equals_the_explicit_norm(normals_rank):
    """The token score (input change, then the weight term of low-rank deltas computed through B^T B with the
    LayerNorm folded into A, batched over sub-tasks) equals |x_s - x_b| / |x_b| and |dW h|, written out."""
    from mtshare_ros.sharing.block_ops import score_factors, token_scores
    from mtshare_ros.sharing.subtask import SubTaskDelta

    base, subs = _models(noise=0.1)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    shared.set_subtask(SubTaskDelta.from_dense(base, subs["normals"], "lowrank", rank=normals_rank))
    blk = base.encoder.blocks[1]
    g = torch.Generator().manual_seed(2)
    x_b = torch.randn(2, 15, CFG.embed_dim, generator=g)
    xs = torch.stack([x_b, x_b + 0.3 * torch.randn(2, 15, CFG.embed_dim, generator=g)])
    ones = torch.ones(2, 15)
    with torch.no_grad():
        subtasks = [shared.subtasks["depth"], shared.subtasks["normals"]]
        got = token_scores(1, blk, subtasks, score_factors(1, subtasks), xs, x_b, (ones, ones))
        for i, task in enumerate(("depth", "normals")):
            st = shared.subtasks[task]
            want = (xs[i] - x_b).norm(dim=-1) / (x_b.norm(dim=-1) + 1e-6)
            for lin, norm in (("attn.qkv", "norm1"), ("mlp.fc1", "norm2")):
                w, b = st.vector(f"blocks.1.{norm}.weight"), st.vector(f"blocks.1.{norm}.bias")
                h = F.layer_norm(xs[i], (CFG.embed_dim,), w, b, getattr(blk, norm).eps)
                change = (h @ st.delta(f"blocks.1.{lin}.weight").dense().t()).norm(dim=-1) / (1 + 1e-6)
                want = torch.maximum(want, change)
            assert torch.allclose(got[i], want, rtol=1e-4, atol=1e-5), task


def test_fixed_mode_runs_the_same_rows_for_every_frame_and_is_the_threshold_loop_at_zero():
    """The fixed-budget mode: every block computes exactly ``ceil(cap * N)`` rows per sub-task, all of them used,
    whatever the frame shows (what makes the shapes exportable); it is the threshold loop at threshold 0 and
    sync-free, not a second forward."""
    base, subs = _models(noise=0.2)
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=4).eval()
    n, cap = 15, 0.4
    k = token_budget(n, cap)
    frames = [_images(1), torch.zeros(1, 3, *CFG.img_size), 3.0 * torch.randn(1, 3, *CFG.img_size)]
    with torch.no_grad():
        runs = [shared.run(x, thresholds=0.5, max_token_fraction=cap, mode="fixed") for x in frames]
        for run in runs:
            assert [layer.rows for layer in run.layers] == [k] * CFG.depth
            assert all(layer.recomputed.tolist() == [k, k] for layer in run.layers)
        same = shared.run(frames[0], thresholds=0.0, max_token_fraction=cap, sync_free=True)
    for task in shared.tasks:
        assert torch.equal(runs[0].outputs[task], same.outputs[task]), task
    stats = [shared.summarize(r) for r in runs]
    assert stats[0].macs_total == stats[1].macs_total == stats[2].macs_total


def test_fixed_mode_at_cap_one_equals_the_dense_subtask_models():
    base, subs = _models()
    shared = SharedMultiTaskModel.from_dense(base, subs, "lowrank", rank=6).eval()
    x = _images()
    with torch.no_grad():
        out, _ = shared(x, thresholds=0.3, max_token_fraction=1.0, mode="fixed")
        for task in subs:
            assert torch.allclose(out[task], shared.subtasks[task].to_dense_model(base)(x), atol=1e-4), task


def test_fixed_mode_refuses_temporal_sharing_and_unknown_modes():
    from mtshare_ros.sharing.temporal import TemporalCache, TemporalSettings

    base, subs = _models()
    shared = SharedMultiTaskModel.from_dense(base, subs, "dense").eval()
    with pytest.raises(ValueError, match="per frame"):
        shared(_images(1), 0.0, 0.5, mode="fixed", temporal=TemporalSettings(enabled=True), cache=TemporalCache())
    with pytest.raises(ValueError, match="mode must be one of"):
        shared(_images(1), mode="fast")
