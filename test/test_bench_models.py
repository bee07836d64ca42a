"""bench/models.py (issue 16's model-quality benchmark) end to end on two tiny rendered splits: every variant,
split, metric and goal row is in the result, the numbers agree with ``mtshare eval`` on the same frames, and
every judgement (goal met, generalisation ratio) follows from the measured values by the issue's rules, which
this test states itself rather than reading them from the benchmark."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.data.synthetic import write_dataset
from mtshare_ros.models import ModelConfig, build_task_models, save_checkpoint
from mtshare_ros.runtime.settings import SharingSettings
from mtshare_ros.sharing.tokens import token_budget
from mtshare_ros.training import eval_cli
from mtshare_ros.training.metrics import HEADLINE

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
VARIANTS = {"independent", "multitask", "engine"}
SPLITS = ("test", "generalisation")
SIZE = ("48", "64")  # evaluation size: the tiny splits' own (timing is at 240x320 regardless)
ISSUE_GOALS = [  # issue 16, as the issue states them
    ("segmentation", "mIoU", ">=", 0.55),
    ("depth", "abs_rel", "<=", 0.20),
    ("depth", "abs_rel_aligned", "<=", 0.12),
    ("normals", "mean_deg", "<=", 18.0),
]
HIGHER_IS_BETTER = {"mIoU", "pixel_acc", "delta1", "within_11.25", "within_22.5", "within_30"}


def load_bench(name):
    """A bench script as a module (bench/ is not a package: its siblings import through sys.path)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(BENCH))
        yield load_bench("models"), load_bench("models_report")
        for name in ("bench_models", "bench_models_report", "models_report", "environment"):
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def splits(bench, tmp_path_factory):
    # after ``bench``: importing timm or torchvision after MuJoCo has rendered in a process crashes it, so
    # every import comes first
    root = tmp_path_factory.mktemp("splits")
    common = {"num_rooms": 2, "frames_per_room": 2, "height": 48, "width": 64, "val_fraction": 1, "progress": False}
    test = write_dataset(root / "test", seed=3, **common)
    gen = write_dataset(root / "generalisation", seed=5, domain="generalisation", **common)
    return test, gen


@pytest.fixture(scope="module")
def multitask_ckpt(tmp_path_factory):
    """A seeded, untrained multi-task model (one encoder object, three heads) of the shipped classes."""
    torch.manual_seed(0)
    cfg = ModelConfig(img_size=(48, 64), embed_dim=48, depth=2, num_heads=2, feature_layers=(0, 1),
                      head_channels=48, num_classes=len(SYNTHETIC_CLASSES))
    models = build_task_models(cfg, ["segmentation", "depth", "normals"], shared_encoder=True)
    return save_checkpoint(tmp_path_factory.mktemp("mt") / "multitask.pt", models, cfg, SYNTHETIC_CLASSES)


REAL_DEPTH = (1.0, 2.0, 4.0)  # three fronto-parallel walls, one per frame: the baselines are known exactly


