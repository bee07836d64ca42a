"""Synthetic video sequences and the on-disk synthetic dataset (NYUD-v2 multi-task layout).

Layout written by :func:`write_dataset` (one frame = one name, ``s<room>_<frame>``)::

    images/<name>.png          RGB
    segmentation/<name>.png    uint8, 0 = unlabelled, k + 1 = SYNTHETIC_CLASSES[k] (NYUD-v2 convention)
    depth/<name>.npy           float32 metres along the optical axis, 0 = invalid
    normals/<name>.npy         float16 (H, W, 3) unit vectors, optical frame (x right, y down, z forward), 0 = invalid
    instance/<name>.png        uint16 instance ids, 0 = none
    gt_sets/train.txt, gt_sets/val.txt   frame names (split by room: no room is in both)
    classes.txt                class names in id order
    sequences/<seq>/frames.txt ordered frame names of one video sequence
    sequences/<seq>/cameras.json   fps, K and per-frame stamp and camera-to-world pose (optical frame)
    meta.json, READY           generation parameters (domain, size on disk); READY marks a complete dataset
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from mtshare_ros.classes import IGNORE_INDEX, SYNTHETIC_CLASSES
from mtshare_ros.data.domain import domain as scene_domain
from mtshare_ros.data.renderer import Frame, SceneRenderer
from mtshare_ros.data.scene import generate_room
from mtshare_ros.data.trajectory import camera_trajectory

log = logging.getLogger(__name__)

GENERATOR_VERSION = 3  # 3: room kinds, L-shapes, scene domains, more assets, wider lights / FOV / camera poses
ROOM_SEED_STRIDE = 1_000_003  # room i of dataset seed s uses seed s * stride + i


def render_sequence(seed: int, num_frames: int, height: int = 240, width: int = 320, fps: float = 15.0,
                    domain: str = "train") -> Iterator[Frame]:
    """Frames of one camera sequence through the room generated from ``seed`` in ``domain`` (deterministic)."""
    room = generate_room(seed, scene_domain(domain))
    poses, stamps = camera_trajectory(room, num_frames, fps, np.random.default_rng([seed, 7]))
    renderer = SceneRenderer(room, height, width)
    try:
        for k, (pose, stamp) in enumerate(zip(poses, stamps, strict=False)):
            yield renderer.render(pose, float(stamp), name=f"s{seed:08d}_{k:05d}")
    finally:
        renderer.close()


def _save_frame(root: Path, frame: Frame) -> None:
    name = frame.name
    cv2.imwrite(str(root / "images" / f"{name}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 1])
    seg = np.where(frame.segmentation == IGNORE_INDEX, 0, frame.segmentation.astype(np.int32) + 1).astype(np.uint8)
    cv2.imwrite(str(root / "segmentation" / f"{name}.png"), seg, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    cv2.imwrite(str(root / "instance" / f"{name}.png"), frame.instance, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    np.save(root / "depth" / f"{name}.npy", frame.depth.astype(np.float32))
    np.save(root / "normals" / f"{name}.npy", frame.normals.astype(np.float16))


_SUBDIRS = ("images", "segmentation", "depth", "normals", "instance", "gt_sets", "sequences")
_FILES = ("READY", "meta.json", "classes.txt")


def _clear_previous(root: Path) -> None:
    """Remove an earlier synthetic dataset in ``root`` (stale frames or sequences would otherwise linger);
    refuse to write into a non-empty folder that is not one."""
    if not root.exists() or not any(root.iterdir()):
        return
    if not (root / "meta.json").is_file() and not (root / "sequences").is_dir():
        raise FileExistsError(f"{root}: folder is not empty and holds no synthetic dataset (no meta.json); "
                              "choose an empty or new folder")
    (root / "READY").unlink(missing_ok=True)
    for sub in _SUBDIRS:
        shutil.rmtree(root / sub, ignore_errors=True)
    for name in _FILES:
        (root / name).unlink(missing_ok=True)


def _dataset_params(num_rooms, frames_per_room, height, width, seed, val_fraction, fps, domain) -> dict:
    return {"generator_version": GENERATOR_VERSION, "num_rooms": int(num_rooms),
            "frames_per_room": int(frames_per_room), "height": int(height), "width": int(width), "seed": int(seed),
            "val_fraction": float(val_fraction), "fps": float(fps), "domain": str(domain)}


def _read_meta(root: Path) -> dict:
    try:
        return json.loads((root / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _render_room(job: tuple) -> int:
    """Render one room's sequence into ``root``; ``cameras.json`` is written last (atomically), so a room
    counts as done exactly when it exists. Returns the number of frames (runs in a worker process)."""
    root, room_seed, split, frames_per_room, height, width, fps, domain = job
    seq_dir = Path(root) / "sequences" / f"s{room_seed:08d}"
    seq_dir.mkdir(parents=True, exist_ok=True)
    names, cams, K = [], [], None
    for frame in render_sequence(room_seed, frames_per_room, height, width, fps, domain):
        _save_frame(Path(root), frame)
        names.append(frame.name)
        K = frame.K
        cams.append({"name": frame.name, "stamp": frame.stamp, "pose": frame.pose.round(9).tolist()})
    (seq_dir / "frames.txt").write_text("\n".join(names) + "\n")
    tmp = seq_dir / "cameras.json.tmp"
    tmp.write_text(json.dumps({"fps": fps, "split": split, "K": K.tolist(), "frames": cams}, indent=1))
    tmp.replace(seq_dir / "cameras.json")
    return len(names)


def write_dataset(root: str | Path, num_rooms: int = 40, frames_per_room: int = 30, height: int = 240,
                  width: int = 320, seed: int = 0, val_fraction: float = 0.15, fps: float = 15.0,
                  progress: bool = True, domain: str = "train", workers: int = 1, resume: bool = True) -> Path:
    """Render ``num_rooms`` sequences of ``domain`` into ``root`` (NYUD-v2 layout, see module docstring).

    Rooms, not frames, are split into train/val so that validation views are of unseen rooms. With
    ``resume``, an unfinished dataset of the same parameters keeps the rooms it has and renders the rest
    (a long render survives being stopped); anything else in ``root`` from an earlier dataset is removed.
    ``workers`` processes render rooms in parallel (the output does not depend on their number).
    """
    from tqdm import tqdm

    scene_domain(domain)  # fail before anything is written
    root = Path(root)
    params = _dataset_params(num_rooms, frames_per_room, height, width, seed, val_fraction, fps, domain)
    meta = _read_meta(root)
    if not (resume and {k: meta.get(k) for k in params} == params and not (root / "READY").exists()):
        _clear_previous(root)
    for sub in _SUBDIRS:
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "meta.json").write_text(json.dumps({**params, "complete": False}, indent=1))
    num_val = 0 if num_rooms < 2 or val_fraction <= 0 else max(1, int(round(num_rooms * val_fraction)))
    jobs = []
    for i in range(num_rooms):
        room_seed = seed * ROOM_SEED_STRIDE + i
        split = "val" if i >= num_rooms - num_val else "train"
        if not (root / "sequences" / f"s{room_seed:08d}" / "cameras.json").is_file():
            jobs.append((str(root), room_seed, split, frames_per_room, height, width, fps, domain))
    done = (num_rooms - len(jobs)) * frames_per_room
    if done:
        log.info("%s: resuming, %d of %d rooms already rendered", root, num_rooms - len(jobs), num_rooms)
    bar = tqdm(total=num_rooms * frames_per_room, initial=done, desc="render", unit="frame", disable=not progress)
    if workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("spawn")  # no GL context or MuJoCo state inherited by fork
        with ctx.Pool(workers) as pool:
            for n in pool.imap_unordered(_render_room, jobs):
                bar.update(n)
    else:
        for job in jobs:
            bar.update(_render_room(job))
    bar.close()
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for i in range(num_rooms):
        seq_dir = root / "sequences" / f"s{seed * ROOM_SEED_STRIDE + i:08d}"
        split = json.loads((seq_dir / "cameras.json").read_text())["split"]
        splits[split] += (seq_dir / "frames.txt").read_text().split()
    for split, names in splits.items():
        (root / "gt_sets" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
    (root / "classes.txt").write_text("\n".join(SYNTHETIC_CLASSES) + "\n")
    meta = dict(params)
    meta.update({"classes": list(SYNTHETIC_CLASSES), "segmentation_encoding": "png value = class id + 1, 0 = ignore",
                 "depth_units": "metres (z along optical axis), 0 = invalid",
                 "normals_frame": "optical: x right, y down, z forward; all-zero = invalid",
                 "num_train": len(splits["train"]), "num_val": len(splits["val"]),
                 "bytes": sum(f.stat().st_size for f in root.rglob("*") if f.is_file()), "complete": True})
    (root / "meta.json").write_text(json.dumps(meta, indent=1))
    (root / "READY").write_text("complete\n")
    return root


def ensure_synthetic_dataset(root: str | Path, num_rooms: int = 40, frames_per_room: int = 30, height: int = 240,
                             width: int = 320, seed: int = 0, val_fraction: float = 0.15, fps: float = 15.0,
                             progress: bool = True, domain: str = "train", workers: int = 1) -> Path:
    """Return ``root``, rendering the dataset first unless a complete one is already there.

    A dataset counts as present when ``READY`` exists; if its meta.json records other parameters a warning is
    logged and the existing data is kept (delete the folder to re-render). An unfinished one is resumed.
    """
    root = Path(root)
    if (root / "READY").is_file():
        wanted = _dataset_params(num_rooms, frames_per_room, height, width, seed, val_fraction, fps, domain)
        meta = _read_meta(root)
        differing = {k: (meta.get(k), v) for k, v in wanted.items() if meta.get(k) != v}
        if differing:
            log.warning("using existing synthetic dataset %s with other parameters (have, wanted): %s", root,
                        differing)
        return root
    log.info("rendering synthetic dataset into %s", root)
    return write_dataset(root, num_rooms, frames_per_room, height, width, seed, val_fraction, fps, progress,
                         domain, workers)


def list_sequences(root: str | Path, split: str | None = None) -> list[str]:
    """Sequence names in ``root`` (optionally only those of one split), sorted."""
    out = []
    for cam in sorted(Path(root).glob("sequences/*/cameras.json")):
        if split is None or json.loads(cam.read_text()).get("split") == split:
            out.append(cam.parent.name)
    return out


def load_sequence(root: str | Path, sequence: str) -> Iterator[Frame]:
    """Frames of one stored sequence, in order, read back from the dataset folder."""
    root = Path(root)
    cams = json.loads((root / "sequences" / sequence / "cameras.json").read_text())
    K = np.array(cams["K"])
    for item in cams["frames"]:
        name = item["name"]
        rgb = cv2.cvtColor(cv2.imread(str(root / "images" / f"{name}.png"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        seg = cv2.imread(str(root / "segmentation" / f"{name}.png"), cv2.IMREAD_UNCHANGED).astype(np.int32) - 1
        seg = np.where(seg < 0, IGNORE_INDEX, seg).astype(np.uint8)
        inst = cv2.imread(str(root / "instance" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        yield Frame(rgb=rgb, depth=np.load(root / "depth" / f"{name}.npy"), segmentation=seg, instance=inst,
                    normals=np.load(root / "normals" / f"{name}.npy").astype(np.float32), K=K.copy(),
                    pose=np.array(item["pose"]), stamp=float(item["stamp"]), name=name)
