"""Metric depth on any camera (mtshare_ros/models/focal.py): the rescaling arithmetic exactly, one scene rendered
at two fields of view giving the same metric depth from its canonical-focal targets, the dataset's focal length
through resizing, and the predictor's use of the camera's focal length (with one warning without it).

What this does not show yet: a *trained* model meeting the two-field-of-view property within 5% (the first
canonical-focal model, config/train/v4_focal_sensor_ft.yaml, is measured on real frames in MODELS.md)."""

import dataclasses
import logging
import re

import numpy as np
import pytest
import torch

from mtshare_ros.classes import SYNTHETIC_CLASSES
from mtshare_ros.models import ModelConfig, build_task_models, save_checkpoint
from mtshare_ros.models.focal import canonical_depth, depth_scale, focal_at_input, metric_depth
from mtshare_ros.runtime.predictor import Predictor  # before MuJoCo renders in this process (timm)


def test_rescaling_arithmetic_is_exact():
    assert focal_at_input(585.0, 640, 320) == 292.5  # the Kinect's fx at the model's 320 px
    assert focal_at_input(1000.0, 1280, 320) == 250.0
    d = torch.tensor([[0.5, 2.0], [0.0, 7.25]])
    assert torch.equal(metric_depth(d, 250.0, 500.0), d * 2.0)  # depth_metric = depth_canonical * f / f_canonical
    assert torch.equal(canonical_depth(d, 250.0, 125.0), d * 2.0)
    assert torch.allclose(metric_depth(canonical_depth(d, 251.15, 292.5), 251.15, 292.5), d)
    assert canonical_depth(d, 250.0, 500.0)[1, 0] == 0.0  # invalid stays invalid
    # no canonical focal (older checkpoints) or no camera focal (the nominal one): nothing rescaled
    assert depth_scale(None, 500.0) == 1.0 and depth_scale(250.0, None) == 1.0
    batch = torch.ones(2, 1, 3, 3)
    out = metric_depth(batch, 100.0, torch.tensor([100.0, 300.0]))  # one focal per image
    assert torch.equal(out[0], batch[0]) and torch.equal(out[1], 3 * batch[1])
    with pytest.raises(ValueError):
        focal_at_input(0.0, 640, 320)


def _render_at(room, pose, hfov_deg: float, h: int = 48, w: int = 64):
    from mtshare_ros.data.renderer import SceneRenderer

    fovy = np.degrees(2 * np.arctan(np.tan(np.radians(hfov_deg) / 2) * h / w))
    xml = re.sub(r'(<camera name="[^"]+" fovy=")[0-9.]+', rf"\g<1>{fovy:.4f}", room.xml, count=1)
    with SceneRenderer(dataclasses.replace(room, xml=xml), h, w) as r:
        return r.render(pose, 0.0)


def test_two_fields_of_view_give_the_same_metric_depth_from_canonical_targets():
    """One room, one pose, 45 and 85 deg: the canonical targets differ by the focal ratio (what a model is asked
    to learn differs per camera), and turned back into metric depth with each camera's focal length they agree
    at the pixels both see, within 5% (the two renders sample the scene at different pixel positions)."""
    from mtshare_ros.data.domain import domain
    from mtshare_ros.data.scene import generate_room
    from mtshare_ros.data.trajectory import camera_trajectory

    room = generate_room(3_000_009, domain("train"))
    poses, _ = camera_trajectory(room, 1, 15.0, np.random.default_rng([3_000_009, 7]))
    narrow, wide = _render_at(room, poses[0], 45.0), _render_at(room, poses[0], 85.0)
    canonical = 40.0  # px at 64 wide
    metric = {}
    for name, f in (("narrow", narrow), ("wide", wide)):
        target = canonical_depth(torch.from_numpy(f.depth), canonical, float(f.K[0, 0]))  # the training target
        metric[name] = metric_depth(target, canonical, float(f.K[0, 0])).numpy()  # a model that learnt it exactly
        assert np.allclose(metric[name], f.depth, rtol=1e-6)
    ratio = narrow.K[0, 0] / wide.K[0, 0]
    assert ratio > 2.0  # the same point's canonical depth differs by that factor between the cameras
    # narrow pixel (u, v) sees the ray ((u - cx) / f, (v - cy) / f, 1): find it in the wide image
    v, u = np.mgrid[0:48, 0:64].astype(np.float64)
    kn, kw = narrow.K, wide.K
    uw = np.rint(kw[0, 2] + kw[0, 0] * (u - kn[0, 2]) / kn[0, 0]).astype(int)
    vw = np.rint(kw[1, 2] + kw[1, 1] * (v - kn[1, 2]) / kn[1, 1]).astype(int)
    dn, dw = metric["narrow"], metric["wide"][vw, uw]
    ok = (dn > 0) & (dw > 0)
    rel = np.abs(dn[ok] - dw[ok]) / dn[ok]
    assert ok.mean() > 0.9
    assert np.median(rel) < 0.05  # edges between objects differ, the surfaces agree


def test_dataset_samples_carry_their_focal_length(tmp_path):
    from mtshare_ros.data import build_dataset
    from mtshare_ros.data.synthetic import load_sequence, write_dataset

    root = write_dataset(tmp_path / "d", num_rooms=1, frames_per_room=2, height=48, width=64, seed=3,
                         val_fraction=0, progress=False)
    fx = float(next(load_sequence(root, next((root / "sequences").iterdir()).name)).K[0, 0])
    assert float(build_dataset("synthetic", root, "train", size=(48, 64))[0]["focal"]) == pytest.approx(fx)
    assert float(build_dataset("synthetic", root, "train", size=(24, 32))[0]["focal"]) == pytest.approx(fx / 2)


def _checkpoint(tmp_path, canonical):
    torch.manual_seed(0)
    cfg = ModelConfig(img_size=(32, 48), embed_dim=32, depth=2, num_heads=2, feature_layers=(0, 1), head_channels=16,
                      num_classes=len(SYNTHETIC_CLASSES), canonical_focal=canonical)
    models = build_task_models(cfg, ["segmentation", "depth", "normals"])
    return save_checkpoint(tmp_path / f"m{canonical}.pt", models, cfg, SYNTHETIC_CLASSES)


def test_predictor_makes_depth_metric_with_the_cameras_focal(tmp_path, caplog):
    from mtshare_ros.runtime.settings import FrameSettings

    settings = FrameSettings(tasks=("depth",), min_depth=0.0, max_depth=1e9)
    rgb = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)  # twice the model's input
    p = Predictor(str(_checkpoint(tmp_path, 30.0)), device="cpu")
    with caplog.at_level(logging.WARNING):
        nominal = p.predict(rgb, settings).maps["depth"]
        again = p.predict(rgb, settings).maps["depth"]
    assert torch.equal(nominal, again)
    assert sum("nominal focal length" in r.message for r in caplog.records) == 1  # one warning, not per frame
    # fx 120 px on the 96 px frame is 60 px at the model's 48: twice the canonical 30 px
    assert torch.allclose(p.predict(rgb, settings, fx=120.0).maps["depth"], 2 * nominal, rtol=1e-6)
    old = Predictor(str(_checkpoint(tmp_path, None)), device="cpu")  # no canonical focal: as before
    assert torch.equal(old.predict(rgb, settings, fx=120.0).maps["depth"], old.predict(rgb, settings).maps["depth"])
    assert old.cfg.canonical_focal is None
