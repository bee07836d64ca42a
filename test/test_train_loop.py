"""The training loop on tiny procedural data: the loss falls, resume is exact, the CLIs write their files."""

import json
import math

import pytest
import torch

from mtshare_ros.models import load_checkpoint
from mtshare_ros.training import eval_cli, train_cli
from mtshare_ros.training.config import ConfigError, load_config
from mtshare_ros.training.distributed import DistInfo
from mtshare_ros.training.losses import SI_LAMBDA, depth_loss, normals_loss, segmentation_loss
from mtshare_ros.training.toy_data import ToyScenes
from mtshare_ros.training.trainer import Trainer, batch_augment, train

TINY = [
    "model.img_size=[64,96]", "model.embed_dim=48", "model.depth=2", "model.num_heads=2",
    "model.feature_layers=[0,1]", "model.head_channels=48", "data.dataset=toy", "data.size=[64,96]",
    "data.num_workers=0", "train.batch_size=8", "train.warmup_steps=2", "train.threads=1", "train.log_every=1",
]


def tiny_config(tmp_path, *extra):
    return load_config(None, [*TINY, f"train.out_dir={tmp_path}", *extra])


def read_log(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_losses_ignore_invalid_pixels():
    logits = torch.zeros(1, 3, 1, 2)
    logits[0, 0, 0, 0] = 5.0
    s, c = segmentation_loss(logits, torch.tensor([[[0, 255]]]))
    assert c == 1 and s == pytest.approx(float(-torch.log_softmax(logits[0, :, 0, 0], 0)[0]))
    s, c = depth_loss(torch.tensor([[[[2.0, 99.0]]]]), torch.tensor([[[1.0, 0.0]]]))
    d = math.log(2.0)  # L1 + scale-invariant term sum(d^2) - 0.85 sum(d)^2 / n, on the one valid pixel
    assert c == 1 and s == pytest.approx(d + d * d - SI_LAMBDA * d * d)
    # an error of structure (zero mean in log) counts fully in the scale-invariant term ...
    s, c = depth_loss(torch.full((1, 1, 2, 2), 2.0), torch.tensor([[[1.0, 4.0], [1.0, 4.0]]]))
    assert c == 4 and s == pytest.approx(4 * d + 4 * d * d)
    # ... a pure scale error only with weight (1 - lambda)
    s, c = depth_loss(torch.full((1, 1, 2, 2), 2.0), torch.ones(1, 2, 2))
    assert c == 4 and s == pytest.approx(4 * d + 4 * d * d * (1 - SI_LAMBDA))
    pred = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 1.0]]]])
    s, c = normals_loss(pred, torch.tensor([[[[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 0.0]]]]))
    assert c == 1 and s == pytest.approx(1.0)  # 90 degrees off on the one valid pixel


def test_batch_flip_mirrors_every_map_and_negates_normals_x():
    batch = torch.utils.data.default_collate([ToyScenes(8)[i] for i in range(8)])
    targets = {k: batch[k] for k in ("segmentation", "depth", "normals")}
    image, out = batch_augment(batch["image"], targets, step=3, seed=0, info=DistInfo(), hflip=True, colour=0.0)
    flipped = [not torch.equal(image[i], batch["image"][i]) for i in range(8)]
    assert 0 < sum(flipped) < 8
    for i, f in enumerate(flipped):
        ref = batch["image"][i].flip(-1) if f else batch["image"][i]
        assert torch.equal(image[i], ref)
        assert torch.equal(out["segmentation"][i], batch["segmentation"][i].flip(-1) if f else batch["segmentation"][i])
        sign = torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1) if f else torch.ones(3, 1, 1)
        assert torch.equal(out["normals"][i], (batch["normals"][i].flip(-1) if f else batch["normals"][i]) * sign)
    # two processes, each with half of the global batch, draw the same per-sample decisions
    halves = [batch_augment(batch["image"][r::2], {}, 3, 0, DistInfo(r, 2), True, 0.3)[0] for r in (0, 1)]
    whole = batch_augment(batch["image"], {}, 3, 0, DistInfo(), True, 0.3)[0]
    assert torch.allclose(halves[0], whole[0::2]) and torch.allclose(halves[1], whole[1::2])


