"""The multi-task model (``train.shared_encoder``: one encoder, a head per task) on real tiny models and toy data:
one encoder object that runs once per step, training that lowers every loss, resume, the checkpoint's record, and
single-task fine-tuning from it."""

import json

import pytest
import torch
from ddp_compare import assert_data_parallel_matches, run_probe
from op_macs import CountMacs
from test_train_ddp import ARGS as DDP_ARGS
from test_train_ddp import REPO

from mtshare_ros.models import (
    CheckpointError,
    ModelConfig,
    build_task_models,
    checkpoint_shares_encoder,
    load_checkpoint,
    run_tasks,
    save_checkpoint,
    shared_encoder_of,
)
from mtshare_ros.sharing.cost import multitask_model_macs
from mtshare_ros.sharing.loader import MULTITASK_SOURCE, load_models
from mtshare_ros.training.config import ConfigError, load_config
from mtshare_ros.training.toy_data import ToyScenes
from mtshare_ros.training.trainer import TaskModels, Trainer, train

TASKS = ["segmentation", "depth", "normals"]
SMALL = ModelConfig(img_size=(64, 64), embed_dim=48, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=48,
                    num_classes=15)
TINY = [
    "model.img_size=[64,64]", "model.embed_dim=48", "model.depth=2", "model.num_heads=2",
    "model.feature_layers=[0,1]", "model.head_channels=48", "data.dataset=toy", "data.size=[64,64]",
    "data.num_workers=0", "train.batch_size=8", "train.warmup_steps=2", "train.threads=1", "train.log_every=1",
]


def tiny_config(out, *extra, shared=True):
    return load_config(None, [*TINY, f"train.out_dir={out}", f"train.shared_encoder={str(shared).lower()}", *extra])


def toy(n, seed=0):
    return ToyScenes(n, (64, 64), seed)


