"""Dataset loaders on small fixtures written in the NYUD-v2, PASCAL-Context and synthetic layouts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from mtshare_ros.classes import IGNORE_INDEX, SYNTHETIC_CLASSES
from mtshare_ros.data.datasets import build_dataset, build_sequence_dataset, frame_to_sample
from mtshare_ros.data.synthetic import load_sequence, render_sequence, write_dataset
from mtshare_ros.data.transforms import hflip, resize

H, W = 48, 64


def _unit_normals(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n[..., 2] = -np.abs(n[..., 2]) - 0.5  # facing the camera
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def make_nyud(root, ids=("0001", "0002", "0003"), normals_png: bool = False):
    rng = np.random.default_rng(0)
    for sub in ("images", "segmentation", "depth", "normals", "edge", "gt_sets"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in ids:
        img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "images" / f"{i}.png"), img[..., ::-1])
        seg = rng.integers(0, 41, size=(H, W)).astype(np.uint8)
        cv2.imwrite(str(root / "segmentation" / f"{i}.png"), seg)
        depth = rng.uniform(0.5, 9.0, size=(H, W)).astype(np.float32)
        depth[0, :5] = 0.0
        np.save(root / "depth" / f"{i}.npy", depth)
        normals = _unit_normals(rng, H, W)
        if normals_png:
            enc = np.round((normals + 1) * 127.5).astype(np.uint8)
            cv2.imwrite(str(root / "normals" / f"{i}.png"), enc[..., ::-1])
        else:
            np.save(root / "normals" / f"{i}.npy", normals)
        np.save(root / "edge" / f"{i}.npy", np.zeros((H, W), np.float32))
        truth[i] = (img, seg, depth, normals)
    (root / "gt_sets" / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (root / "gt_sets" / "val.txt").write_text(ids[2] + "\n")
    return truth


def make_pascal(root, ids=("2008_000002", "2008_000003")):
    rng = np.random.default_rng(1)
    for sub in ("JPEGImages", "semseg/pascal-context", "normals_distill", "ImageSets/Context", "sal_distill"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    truth = {}
    for i in ids:
        img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(root / "JPEGImages" / f"{i}.jpg"), img[..., ::-1])
        seg = rng.integers(0, 21, size=(H, W)).astype(np.uint8)
        seg[:3] = 255
        cv2.imwrite(str(root / "semseg" / "pascal-context" / f"{i}.png"), seg)
        enc = np.round((_unit_normals(rng, H, W) + 1) * 127.5).astype(np.uint8)
        cv2.imwrite(str(root / "normals_distill" / f"{i}.png"), enc[..., ::-1])
        truth[i] = (img, seg, enc)
    (root / "ImageSets" / "Context" / "train.txt").write_text("\n".join(ids) + "\n")
    return truth


def test_nyud_sample_contract_and_values(tmp_path):
    truth = make_nyud(tmp_path)
    ds = build_dataset("nyud", tmp_path, "train", size=(H, W), augment=False)
    assert len(ds) == 2 and ds.num_classes == 40
    s = ds[0]
    img, seg, depth, normals = truth["0001"]
    assert s["name"] == "0001"
    assert s["image"].dtype == torch.float32 and s["image"].shape == (3, H, W)
    assert torch.allclose(s["image"], torch.from_numpy(img.transpose(2, 0, 1)).float() / 255)
    expected_seg = seg.astype(np.int64) - 1
    expected_seg[expected_seg < 0] = IGNORE_INDEX
    assert s["segmentation"].dtype == torch.int64 and torch.equal(s["segmentation"], torch.from_numpy(expected_seg))
    assert torch.allclose(s["depth"], torch.from_numpy(depth)) and (s["depth"][0, :5] == 0).all()
    assert s["normals"].shape == (3, H, W)
    assert torch.allclose(s["normals"], torch.from_numpy(normals.transpose(2, 0, 1)), atol=1e-5)


def test_nyud_png_normals_and_resize(tmp_path):
    truth = make_nyud(tmp_path, normals_png=True)
    ds = build_dataset("nyud", tmp_path, "val", size=(24, 32))
    s = ds[0]
    assert s["image"].shape == (3, 24, 32) and s["segmentation"].shape == (24, 32)
    norm = s["normals"].norm(dim=0)
    assert torch.allclose(norm, torch.ones_like(norm), atol=1e-4)
    # Nearest-neighbour resizing keeps depth values metric: every output depth is one of the input depths.
    assert np.isin(s["depth"].numpy(), truth["0003"][2]).all()


def test_nyud_errors_name_the_file(tmp_path):
    make_nyud(tmp_path)
    (tmp_path / "depth" / "0002.npy").unlink()
    ds = build_dataset("nyud", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"depth.*0002.*missing depth file"):
        ds[1]
    np.save(tmp_path / "depth" / "0002.npy", np.zeros((H + 1, W), np.float32))
    with pytest.raises(ValueError, match=r"0002\.npy: depth has shape \(49, 64\), expected \(48, 64\)"):
        ds[1]
    (tmp_path / "normals" / "0001.npy").write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match=r"0001\.npy: not a readable \.npy array"):
        ds[0]
    cv2.imwrite(str(tmp_path / "segmentation" / "0001.png"), np.full((H, W), 60, np.uint8))
    with pytest.raises(ValueError, match=r"0001\.png: segmentation ids \[59\] outside 0\.\.39"):
        ds[0]
    with pytest.raises(FileNotFoundError, match=r"gt_sets/test\.txt: split file not found"):
        build_dataset("nyud", tmp_path, "test")
    with pytest.raises(ValueError, match="unknown dataset 'kitti'"):
        build_dataset("kitti", tmp_path, "train")


def test_pascal_layout(tmp_path):
    truth = make_pascal(tmp_path)
    ds = build_dataset("pascal", tmp_path, "train", size=(H, W))
    s = ds[1]
    img, seg, enc = truth["2008_000003"]
    assert set(s) == {"image", "segmentation", "normals", "name"}  # no depth in PASCAL-Context
    assert torch.equal(s["segmentation"], torch.from_numpy(seg.astype(np.int64)))
    assert (s["segmentation"][:3] == IGNORE_INDEX).all()
    expected = 2 * enc.astype(np.float32) / 255 - 1
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    assert torch.allclose(s["normals"], torch.from_numpy(expected.transpose(2, 0, 1)), atol=1e-5)
    (tmp_path / "JPEGImages" / "2008_000002.jpg").write_bytes(b"broken")
    with pytest.raises(ValueError, match=r"2008_000002\.jpg: not a readable image"):
        ds[0]


def test_flip_negates_normal_x_and_mirrors():
    rng = np.random.default_rng(2)
    sample = {"image": rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), "segmentation": rng.integers(0, 5, (4, 6)),
              "depth": rng.uniform(1, 2, (4, 6)).astype(np.float32), "normals": _unit_normals(rng, 4, 6)}
    f = hflip(sample)
    assert np.array_equal(f["image"][:, 0], sample["image"][:, -1])
    assert np.array_equal(f["segmentation"][:, 0], sample["segmentation"][:, -1])
    assert np.array_equal(f["depth"][:, 0], sample["depth"][:, -1])
    assert np.allclose(f["normals"][:, 0, 0], -sample["normals"][:, -1, 0])
    assert np.allclose(f["normals"][:, 0, 1:], sample["normals"][:, -1, 1:])
    # A plane facing right (normal -x seen from the camera's left side) faces left after the flip.
    wall = np.zeros((4, 6, 3), np.float32)
    wall[..., 0] = 1.0
    assert (hflip({"image": sample["image"], "normals": wall})["normals"][..., 0] == -1.0).all()


def test_augmentation_keeps_targets_consistent(tmp_path):
    make_nyud(tmp_path)
    ds = build_dataset("nyud", tmp_path, "train", size=(32, 40), augment=True, seed=3)
    for k in range(4):
        s = ds[k % 2]
        assert s["image"].shape == (3, 32, 40) and s["depth"].shape == (32, 40)
        valid = s["normals"].norm(dim=0) > 0
        assert torch.allclose(s["normals"].norm(dim=0)[valid], torch.ones(int(valid.sum())), atol=1e-4)
        seg = s["segmentation"]
        assert ((seg >= 0) & (seg < 40) | (seg == IGNORE_INDEX)).all()
        assert float(s["image"].min()) >= 0.0 and float(s["image"].max()) <= 1.0


def test_resize_nearest_for_labels():
    seg = np.array([[1, 2], [3, 4]], np.int64)
    out = resize({"image": np.zeros((2, 2, 3), np.uint8), "segmentation": seg}, (4, 4))
    assert set(np.unique(out["segmentation"]).tolist()) == {1, 2, 3, 4}


def test_synthetic_dataset_round_trip(tmp_path):
    write_dataset(tmp_path, num_rooms=2, frames_per_room=2, height=40, width=56, seed=5, val_fraction=0.5,
                  progress=False)
    assert (tmp_path / "READY").is_file()
    assert (tmp_path / "classes.txt").read_text().split() == list(SYNTHETIC_CLASSES)
    train = build_dataset("synthetic", tmp_path, "train", size=(40, 56))
    val = build_dataset("synthetic", tmp_path, "val", size=(40, 56))
    assert len(train) == 2 and len(val) == 2
    assert not set(train.ids) & set(val.ids)
    # The files hold what the renderer produces (rendering is deterministic).
    frames = {f.name: f for seed in (5000015, 5000016) for f in render_sequence(seed, 2, 40, 56)}
    stored = list(load_sequence(tmp_path, "s05000016"))
    assert [f.name for f in stored] == ["s05000016_00000", "s05000016_00001"]
    assert np.allclose(stored[1].pose, frames["s05000016_00001"].pose, atol=1e-8)
    assert np.array_equal(stored[1].instance, frames["s05000016_00001"].instance)
    s = train[0]
    f = frames[s["name"]]
    assert torch.equal(s["segmentation"], torch.from_numpy(f.segmentation.astype(np.int64)))
    assert torch.equal(s["depth"], torch.from_numpy(f.depth))
    assert torch.allclose(s["normals"], torch.from_numpy(f.normals.transpose(2, 0, 1)), atol=2e-3)
    assert torch.equal((s["image"] * 255).round().byte(), torch.from_numpy(f.rgb.transpose(2, 0, 1)))
    # One sequence in time order, and rendered frames in the same sample format.
    seq = build_sequence_dataset(tmp_path, "s05000016", size=(40, 56))
    assert [seq[i]["name"] for i in range(len(seq))] == ["s05000016_00000", "s05000016_00001"]
    direct = frame_to_sample(frames["s05000016_00001"])
    stored_sample = seq[1]
    for key in ("segmentation", "depth", "image"):
        assert torch.equal(direct[key], stored_sample[key])
    assert torch.allclose(direct["normals"], stored_sample["normals"], atol=2e-3)


def test_write_dataset_replaces_an_old_one_and_protects_other_folders(tmp_path):
    root = tmp_path / "ds"
    write_dataset(root, num_rooms=2, frames_per_room=1, height=30, width=40, seed=0, val_fraction=0.5,
                  progress=False)
    write_dataset(root, num_rooms=1, frames_per_room=1, height=30, width=40, seed=0, val_fraction=0.0,
                  progress=False)
    assert sorted(p.name for p in (root / "sequences").iterdir()) == ["s00000000"]
    assert sorted(p.name for p in (root / "images").iterdir()) == ["s00000000_00000.png"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine: folder is not empty and holds no synthetic dataset"):
        write_dataset(other, num_rooms=1, frames_per_room=1, height=30, width=40, progress=False)
    assert (other / "notes.txt").read_text() == "keep me"
