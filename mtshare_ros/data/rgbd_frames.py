"""Real RGB-D frames in the 7-Scenes layout: an evaluation dataset for depth and normals (``RGBDFrames``) and a
camera stream in order (``read_rgbd_sequence``, what ``mtshare make-bag --from-rgbd`` writes as a bag).

Layout (Microsoft 7-Scenes, e.g. the sequence ``andyzeng/tsdf-fusion-python`` keeps in ``data/``)::

    frame-%06d.color.jpg   RGB            frame-%06d.depth.png   uint16 millimetres, 0 (and 65535) invalid
    frame-%06d.pose.txt    camera-to-world (not read here)
    camera-intrinsics.txt  3x3 K of the colour camera (fx = fy = 585, cx 320, cy 240 for Kinect v1)

Real frames have no ground-truth normals: they are derived from the depth (a 5x5 median filter against the
sensor's speckle and quantisation, back-projection with the intrinsics, the cross product of neighbours 3 px
apart, invalid pixels and depth jumps over 3% masked: ``geometry.normals_from_depth``) at the stored
resolution, before resizing. Each sample carries ``focal`` (fx at its size) so that a model with a canonical
focal length gets metric depth (``models/focal.py``). The frames' licence may forbid redistribution
(7-Scenes: research use only): the benchmark reads them from a folder it is given and stores only metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mtshare_ros.data.datasets import DenseDataset
from mtshare_ros.data.geometry import normals_from_depth

NORMALS_MEDIAN = 5
NORMALS_STEP = 3
NORMALS_MAX_JUMP = 0.03


def read_intrinsics(root: Path) -> np.ndarray:
    path = root / "camera-intrinsics.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing camera intrinsics (a 3x3 matrix, 7-Scenes layout)")
    K = np.loadtxt(path, dtype=np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{path}: focal lengths must be positive, got {K[0, 0]}, {K[1, 1]}")
    return K


def real_normals(depth_mm: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Reference normals (H, W, 3) of a uint16 millimetre depth map (0 invalid), optical frame, 0 where masked."""
    d = depth_mm.copy()
    d[d == 65535] = 0
    smooth = cv2.medianBlur(d, NORMALS_MEDIAN).astype(np.float64) / 1000.0
    smooth[d == 0] = 0.0  # no normal where the sensor saw nothing (the median fills small holes)
    return normals_from_depth(smooth, K, NORMALS_MAX_JUMP, NORMALS_STEP)


def read_rgbd(root: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``index`` of a 7-Scenes-layout folder: (H, W, 3) uint8 RGB and (H, W) uint16 millimetres with every
    invalid pixel 0 (the sensor's 65535 marker too)."""
    stem = Path(root) / f"frame-{index:06d}"
    bgr = cv2.imread(f"{stem}.color.jpg", cv2.IMREAD_COLOR)
    depth_mm = cv2.imread(f"{stem}.depth.png", cv2.IMREAD_UNCHANGED)
    if bgr is None or depth_mm is None or depth_mm.dtype != np.uint16:
        raise ValueError(f"{stem}: expected .color.jpg and a uint16 .depth.png")
    if depth_mm.shape != bgr.shape[:2]:
        raise ValueError(f"{stem}: depth {depth_mm.shape} and colour {bgr.shape[:2]} differ in size")
    depth_mm[depth_mm == 65535] = 0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), depth_mm


@dataclass
class RGBDFrame:
    """One real frame as a camera stream has it (what ``bag.write_camera_bag`` writes): no ground truth but the
    sensor's depth."""

    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 metres, 0 = invalid
    K: np.ndarray  # (3, 3) of the colour camera
    stamp: float  # seconds since the first frame
    name: str = ""


def read_rgbd_sequence(root: str | Path, first: int, count: int, fps: float) -> Iterator[RGBDFrame]:
    """Frames ``first`` .. ``first + count - 1`` of a 7-Scenes-layout folder in order, stamped ``1 / fps`` apart
    (7-Scenes: Kinect v1 at 30 Hz); every one of them must exist (a gap would be a stream break)."""
    root = Path(root)
    K = read_intrinsics(root)
    for k in range(count):
        i = first + k
        if not (root / f"frame-{i:06d}.color.jpg").is_file():
            raise FileNotFoundError(f"{root}: frame-{i:06d}.color.jpg missing (frames {first}..{first + count - 1} "
                                    "asked for)")
        rgb, depth_mm = read_rgbd(root, i)
        yield RGBDFrame(rgb, depth_mm.astype(np.float32) / 1000.0, K, k / fps, f"frame-{i:06d}")


class RGBDFrames(DenseDataset):
    """Frames ``first``..``last`` (every ``every``-th) of a 7-Scenes-layout folder: image, depth, normals, focal."""

    def __init__(self, root: str | Path, size: tuple[int, int] | None = (240, 320), first: int = 0,
                 last: int = 599, every: int = 1):
        super().__init__(size, augment=False)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: real-frames folder not found")
        if every < 1 or last < first:
            raise ValueError(f"frames {first}..{last} every {every}: need first <= last and every >= 1")
        self.K = read_intrinsics(self.root)
        self.ids = [i for i in range(first, last + 1, every) if (self.root / f"frame-{i:06d}.color.jpg").is_file()]
        if not self.ids:
            raise FileNotFoundError(f"{self.root}: no frame-%06d.color.jpg in {first}..{last}")
        self.tasks = ["depth", "normals"]

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> dict:
        rgb, depth_mm = read_rgbd(self.root, self.ids[index])
        return {"image": rgb, "depth": depth_mm.astype(np.float32) / 1000.0,
                "normals": real_normals(depth_mm, self.K), "focal": float(self.K[0, 0]),
                "name": f"frame-{self.ids[index]:06d}"}