def test_a_few_steps_make_every_task_loss_fall(tmp_path):
    trainer = train(tiny_config(tmp_path, "train.steps=40", "train.lr=2e-3"), ToyScenes(64), ToyScenes(8, seed=1))
    log = [r for r in read_log(tmp_path) if "step" in r and "val" not in r]
    for task in ("segmentation", "depth", "normals"):
        first = sum(r[f"loss/{task}"] for r in log[:5]) / 5
        last = sum(r[f"loss/{task}"] for r in log[-5:]) / 5
        assert last < 0.7 * first, f"{task}: {first:.3f} -> {last:.3f}"
    models, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["provenance"]["steps"] == 40 and meta["provenance"]["dataset"]["train_samples"] == 64
    assert set(meta["provenance"]["val_metrics"]) == {"segmentation", "depth", "normals"}
    assert trainer.step == 40


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    crop = ["train.steps=6", "train.crop=[32,48]", "train.full_res_steps=2"]
    straight = train(tiny_config(tmp_path / "a", *crop), ToyScenes(24), None)
    interrupted = Trainer(tiny_config(tmp_path / "b", *crop), ToyScenes(24), None)
    batches = interrupted._batches()
    for _ in range(4):  # stop after 4 of 6 steps, mid-epoch (3 steps per epoch), with the state a crash leaves
        interrupted.train_step(next(batches))
    interrupted.save_state()
    resumed = train(tiny_config(tmp_path / "b", *crop), ToyScenes(24), None)
    assert resumed.step == 6
    for task in straight.models:
        theirs = resumed.models[task].state_dict()
        for name, a in straight.models[task].state_dict().items():
            assert torch.allclose(a, theirs[name], atol=1e-6), f"{task} {name}"


def test_a_fresh_checkout_resumes_from_the_committed_bf16_snapshot(tmp_path):
    """train.snapshot: a bf16 copy of the state beside last.pt; with out_dir gone (a fresh clone), training
    continues from it at the same step, close to the uninterrupted run (bf16 rounding only)."""
    crop = ["train.steps=6", "train.crop=[32,48]", "train.full_res_steps=2", f"train.snapshot={tmp_path}/snap.pt"]
    straight = train(tiny_config(tmp_path / "a", *crop[:3]), ToyScenes(24), None)
    interrupted = Trainer(tiny_config(tmp_path / "b", *crop), ToyScenes(24), None)
    batches = interrupted._batches()
    for _ in range(4):
        interrupted.train_step(next(batches))
    interrupted.save_state()
    snap = torch.load(tmp_path / "snap.pt", weights_only=False)
    weights = [v for sd in snap["models"].values() for v in sd.values() if v.is_floating_point()]
    assert weights and all(v.dtype == torch.bfloat16 for v in weights)
    assert (tmp_path / "snap.pt").stat().st_size < 0.6 * (tmp_path / "b" / "last.pt").stat().st_size
    (tmp_path / "b" / "last.pt").unlink()
    resumed = train(tiny_config(tmp_path / "c", *crop), ToyScenes(24), None)
    assert resumed.step == 6
    assert [r["step"] for r in read_log(tmp_path / "c") if "loss/depth" in r] == [5, 6]  # resumed, not restarted
    for task in straight.models:
        theirs = resumed.models[task].state_dict()
        for name, a in straight.models[task].state_dict().items():
            assert theirs[name].dtype == a.dtype
            assert torch.allclose(a, theirs[name], atol=2e-2, rtol=2e-2), f"{task} {name}"
    fresh = Trainer(tiny_config(tmp_path / "d", *crop[:3]), ToyScenes(24), None)
    fresh.maybe_resume()
    assert fresh.step == 0  # no snapshot configured: a new run