@pytest.fixture(scope="module")
def real_root(tmp_path_factory):
    """Four frames in the 7-Scenes layout (96x128, fx 110): walls at known depths, frame 3 beyond --real-frames."""
    root = tmp_path_factory.mktemp("real")
    np.savetxt(root / "camera-intrinsics.txt", [[110.0, 0, 64.0], [0, 110.0, 48.0], [0, 0, 1]])
    rng = np.random.default_rng(0)
    for i, d in enumerate((*REAL_DEPTH, 3.0)):
        mm = np.full((96, 128), int(d * 1000), np.uint16)
        mm[:, :64] += np.uint16(d * 100)  # a step: the frame's median is the larger half's depth
        mm[:8] = 0  # invalid rows
        cv2.imwrite(str(root / f"frame-{i:06d}.color.jpg"), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        cv2.imwrite(str(root / f"frame-{i:06d}.depth.png"), mm)
    return root


@pytest.fixture(scope="module")
def run(bench, splits, multitask_ckpt, real_root, tmp_path_factory):
    models, _ = bench
    out = tmp_path_factory.mktemp("out")
    test, gen = splits
    argv = ["--multitask", str(multitask_ckpt), "--splits", f"test={test}", f"generalisation={gen}",
            "--size", *SIZE, "--frames", "2", "--warmup", "0", "--num-workers", "0", "--batch-size", "4",
            "--real-root", str(real_root), "--real-frames", "0", "2",
            "--out-dir", str(out), "--out-name", "m"]
    assert models.main(argv) == 0
    return json.loads((out / "m.json").read_text()), (out / "m.md").read_text(), out


def test_every_variant_split_and_metric_is_measured(run):
    r, md, _ = run
    assert set(r["variants"]) == VARIANTS and set(r["results"]) == VARIANTS
    assert r["environment"]["torch"] == torch.__version__ and r["environment"]["cpu_capability"]
    for v in VARIANTS:
        assert set(r["results"][v]) == set(SPLITS), v
        for split in SPLITS:
            res = r["results"][v][split]
            for task, metrics in HEADLINE.items():  # everything mtshare eval reports
                for metric in metrics:
                    value = res["metrics"][task][metric]
                    assert isinstance(value, float) and math.isfinite(value), (v, split, task, metric)
            assert res["gmacs_total"] > 0
    s = SharingSettings()
    for split in SPLITS:
        ind, eng = r["results"]["independent"][split], r["results"]["engine"][split]
        assert sum(ind["gmacs"].values()) == pytest.approx(ind["gmacs_total"])
        assert sum(eng["gmacs"].values()) == pytest.approx(eng["gmacs_total"])
        # the node's token cap skips most sub-task tokens: the engine executes less than the three models
        assert eng["gmacs_total"] < ind["gmacs_total"]
        # never more than the cap's whole tokens per block (ceil(cap x N) of the N tokens at the evaluated size)
        n = (int(SIZE[0]) // 16) * (int(SIZE[1]) // 16)
        cap = token_budget(n, s.max_token_fraction) / n
        assert all(0 <= eng["recomputed_fraction"][t] <= cap + 1e-9 for t in ("depth", "normals"))
        assert r["results"]["multitask"][split]["gmacs_total"] < ind["gmacs_total"]
    assert r["splits"]["test"]["samples"] == r["splits"]["test"]["available"] == 4
    for v in VARIANTS:
        assert v in md
    assert "## Goals" in md and "## Generalisation" in md and "## Speed" in md


def test_real_frames_beside_the_synthetic_splits(run):
    """Depth and normals of every variant on the real frames asked for, and the baselines, computed here from the
    walls' depths: a constant at each frame's median is off by the step on the nearer half (0.1 / 1.1 of its
    pixels' depth); every normal facing the camera is exact on a wall seen head-on."""
    r, md, _ = run
    real = r["real"]
    assert real["samples"] == 3 and real["frames"] == [0, 2] and real["focal_px"] == 110.0
    for v in VARIANTS:
        m = real["variants"][v]["metrics"]
        for task, key in (("depth", "abs_rel"), ("depth", "abs_rel_aligned"), ("depth", "delta1"),
                          ("normals", "mean_deg")):
            assert math.isfinite(m[task][key]), (v, task, key)
        assert real["variants"][v]["canonical_focal"] is None  # the shipped weights predict metric depth
    base = real["baselines"]
    # each frame: half its valid pixels at d, half at 1.1 d; the median of an even count is the lower middle
    # value (torch.median), d: the nearer half is exact, the other off by 0.1 / 1.1
    d = base["constant_median_depth"]
    assert d["abs_rel"] == pytest.approx(d["abs_rel_aligned"])
    assert d["abs_rel"] == pytest.approx(0.5 * 0.1 / 1.1, rel=1e-4)
    assert base["facing_camera_normals"]["mean_deg"] == pytest.approx(0.0, abs=0.05)
    assert "## Real frames" in md and "constant depth at the true median" in md


def test_real_part_is_skipped_without_the_folder(bench, splits, tmp_path):
    models, _ = bench
    test, _ = splits
    argv = ["--splits", f"test={test}", "--size", *SIZE, "--frames", "0", "--num-workers", "0",
            "--real-root", str(tmp_path / "absent"), "--out-dir", str(tmp_path), "--out-name", "s"]
    assert models.main(argv) == 0
    r = json.loads((tmp_path / "s.json").read_text())
    assert r["real"] is None and any("--real-root" in n for n in r["notes"])


def test_the_engine_runs_with_the_node_defaults(run):
    r, _, _ = run
    defaults = SharingSettings()
    sharing = r["settings"]["node_sharing"]
    assert sharing["enabled"] is defaults.enabled
    assert sharing["max_token_fraction"] == defaults.max_token_fraction
    assert sharing["thresholds"] == defaults.thresholds(["depth", "normals"])
    assert "trained sub-task deltas" in r["variants"]["engine"]["source"]


def test_metrics_equal_mtshare_eval_on_the_same_frames(run, splits, tmp_path):
    """The benchmark measures through the package's evaluation: the same numbers as ``mtshare eval``, with the
    independent models and with the engine at the node's settings."""
    r, _, _ = run
    test, _ = splits
    s = r["settings"]["node_sharing"]
    assert len(set(s["thresholds"].values())) == 1, "mtshare eval takes one threshold"
    setting = f"{next(iter(s['thresholds'].values()))}:{s['max_token_fraction']}"
    for variant, extra in (("independent", ["--checkpoint", "independent"]), ("engine", ["--sharing", setting])):
        out = tmp_path / f"{variant}.json"
        assert eval_cli.main(["--root", str(test), "--split", "val", "--size", *SIZE, "--num-workers", "0",
                              "--out", str(out), *extra]) == 0
        expected = json.loads(out.read_text())["metrics"]
        got = r["results"][variant]["test"]["metrics"]
        for task, metrics in HEADLINE.items():
            for metric in metrics:
                assert got[task][metric] == pytest.approx(expected[task][metric], rel=1e-6, abs=1e-9), (
                    variant, task, metric)
            assert r["results"][variant]["test"]["gmacs"][task] == pytest.approx(expected[task]["GMACs"])


def test_goal_rows_follow_from_the_measured_values(run):
    r, md, _ = run
    rows = r["goals"]
    for v in VARIANTS:
        for split in SPLITS:
            for task, metric, op, target in ISSUE_GOALS:
                match = [g for g in rows if (g["variant"], g["split"], g["task"], g["metric"]) == (v, split, task,
                                                                                                    metric)]
                assert len(match) == 1, (v, split, task, metric)
                g = match[0]
                value = r["results"][v][split]["metrics"][task][metric]
                assert g["value"] == value and g["target"] == target
                assert g["met"] is (value >= target if op == ">=" else value <= target)
    assert md.count("| segmentation mIoU >= 0.55 |") == len(VARIANTS) * len(SPLITS)
    t = r["timing"]
    assert t["size"] == [240, 320] and t["threads"] == 2 and t["frames"] == 2
    assert set(t["median_ms"]) == VARIANTS | {"base"}
    fps = [g for g in rows if g["metric"] == "fps"]
    assert len(fps) == 1 and fps[0]["variant"] == "engine"
    assert fps[0]["value"] == pytest.approx(1000 / t["median_ms"]["engine"])
    assert fps[0]["met"] is (fps[0]["value"] >= 10)
    assert t["vs_base"]["engine"] == pytest.approx(t["median_ms"]["engine"] / t["median_ms"]["base"])


def test_generalisation_ratios_are_computed_from_the_metrics(run):
    r, _, _ = run
    ratios = {(x["variant"], x["task"], x["metric"]): x for x in r["generalisation"]}
    differ = 0
    for v in VARIANTS:
        test, gen = (r["results"][v][s]["metrics"] for s in SPLITS)
        for task, metrics in HEADLINE.items():
            for metric in metrics:
                a, b = test[task][metric], gen[task][metric]
                expected = a / b if metric in HIGHER_IS_BETTER else b / a  # > 1: worse on the generalisation split
                x = ratios[(v, task, metric)]
                assert x["worse_factor"] == pytest.approx(expected), (v, task, metric)
                assert x["over_limit"] is (expected > 1.3)
                differ += abs(expected - 1) > 1e-6
        goal_ratios = [ratios[(v, t, m)]["worse_factor"] for t, m, _, _ in ISSUE_GOALS]
        row = next(g for g in r["goals"] if g["variant"] == v and g["goal"].startswith("generalisation"))
        assert row["value"] == pytest.approx(max(goal_ratios)) and row["met"] is (max(goal_ratios) <= 1.3)
    assert differ > 0, "two different splits gave identical metrics everywhere"


def test_report_rerenders_from_the_json(run, bench):
    _, report = bench
    _, md, out = run
    (out / "m.md").unlink()
    assert report.main([str(out / "m.json")]) == 0
    assert (out / "m.md").read_text() == md


def test_refuses_what_cannot_serve_its_role(bench, splits, tmp_path):
    models, _ = bench
    test, _ = splits
    with pytest.raises(SystemExit, match="not a multi-task checkpoint"):
        models.main(["--multitask", "independent", "--splits", f"test={test}", "--out-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="READY"):
        models.main(["--splits", f"test={tmp_path / 'absent'}", "--out-dir", str(tmp_path)])
    assert not list(tmp_path.glob("*.json"))