def read_log(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def encoders(models):
    return {id(m.encoder) for m in models.values()}


def test_one_encoder_object_runs_once_for_all_heads():
    torch.manual_seed(0)
    shared = build_task_models(SMALL, TASKS, shared_encoder=True).eval()
    independent = build_task_models(SMALL, TASKS).eval()
    assert len(encoders(shared)) == 1 and shared_encoder_of(shared) is shared["depth"].encoder
    assert len(encoders(independent)) == 3 and shared_encoder_of(independent) is None
    unique = sum(p.numel() for p in shared.parameters())  # parameters() counts the shared encoder once
    enc = sum(p.numel() for p in shared["depth"].encoder.parameters())
    assert unique == sum(sum(p.numel() for p in m.parameters()) for m in shared.values()) - 2 * enc

    x = torch.randn(2, 3, 64, 64)
    calls = []
    hook = shared["segmentation"].encoder.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad(), CountMacs() as counted:
        out = TaskModels(shared)(x)
    hook.remove()
    assert len(calls) == 1
    with torch.no_grad():
        for task in TASKS:  # the same outputs as running each task model on its own
            assert torch.allclose(out[task], shared[task](x), atol=1e-6), task
        with CountMacs() as one_encoder:
            shared["depth"].encoder(x)
        with CountMacs() as separately:
            run_tasks(independent, x)
    assert counted.macs == separately.macs - 2 * one_encoder.macs
    assert multitask_model_macs(shared, (64, 64), frames=2) == counted.macs  # the benchmark's count
    assert multitask_model_macs(independent, (64, 64), frames=2) == separately.macs


def test_multitask_training_shares_one_encoder_and_lowers_every_loss(tmp_path):
    cfg = tiny_config(tmp_path, "train.steps=80", "train.lr=2e-3", f"export.path={tmp_path / 'export.pt'}")
    trainer = Trainer(cfg, toy(64), toy(8, seed=1))
    encoder = shared_encoder_of(trainer.models)
    assert encoder is not None
    start = {k: v.clone() for k, v in encoder.state_dict().items()}
    # each parameter in one optimizer group, and every parameter in one
    ids = [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in trainer.models.parameters()}
    assert [name for name, _ in trainer.units] == ["encoder", "segmentation.head", "depth.head", "normals.head"]

    calls = []
    hook = encoder.register_forward_hook(lambda *_: calls.append(1))
    batches = trainer._batches()
    for _ in range(3):
        trainer.train_step(next(batches))
    hook.remove()
    assert len(calls) == 3  # once per step, for three heads

    trainer.run()  # continues from step 3
    assert trainer.step == 80 and shared_encoder_of(trainer.models) is encoder
    assert any(not torch.equal(v, start[k]) for k, v in encoder.state_dict().items())
    log = [r for r in read_log(tmp_path) if "val" not in r]
    for task in TASKS:
        first = sum(r[f"loss/{task}"] for r in log[:5]) / 5
        last = sum(r[f"loss/{task}"] for r in log[-5:]) / 5
        assert last < 0.7 * first, f"{task}: {first:.3f} -> {last:.3f}"

    # the checkpoint: per-task layout with equal encoders, the flag, and one encoder again when asked
    path = tmp_path / "model.pt"
    models, meta = load_checkpoint(path)
    assert checkpoint_shares_encoder(path) and checkpoint_shares_encoder(meta) and meta["provenance"]["shared_encoder"]
    assert set(meta["provenance"]["val_metrics"]) == set(TASKS)
    for task in TASKS[1:]:
        for (name, a), b in zip(models[task].encoder.state_dict().items(), models["segmentation"].encoder.state_dict()
                                .values(), strict=True):
            assert torch.equal(a, b), (task, name)
    tied, _ = load_checkpoint(path, shared_encoder=True)
    assert len(encoders(tied)) == 1
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        trained = {t: m.eval()(x) for t, m in trainer.models.items()}
        for task, out in run_tasks(tied, x).items():
            assert torch.allclose(out, trained[task], atol=1e-5), task
    # the fp16 export stores the encoder once: about half the size of the same weights as three models
    half = tmp_path / "export.pt"
    assert checkpoint_shares_encoder(half)
    apart = save_checkpoint(tmp_path / "apart.pt", load_checkpoint(half)[0], meta["model_config"],
                            meta["class_names"], half=True)
    assert not checkpoint_shares_encoder(apart)
    assert half.stat().st_size < 0.7 * apart.stat().st_size
    # independent models (different encoders) are refused as one shared encoder, naming a differing tensor
    separate = save_checkpoint(tmp_path / "ind.pt", build_task_models(meta["model_config"], TASKS),
                               meta["model_config"], meta["class_names"])
    with pytest.raises(CheckpointError, match="differ in encoder.*not one shared encoder"):
        load_checkpoint(separate, shared_encoder=True)


def test_resume_continues_exactly_and_keeps_one_encoder(tmp_path):
    crop = ["train.steps=5", "train.crop=[32,48]", "train.full_res_steps=2", "model.img_size=[64,96]",
            "data.size=[64,96]"]
    straight = train(tiny_config(tmp_path / "a", *crop), ToyScenes(24), None)
    interrupted = Trainer(tiny_config(tmp_path / "b", *crop), ToyScenes(24), None)
    batches = interrupted._batches()
    for _ in range(3):  # stop mid-epoch (3 steps per epoch), with the state a crash leaves
        interrupted.train_step(next(batches))
    interrupted.save_state()
    resumed = train(tiny_config(tmp_path / "b", *crop), ToyScenes(24), None)
    assert resumed.step == 5 and len(encoders(resumed.models)) == 1
    ids = [id(p) for g in resumed.optimizer.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    for task in TASKS:
        theirs = resumed.models[task].state_dict()
        for name, a in straight.models[task].state_dict().items():
            assert torch.allclose(a, theirs[name], atol=1e-6), f"{task} {name}"
    with pytest.raises(ConfigError, match="train.shared_encoder=True"):  # its optimizer groups would not fit
        Trainer(tiny_config(tmp_path / "b", *crop, "train.steps=7", shared=False), ToyScenes(24), None).run()


def test_bf16_snapshot_stores_the_shared_encoder_once(tmp_path):
    """train.snapshot of a multi-task run: half of last.pt (bf16), not the encoder once per task; resuming from
    it (out_dir gone, as on a fresh checkout) keeps one encoder."""
    snap = tmp_path / "snap.pt"
    cfg = tiny_config(tmp_path / "a", "train.steps=2", f"train.snapshot={snap}")
    trainer = Trainer(cfg, ToyScenes(24), None)
    trainer.save_state()
    full = (tmp_path / "a" / "last.pt").stat().st_size
    assert 0.4 * full < snap.stat().st_size < 0.6 * full
    (tmp_path / "a" / "last.pt").unlink()
    again = Trainer(tiny_config(tmp_path / "a", "train.steps=2", f"train.snapshot={snap}"), ToyScenes(24), None)
    again.maybe_resume()
    assert len(encoders(again.models)) == 1
    for task in TASKS:
        for name, a in trainer.models[task].state_dict().items():
            assert torch.allclose(a, again.models[task].state_dict()[name], atol=1e-2, rtol=1e-2), name


def test_a_multitask_checkpoint_runs_in_the_engine_as_one_encoder_and_three_heads(tmp_path):
    """``checkpoint: <multi-task model>`` in the node: the engine's exact deltas are zero, so it recomputes no
    token, gives the multi-task model's outputs and executes its MACs (one encoder, a head per task)."""
    train(tiny_config(tmp_path, "train.steps=2"), toy(16), None)
    loaded = load_models(tmp_path / "model.pt")
    assert loaded.sharing_source == MULTITASK_SOURCE
    tied, _ = load_checkpoint(tmp_path / "model.pt", shared_encoder=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out, stats = loaded.shared(x, thresholds=0.05, max_token_fraction=0.1)
        ref = run_tasks(tied.eval(), x)
    for task in TASKS:
        assert torch.allclose(out[task], ref[task], atol=1e-5), task
    assert stats.recomputed_fraction == {"segmentation": 1.0, "depth": 0.0, "normals": 0.0}
    assert stats.macs_total == multitask_model_macs(tied, (64, 64))


def test_fine_tune_single_tasks_from_the_multitask_model(tmp_path):
    """``train.init`` from a multi-task checkpoint starts independent models, each with the shared encoder and its
    own head, which then train apart; and independent models start a shared encoder from the first task's."""
    first = train(tiny_config(tmp_path / "mt", "train.steps=2"), toy(16), None)
    source = tmp_path / "mt" / "model.pt"
    tune = Trainer(tiny_config(tmp_path / "ft", "train.steps=2", f"train.init={source}", shared=False), toy(16), None)
    assert len(encoders(tune.models)) == 3
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for task, model in tune.models.items():
            assert torch.allclose(model.eval()(x), first.models[task].eval()(x), atol=1e-6), task
    tune.run()
    ckpt = load_checkpoint(tmp_path / "ft" / "model.pt")
    assert not checkpoint_shares_encoder(ckpt[1])
    a, b = (ckpt[0][t].encoder.blocks[0].mlp.fc1.weight for t in ("depth", "normals"))
    assert not torch.equal(a, b)  # fine-tuned apart

    back = Trainer(tiny_config(tmp_path / "back", "train.steps=1", f"train.init={tmp_path / 'ft' / 'model.pt'}"),
                   toy(16), None)
    enc = shared_encoder_of(back.models)
    assert enc is not None
    for name, v in enc.state_dict().items():
        assert torch.equal(v, ckpt[0]["segmentation"].encoder.state_dict()[name]), name
    assert torch.equal(back.models["depth"].head.out.weight, ckpt[0]["depth"].head.out.weight)


def test_two_gloo_processes_train_the_multitask_model_like_one(tmp_path):
    """DistributedDataParallel over task models that hold one encoder: each parameter is synchronised once and
    two processes follow one process with the same global batch, compared where float32 rounding cannot move
    them apart (``ddp_compare.py``; as for independent models, test/test_train_ddp.py). The one-process run uses
    ATen's portable kernels (``ATEN_CPU_CAPABILITY=default``), so the rounding differs as it does between an
    AVX2 and an AVX-512 machine."""
    args = [*DDP_ARGS, "train.shared_encoder=true"]
    one = run_probe(tmp_path / "1", 1, args, {"ATEN_CPU_CAPABILITY": "default"})
    two = run_probe(tmp_path / "2", 2, args)
    assert checkpoint_shares_encoder(two / "model.pt")
    assert load_checkpoint(two / "model.pt")[1]["provenance"]["world_size"] == 2
    assert_data_parallel_matches(one, two, shared=True)


def test_config_key_is_checked():
    assert load_config(None)["train"]["shared_encoder"] is False
    assert load_config(None, ["train.shared_encoder=true"])["train"]["shared_encoder"] is True
    for bad in ("1", "maybe", "null"):
        with pytest.raises(ConfigError, match="train.shared_encoder"):
            load_config(None, [f"train.shared_encoder={bad}"])


def test_bench_verdict_is_read_from_the_measured_rows(monkeypatch):
    """bench/sharing_report.py's verdict on the engine at the node default against the independent models and
    the two baselines, on made-up rows: each condition decides, and a baseline not measured leaves it open."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    from sharing_report import verdict_for

    def row(name, kind, macs, seg, depth, normals, role=None):
        r = {"name": name, "kind": kind, "ratios": {"macs_vs_base": macs},
             "headline": {"segmentation": seg, "depth": depth, "normals": normals}}
        return {**r, "role": role} if role else r

    def rows(engine=(1.17, 0.40, 1.005, 20.1), a=(1.10, 0.40, 1.04, 20.0), b=(1.12, 0.40, 1.00, 20.6)):
        out = [row("base", "base_only", 1.0, 0.40, 0, 0), row("independent", "independent", 3.0, 0.40, 1.0, 20.0),
               row("engine", "shared", *engine, role="node_default"),
               row("b", "shared", *b, role="baseline_nothing_recomputed")]
        return out + ([row("a", "multitask", *a, role="baseline_multitask")] if a else [])

    assert verdict_for(rows())["outcome"] == "earns its place"  # a: depth 3.4% better; b: normals 2.4% better
    costly = verdict_for(rows(engine=(1.40, 0.40, 1.005, 20.1)))
    assert costly["outcome"] == "does not earn its place" and [c["ok"] for c in costly["checks"]][0] is False
    assert verdict_for(rows(engine=(1.17, 0.40, 1.02, 20.1)))["outcome"] == "does not earn its place"  # depth +2%
    assert verdict_for(rows(b=(1.12, 0.40, 1.00, 20.3)))["outcome"] == "does not earn its place"  # only 1% better
    assert verdict_for(rows(a=(1.10, 0.41, 1.04, 20.0)))["outcome"] == "does not earn its place"  # seg 2.4% worse
    open_ = verdict_for(rows(a=None))
    assert open_["outcome"] == "not decided" and "--multitask" in open_["checks"][2]["value"]