def test_the_snapshot_of_a_finished_run_keeps_the_models_and_drops_the_optimizer(tmp_path, caplog):
    """A finished run's snapshot (what is committed once a stage ends) holds bf16 models, step and schedule but no
    Adam moments: a fresh checkout takes it as done, and a longer run continues from it with fresh moments."""
    snap = tmp_path / "snap.pt"
    done = train(tiny_config(tmp_path / "a", "train.steps=3", f"train.snapshot={snap}"), ToyScenes(24), None)
    state = torch.load(snap, weights_only=False)
    assert state["step"] == 3 and state["optimizer"] is None and state["scheduler"]
    assert snap.stat().st_size < 0.3 * (tmp_path / "a" / "last.pt").stat().st_size  # bf16, no moments: ~1/6
    again = train(tiny_config(tmp_path / "b", "train.steps=3", f"train.snapshot={snap}"), ToyScenes(24), None)
    assert again.step == 3 and not [r for r in read_log(tmp_path / "b") if "loss/depth" in r]  # nothing retrained
    for task in done.models:
        for name, a in done.models[task].state_dict().items():
            assert torch.allclose(a, again.models[task].state_dict()[name], atol=2e-2, rtol=2e-2), f"{task} {name}"
    with caplog.at_level("WARNING", logger="mtshare_ros.training.trainer"):
        longer = train(tiny_config(tmp_path / "c", "train.steps=5", f"train.snapshot={snap}"), ToyScenes(24), None)
    assert longer.step == 5 and [r["step"] for r in read_log(tmp_path / "c") if "loss/depth" in r] == [4, 5]
    assert "without the optimizer's moments" in caplog.text


def test_export_state_writes_the_models_of_an_unfinished_run(tmp_path, capsys):
    """``mtshare train --export-state``: the models where a run stopped, as a checkpoint, without training on."""
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("data:\n  dataset: toy\n")
    args = ["--config", str(cfg), *TINY, "train.steps=8", f"train.out_dir={tmp_path / 'run'}"]
    assert train_cli.main([*args, "--export-state", str(tmp_path / "none.pt")]) == 2  # no state yet
    assert "no training state" in capsys.readouterr().err
    interrupted = Trainer(load_config(str(cfg), args[2:]), ToyScenes(24), None)
    batches = interrupted._batches()
    for _ in range(3):
        interrupted.train_step(next(batches))
    interrupted.save_state()
    assert train_cli.main([*args, "--export-state", str(tmp_path / "mid.pt")]) == 0
    assert "step 3 of 8" in capsys.readouterr().out
    models, meta = load_checkpoint(tmp_path / "mid.pt")
    assert meta["provenance"]["steps"] == 3 and meta["provenance"]["exported_from_state"]
    for task, m in interrupted.models.items():
        for name, a in m.state_dict().items():
            assert torch.equal(a, models[task].state_dict()[name]), f"{task} {name}"
    assert not (tmp_path / "run" / "model.pt").exists()  # nothing trained, nothing finished


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="train.stpes"):
        load_config(None, ["train.stpes=3"])
    with pytest.raises(ConfigError, match=r"model.depht"):
        train(tiny_config(tmp_path, "model.depht=3"), ToyScenes(8), None)
    with pytest.raises(ConfigError, match="train.tasks"):
        load_config(None, ["train.tasks=[edges]"])


