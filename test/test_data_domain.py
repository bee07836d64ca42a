"""The v3 scene generator: room kinds, L-shapes, held-out domain, more assets, resumable parallel rendering."""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np
import pytest

from mtshare_ros.data.assets import mesh_vertices, meshes, textures
from mtshare_ros.data.domain import GENERALISATION_DOMAIN, TRAIN_DOMAIN, domain
from mtshare_ros.data.scene import HFOV_RANGE, generate_room
from mtshare_ros.data.synthetic import load_sequence, write_dataset


def _asset_files(xml: str) -> list[str]:
    return re.findall(r'file="([^"]+)"', xml)


def test_training_domain_never_uses_the_held_out_kind_or_source():
    kinds = Counter()
    for seed in range(60):
        room = generate_room(seed, TRAIN_DOMAIN)
        kinds[room.kind] += 1
        assert room.kind != "kitchen"
        assert not any("gymnasium_robotics" in f for f in _asset_files(room.xml)), seed
    assert set(kinds) == {"living", "office", "bedroom", "corridor"}


def test_generalisation_domain_is_kitchens_with_the_held_out_assets():
    used = 0
    for seed in range(30):
        room = generate_room(seed, GENERALISATION_DOMAIN)
        assert room.kind == "kitchen"
        used += any("gymnasium_robotics" in f for f in _asset_files(room.xml))
    assert used >= 10  # most kitchens show held-out meshes or textures


def test_unknown_domain_is_named():
    with pytest.raises(ValueError, match="known"):
        domain("outdoor")


def test_more_mesh_sources_than_one_and_stl_vertices_read():
    assert len(meshes("pybullet_data")) > 100  # toys and the procedural random_urdfs
    kinova = meshes("dm_control")
    assert kinova and all(m.path.suffix == ".stl" for m in kinova)
    verts = mesh_vertices(str(kinova[0].path))
    assert verts.shape[1] == 3 and len(verts) > 30 and np.isfinite(verts).all()
    assert textures("gymnasium_robotics").surfaces


def test_field_of_view_spans_the_range():
    hfov = []
    for seed in range(40):
        fovy = float(re.search(r'fovy="([0-9.]+)"', generate_room(seed).xml).group(1))
        hfov.append(math.degrees(2 * math.atan(math.tan(math.radians(fovy) / 2) * 4 / 3)))
    assert HFOV_RANGE[0] <= min(hfov) < 50 and 80 < max(hfov) <= HFOV_RANGE[1]


def test_l_shaped_rooms_keep_the_camera_out_of_the_corner_block():
    from mtshare_ros.data.floor_map import GRID_RES
    from mtshare_ros.data.trajectory import camera_trajectory

    shapes = Counter()
    for seed in range(40):
        room = generate_room(seed)
        shapes[room.l_shaped] += 1
        if not room.l_shaped:
            continue
        poses, _ = camera_trajectory(room, 40, 2.0, np.random.default_rng(seed))
        ix = np.clip((poses[:, 0, 3] / GRID_RES).astype(int), 0, room.clearance.shape[1] - 1)
        iy = np.clip((poses[:, 1, 3] / GRID_RES).astype(int), 0, room.clearance.shape[0] - 1)
        assert (room.clearance[iy, ix] > 0.1).all(), seed
    assert shapes[True] >= 5 and shapes[False] >= 5


def test_render_resumes_and_workers_do_not_change_the_data(tmp_path):
    serial = write_dataset(tmp_path / "a", num_rooms=3, frames_per_room=2, height=36, width=48, seed=7,
                           val_fraction=0.34, fps=1.0, progress=False)
    parallel_root = tmp_path / "b"
    write_dataset(parallel_root, num_rooms=3, frames_per_room=2, height=36, width=48, seed=7, val_fraction=0.34,
                  fps=1.0, progress=False, workers=2)
    for seq in ("s07000021", "s07000022", "s07000023"):
        a = list(load_sequence(serial, seq))
        b = list(load_sequence(parallel_root, seq))
        assert [f.name for f in a] == [f.name for f in b]
        assert all(np.array_equal(x.rgb, y.rgb) and np.array_equal(x.depth, y.depth) for x, y in zip(a, b, strict=True))
    # An interrupted render: one room's sequence unfinished, READY not written yet.
    (parallel_root / "READY").unlink()
    (parallel_root / "sequences" / "s07000022" / "cameras.json").unlink()
    kept = (parallel_root / "images" / "s07000021_00000.png").stat().st_mtime_ns
    write_dataset(parallel_root, num_rooms=3, frames_per_room=2, height=36, width=48, seed=7, val_fraction=0.34,
                  fps=1.0, progress=False)
    assert (parallel_root / "READY").is_file()
    assert (parallel_root / "images" / "s07000021_00000.png").stat().st_mtime_ns == kept  # not rendered again
    assert (parallel_root / "sequences" / "s07000022" / "cameras.json").is_file()
    meta = json.loads((parallel_root / "meta.json").read_text())
    assert meta["complete"] and meta["domain"] == "train" and meta["bytes"] > 0
    assert (parallel_root / "gt_sets" / "train.txt").read_text() == (serial / "gt_sets" / "train.txt").read_text()
