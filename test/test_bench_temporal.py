"""bench/temporal.py end to end at a tiny setting: the rendered part with the real part skipped (no --real-root),
then the real part alone (--only real) on a folder this test writes in the 7-Scenes layout, merged into the same
report; the real part's numbers checked against what the test knows of its frames and the issue's goal rules,
which this test states itself."""

import json
import math
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_bench_models import load_bench
from test_real_frames import TILTED, H, K, W, plane_depth, write_frame

from mtshare_ros.runtime.predictor import inference_size
from mtshare_ros.tasks.depth import MIN_VALID_DEPTH
from mtshare_ros.tasks.resize import nearest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))  # its siblings (environment.py)
bench = load_bench("temporal")

FRAMES = 8
OFFSETS = (0, 0, 0, 0, 1, 2, 3, 4)  # the camera held still, then panning 1 px per frame at the folder's 128x96
REFERENCE = "per frame, task sharing (node default)"
TEMPORAL = ("task + temporal", "task + temporal, no motion compensation")
GOAL_MACS, GOAL_DEPTH = 0.5, 0.02  # issue 25, the real hand-held sequence: <= 0.5x MACs, depth within 2%


@pytest.fixture(scope="module")
def real_root(tmp_path_factory) -> Path:
    """FRAMES frames of a smooth texture over a tilted floor seen by a camera at OFFSETS, frame 0 with a hole (0)
    and the sensor's 65535 marker in its depth; one more frame after them that --real-frames leaves out."""
    root = tmp_path_factory.mktemp("real")
    np.savetxt(root / "camera-intrinsics.txt", K)
    small = np.random.default_rng(0).integers(0, 255, (H // 16, W // 16 + 2, 3), np.uint8)
    texture = cv2.resize(small, (small.shape[1] * 16, H), interpolation=cv2.INTER_CUBIC)
    for i, dx in enumerate((*OFFSETS, 0)):
        depth = plane_depth(TILTED, -2.0) if i < FRAMES else np.full((H, W), 9.0)
        write_frame(root, i, depth, holes=i == 0, rgb=np.ascontiguousarray(texture[:, dx:dx + W]))
    return root


def temp_folders() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("mtshare-temporal-real-*")}


@pytest.fixture(scope="module")
def runs(real_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "temporal"
    tiny = ["--frames", "2", "--fps", "30", "--kinds", "static", "--sweep", "--threads", "1", "--out", str(out)]
    assert bench.main(tiny) == 0
    first = json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text()
    before = temp_folders()
    assert bench.main(["--only", "real", "--real-root", str(real_root), "--real-frames", str(FRAMES),
                       "--threads", "1", "--out", str(out)]) == 0
    assert temp_folders() == before  # the bag's temporary folder is gone
    assert sorted(p.name for p in out.parent.iterdir()) == ["temporal.json", "temporal.md"]
    return first, (json.loads(out.with_suffix(".json").read_text()), out.with_suffix(".md").read_text())


def test_without_real_root_the_real_part_is_skipped_and_said_so(runs):
    (r, md), _ = runs
    assert "static@30" in r["sequences"]
    assert "--real-root" in r["real"]["skipped"] and set(r["real"]) == {"skipped"}
    assert "## Real sequence" in md and "Skipped: no --real-root given" in md


def test_the_main_variants_are_also_timed_alone(runs):
    """Each way a node runs the tasks gets a timing of its own pass over the sequence beside the interleaved one;
    the sweep and the base task alone do not."""
    (r, md), _ = runs
    v = r["sequences"]["static@30"]["variants"]
    alone = {name for name, t in v.items() if "ms_alone_median" in t}
    assert alone == set(load_bench("temporal_measure").ALONE_VARIANTS)
    assert all(v[n]["ms_alone_median"] > 0 for n in alone)
    row = next(line for line in md.splitlines() if line.startswith("| task + temporal |"))
    ref = v["per frame, task sharing (node default)"]["ms_alone_median"]
    assert f"| {v['task + temporal']['ms_alone_median']:.1f} | " in row
    assert f"{v['task + temporal']['ms_alone_median'] / ref:.2f}x" in row


def test_real_part_alone_keeps_the_rendered_part(runs):
    (first, _), (r, md) = runs
    assert r["sequences"] == first["sequences"] and r["goals"] == first["goals"]
    assert "## static@30" in md and "## Real sequence" in md and "Skipped" not in md
    for name in (REFERENCE, *TEMPORAL):
        assert f"| {name} |" in md.split("## Real sequence")[1]


def valid_depth_pixels(root: Path, size: tuple[int, int]) -> int:
    """Pixels of the frames' depth at the output size with a valid reading (0 and 65535 are none)."""
    total = 0
    for i in range(FRAMES):
        mm = cv2.imread(str(root / f"frame-{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED)
        metres = np.where(mm == 65535, 0, mm).astype(np.float32) / 1000.0
        total += int((nearest(metres, size) > MIN_VALID_DEPTH).sum())
    return total


def test_real_part_numbers(runs, real_root):
    _, (r, _) = runs
    real = r["real"]
    assert real["frames"] == [0, FRAMES - 1] and real["fps"] == 30.0
    assert real["environment"]["torch"] == torch.__version__ and real["environment"]["cpu_capability"]
    assert set(real["variants"]) == {REFERENCE, *TEMPORAL}
    valid = valid_depth_pixels(real_root, inference_size(H, W, 240, 16, 640))
    for name, v in real["variants"].items():
        assert (v["frames"], v["rejected"], v["stream_breaks"]) == (FRAMES, 0, []), name
        d = v["depth"]
        assert d["frames"] == FRAMES and 0.5 < d["coverage"] <= 1.0, name
        # every pixel the sensor read is scored where the prediction is valid, no other (holes, 65535 excluded)
        assert d["pixels"] == round(d["coverage"] * valid), name
        assert 0 < d["abs_rel"] < 10 and 0 <= d["abs_rel_aligned"] < 10, name
        assert all(math.isfinite(x) and x > 0 for x in (v["inference_ms_median"], v["latency_ms_median"])), name
    ref = real["variants"][REFERENCE]
    assert ref["vs_per_frame"]["macs"] == 1.0 and ref["keyframe_share"] == 1.0
    assert ref["base_recomputed_non_keyframes"] is None and ref["motion_px_median"] is None
    for name in TEMPORAL:
        v = real["variants"][name]
        # a still camera, then a slow pan over a still scene: the first frame is a keyframe, the still ones are not
        assert 1 / FRAMES <= v["keyframe_share"] < 1.0, name
        assert 0.0 <= v["base_recomputed_non_keyframes"] < 1.0, name
        assert 0.0 < v["vs_per_frame"]["macs"] < 1.0, name
        assert v["vs_per_frame"]["macs"] == pytest.approx(v["gmacs_per_frame"] / ref["gmacs_per_frame"])
        rel = v["depth"]["abs_rel"] / ref["depth"]["abs_rel"] - 1
        assert v["vs_per_frame"]["depth_abs_rel"] == pytest.approx(rel)
        rows = {g["goal"]: g for g in real["goals"] if g["variant"] == name}
        assert rows["MACs <= 0.5x per frame"]["met"] == (v["vs_per_frame"]["macs"] <= GOAL_MACS)
        assert rows["depth abs-rel within 2% of per frame"]["met"] == (rel <= GOAL_DEPTH)
        aligned = v["vs_per_frame"]["depth_abs_rel_aligned"]
        assert rows["depth abs-rel (scale-aligned) within 2% of per frame"]["met"] == (aligned <= GOAL_DEPTH)
    # the estimate of a 2.5 px pan at the model's 320 wide (bench/motion_estimators.py measures its accuracy)
    assert 0.0 <= real["variants"]["task + temporal"]["motion_px_median"] < 5.0
    assert real["variants"]["task + temporal, no motion compensation"]["motion_px_median"] is None


def test_reserved_frames_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="600-999 of the sequence are reserved"):
        bench.main(["--only", "real", "--real-root", str(tmp_path), "--real-frames", "601", "--out",
                    str(tmp_path / "t")])
    assert not list(tmp_path.iterdir())