def test_train_and_eval_cli_write_checkpoint_json_and_markdown(tmp_path, capsys):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text("data:\n  dataset: toy\n")
    args = ["--config", str(cfg), *TINY, "train.steps=3", f"train.out_dir={tmp_path / 'run'}",
            f"export.path={tmp_path / 'export.pt'}"]
    assert train_cli.main(args) == 0
    _, meta = load_checkpoint(tmp_path / "export.pt")
    assert meta["provenance"]["command"].startswith("mtshare train --config")
    out = tmp_path / "res.json"
    assert eval_cli.main(["--checkpoint", str(tmp_path / "export.pt"), "--dataset", "toy", "--root", "unused",
                          "--out", str(out), "--threads", "1", "--num-workers", "0"]) == 0
    res = json.loads(out.read_text())
    assert res["samples"] == 16 and 0.0 <= res["metrics"]["segmentation"]["mIoU"] <= 1.0
    assert res["metrics"]["depth"]["GMACs"] > 0
    assert "| mIoU | pixel_acc |" in out.with_suffix(".md").read_text()
    # the shared engine at threshold 0 is exact: same metrics; with a token cap it reports what it skipped
    common = ["--checkpoint", str(tmp_path / "export.pt"), "--dataset", "toy", "--root", "unused", "--threads", "1",
              "--num-workers", "0"]
    assert eval_cli.main([*common, "--out", str(tmp_path / "s0.json"), "--sharing", "0:1"]) == 0
    exact = json.loads((tmp_path / "s0.json").read_text())
    for task, m in res["metrics"].items():
        key = {"segmentation": "mIoU", "depth": "rmse", "normals": "mean_deg"}[task]
        assert exact["metrics"][task][key] == pytest.approx(m[key], rel=1e-4, abs=1e-5), task
    assert eval_cli.main([*common, "--out", str(tmp_path / "s1.json"), "--sharing", "0.01:0.5"]) == 0
    capped = json.loads((tmp_path / "s1.json").read_text())["sharing"]
    assert capped["recomputed_fraction"]["depth"] <= 0.5 and capped["macs_vs_independent"] < 1.0
    # one sub-task alone: the base task runs (the engine needs it) but only what was asked is reported
    assert eval_cli.main([*common, "--out", str(tmp_path / "n.json"), "--sharing", "0:1", "--tasks", "normals"]) == 0
    alone = json.loads((tmp_path / "n.json").read_text())["metrics"]
    assert list(alone) == ["normals"]
    assert alone["normals"]["mean_deg"] == pytest.approx(res["metrics"]["normals"]["mean_deg"], rel=1e-4)
    assert eval_cli.main([*common, "--out", str(tmp_path / "bad.json"), "--sharing", "0.1"]) == 2
    assert train_cli.main(["--config", str(cfg), "train.nope=1"]) == 2
    assert "train.nope" in capsys.readouterr().err


def test_warm_start_adds_the_detail_branch_without_changing_the_outputs(tmp_path):
    """``train.init`` from models without the head's detail branch: the zero-initialised branch keeps every
    output as it was, so a second stage continues exactly where the first ended."""
    first = train(tiny_config(tmp_path / "a", "train.steps=3", "model.detail_channels=0"), ToyScenes(16), None)
    second = Trainer(
        tiny_config(tmp_path / "b", "train.steps=3", f"train.init={tmp_path / 'a' / 'model.pt'}"), ToyScenes(16), None
    )
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    for task, model in second.models.items():
        assert model.head.detail is not None and first.models[task].head.detail is None
        with torch.no_grad():
            assert torch.allclose(model.eval()(x), first.models[task].eval()(x), atol=1e-6), task
    wrong = tiny_config(tmp_path / "c", "model.embed_dim=64", f"train.init={tmp_path / 'a' / 'model.pt'}")
    with pytest.raises(ConfigError, match="does not fit the model"):
        Trainer(wrong, ToyScenes(16), None)


def test_export_merge_replaces_only_the_trained_task(tmp_path):
    """Fine-tune one task of a checkpoint and export it back: the other tasks' weights and record are kept."""
    train(tiny_config(tmp_path / "all", "train.steps=2", f"export.path={tmp_path / 'all.pt'}"), ToyScenes(16), None)
    merged = tmp_path / "merged.pt"
    one = tiny_config(tmp_path / "one", "train.steps=2", "train.tasks=[depth]", f"train.init={tmp_path / 'all.pt'}",
                      f"export.path={merged}", f"export.merge={tmp_path / 'all.pt'}")
    train(one, ToyScenes(16), None)
    before, _ = load_checkpoint(tmp_path / "all.pt")
    after, meta = load_checkpoint(merged)
    tuned, _ = load_checkpoint(tmp_path / "one" / "model.pt")
    assert list(after) == ["segmentation", "depth", "normals"]
    for task, model in after.items():
        want = tuned[task] if task == "depth" else before[task]
        for (name, got), ref in zip(model.state_dict().items(), want.state_dict().values(), strict=True):
            assert torch.allclose(got, ref.half().float()), (task, name)  # fp16 export
    assert not torch.equal(after["depth"].head.out.weight, before["depth"].head.out.weight)
    assert meta["provenance"]["merged"]["tasks_from_source"] == ["segmentation", "normals"]
    other = tiny_config(tmp_path / "bad", "train.steps=1", "train.tasks=[depth]", "model.embed_dim=64",
                        f"export.path={tmp_path / 'bad.pt'}", f"export.merge={tmp_path / 'all.pt'}")
    with pytest.raises(ConfigError, match="export.merge"):
        Trainer(other, ToyScenes(16), None)  # refused before any training
