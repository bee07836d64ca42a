"""Dataset loaders: the synthetic dataset, NYUD-v2 and PASCAL-Context in the multi-task literature's layouts.

Every loader yields the sample contract (see transforms.to_tensors): ``image`` float32 (3, H, W) in [0, 1],
``segmentation`` int64 (H, W) with 255 = ignore, ``depth`` float32 (H, W) metres (0 = invalid), ``normals``
float32 (3, H, W) in the optical frame (all-zero = invalid), ``name``; tasks a dataset lacks are absent.

NYUD-v2 (MTI-Net / ATRC / InvPT release)::

    images/<id>.jpg|png   segmentation/<id>.png (0 = void, k = class k-1 of 40)   depth/<id>.npy (metres)
    normals/<id>.npy (float in [-1, 1]) or normals/<id>.png (uint8, n = 2 v / 255 - 1)
    edge/<id>.npy (not loaded)   gt_sets/train.txt, gt_sets/val.txt

The synthetic dataset (mtshare_ros.data.synthetic) uses the same layout with the class list in
``classes.txt``. Stored normals are taken to be in the optical frame already (x right, y down, z forward);
pass ``normal_signs`` to NyudLayoutDataset for a copy that uses other axis signs.

PASCAL-Context (ATRC layout)::

    JPEGImages/<id>.jpg   semseg/pascal-context/<id>.png (or semseg/VOC12/<id>.png; value = class id,
    255 = ignore)   normals_distill/<id>.png   ImageSets/Context/train.txt, val.txt
    (human_parts/ and sal_distill/ exist in that layout but are not loaded: no model here predicts them.)
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from mtshare_ros.classes import IGNORE_INDEX, NYUD40_CLASSES, SYNTHETIC_CLASSES
from mtshare_ros.data.transforms import augment as augment_sample
from mtshare_ros.data.transforms import resize, to_tensors
from mtshare_ros.tasks.normals import clean_normals
from mtshare_ros.tasks.segmentation import check_segmentation

PASCAL_CONTEXT_NUM_CLASSES = 21  # the ATRC/MTI-Net PASCAL-Context semantic task (VOC classes + background)


def _read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found (expected one image id per line)")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path}: split file is empty (expected one image id per line)")
    return ids


def _find(folder: Path, stem: str, exts: tuple[str, ...], what: str) -> Path:
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"{folder / stem}{{{','.join(exts)}}}: missing {what} file")


def _read_image(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError(f"{path}: not a readable image (expected an RGB JPEG or PNG)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _read_png(path: Path, what: str) -> np.ndarray:
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"{path}: not a readable PNG (expected {what})")
    return arr


def _read_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .npy array (expected {what}): {exc}") from None


def _expect_shape(arr: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> np.ndarray:
    if arr.shape != shape:
        raise ValueError(f"{path}: {what} has shape {arr.shape}, expected {shape} (the image's size)")
    return arr


class DenseDataset(Dataset):
    """Common part: load a sample as HWC numpy arrays, then resize/augment and convert to tensors."""

    class_names: tuple[str, ...] = ()

    def __init__(self, size: tuple[int, int] | None, augment: bool, seed: int = 0):
        self.size = tuple(size) if size is not None else None
        self.augment = augment
        self.seed = seed
        self._epoch_rng = np.random.default_rng(seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def load(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        sample = self.load(index)
        if self.augment:
            rng = np.random.default_rng([self.seed, index, int(self._epoch_rng.integers(1 << 31))])
            size = self.size or sample["image"].shape[:2]
            sample = augment_sample(sample, size, rng)
        elif self.size is not None:
            sample = resize(sample, self.size)
        return to_tensors(sample)


class NyudLayoutDataset(DenseDataset):
    """NYUD-v2 multi-task layout (also used by the synthetic dataset)."""

    def __init__(self, root: str | Path, split: str, size: tuple[int, int] | None = None, augment: bool = False,
                 class_names: tuple[str, ...] = NYUD40_CLASSES, normal_signs: tuple[float, float, float] = (1, 1, 1),
                 seed: int = 0, ids: list[str] | None = None):
        super().__init__(size, augment, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset folder not found")
        self.split = split
        self.class_names = tuple(class_names)
        self.normal_signs = np.asarray(normal_signs, dtype=np.float32)
        self.ids = list(ids) if ids is not None else _read_ids(self.root / "gt_sets" / f"{split}.txt")
        self.tasks = [t for t in ("segmentation", "depth", "normals") if (self.root / t).is_dir()]
        if not (self.root / "images").is_dir():
            raise FileNotFoundError(f"{self.root / 'images'}: image folder not found")
        self._focals: dict[str, float] | None = None

    def focal(self, name: str) -> float | None:
        """fx (pixels at the stored size) of frame ``name`` from its sequence's cameras.json, None if unknown."""
        if self._focals is None:
            self._focals = {}
            for cam in sorted(self.root.glob("sequences/*/cameras.json")):
                cams = json.loads(cam.read_text())
                fx = float(cams["K"][0][0])
                self._focals.update({item["name"]: fx for item in cams.get("frames", [])})
        return self._focals.get(name)

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> dict:
        name = self.ids[index]
        image = _read_image(_find(self.root / "images", name, (".jpg", ".png", ".jpeg"), "image"))
        hw = image.shape[:2]
        sample = {"image": image, "name": name}
        fx = self.focal(name)
        if fx is not None:
            sample["focal"] = fx
        if "segmentation" in self.tasks:
            path = _find(self.root / "segmentation", name, (".png",), "segmentation")
            raw = _read_png(path, f"uint8 labels, 0 = void, 1..{self.num_classes} = classes")
            if raw.ndim != 2:
                raise ValueError(f"{path}: segmentation has shape {raw.shape}, expected a single-channel {hw} map")
            seg = raw.astype(np.int64) - 1
            seg[seg < 0] = IGNORE_INDEX
            check_segmentation(seg, self.num_classes, path)
            sample["segmentation"] = _expect_shape(seg, hw, path, "segmentation")
        if "depth" in self.tasks:
            path = _find(self.root / "depth", name, (".npy", ".png"), "depth")
            if path.suffix == ".npy":
                depth = _read_npy(path, f"float depth in metres of shape {hw}").astype(np.float32)
            else:  # 16-bit PNG in millimetres
                depth = _read_png(path, "uint16 depth in millimetres").astype(np.float32) / 1000.0
            depth = np.squeeze(depth)
            depth[~np.isfinite(depth) | (depth < 0)] = 0.0
            sample["depth"] = _expect_shape(depth, hw, path, "depth")
        if "normals" in self.tasks:
            path = _find(self.root / "normals", name, (".npy", ".png"), "normals")
            if path.suffix == ".npy":
                normals = _read_npy(path, f"float normals in [-1, 1] of shape {hw + (3,)}").astype(np.float32)
            else:
                normals = cv2.cvtColor(_read_png(path, "RGB-encoded normals"), cv2.COLOR_BGR2RGB)
                normals = 2.0 * normals.astype(np.float32) / 255.0 - 1.0
            _expect_shape(normals, hw + (3,), path, "normals")
            sample["normals"] = clean_normals(normals * self.normal_signs)
        return sample


class PascalContextDataset(DenseDataset):
    """PASCAL-Context in the ATRC layout: semantic segmentation and distilled normals."""

    def __init__(self, root: str | Path, split: str, size: tuple[int, int] | None = None, augment: bool = False,
                 num_classes: int = PASCAL_CONTEXT_NUM_CLASSES, seed: int = 0):
        super().__init__(size, augment, seed)
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: dataset folder not found")
        self.class_names = tuple(f"class{i}" for i in range(num_classes))
        self.ids = _read_ids(self.root / "ImageSets" / "Context" / f"{split}.txt")
        self.seg_dirs = [d for d in (self.root / "semseg" / "pascal-context", self.root / "semseg" / "VOC12")
                         if d.is_dir()]
        self.has_normals = (self.root / "normals_distill").is_dir()

    def __len__(self) -> int:
        return len(self.ids)

    def load(self, index: int) -> dict:
        name = self.ids[index]
        image = _read_image(_find(self.root / "JPEGImages", name, (".jpg", ".png"), "image"))
        hw = image.shape[:2]
        sample = {"image": image, "name": name}
        if self.seg_dirs:
            found = [d / f"{name}.png" for d in self.seg_dirs if (d / f"{name}.png").is_file()]
            if not found:
                raise FileNotFoundError(f"{self.seg_dirs[0] / name}.png: missing segmentation file")
            raw = _read_png(found[0], "uint8 class ids, 255 = ignore")
            if raw.ndim != 2:
                raise ValueError(f"{found[0]}: segmentation has shape {raw.shape}, expected a single-channel map")
            seg = raw.astype(np.int64)
            check_segmentation(seg, self.num_classes, found[0])
            sample["segmentation"] = _expect_shape(seg, hw, found[0], "segmentation")
        if self.has_normals:
            path = _find(self.root / "normals_distill", name, (".png",), "normals")
            normals = cv2.cvtColor(_read_png(path, "RGB-encoded normals"), cv2.COLOR_BGR2RGB)
            _expect_shape(normals, hw + (3,), path, "normals")
            sample["normals"] = clean_normals(2.0 * normals.astype(np.float32) / 255.0 - 1.0)
        return sample


def synthetic_class_names(root: Path) -> tuple[str, ...]:
    """Class list of a synthetic dataset (classes.txt), checked against the package's list."""
    path = root / "classes.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing class list (expected one class name per line; "
                                "render the dataset with `mtshare render`)")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if names != SYNTHETIC_CLASSES:
        raise ValueError(f"{path}: class list {names} differs from mtshare_ros.classes.SYNTHETIC_CLASSES")
    return names


def build_dataset(name: str, root: str | Path, split: str, size: tuple[int, int] | None = (240, 320),
                  augment: bool = False, seed: int = 0) -> DenseDataset:
    """Dataset ``name`` in {"synthetic", "nyud", "pascal"} from ``root``; ``size`` = (H, W) of every sample."""
    root = Path(root)
    if name == "synthetic":
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: synthetic dataset not found (create it with `mtshare render --out`)")
        return NyudLayoutDataset(root, split, size, augment, class_names=synthetic_class_names(root), seed=seed)
    if name == "nyud":
        return NyudLayoutDataset(root, split, size, augment, class_names=NYUD40_CLASSES, seed=seed)
    if name == "pascal":
        return PascalContextDataset(root, split, size, augment, seed=seed)
    raise ValueError(f"unknown dataset {name!r}; expected one of 'synthetic', 'nyud', 'pascal'")


def build_sequence_dataset(root: str | Path, sequence: str, size: tuple[int, int] | None = (240, 320)) -> DenseDataset:
    """The frames of one stored synthetic sequence, in time order and without augmentation (temporal work)."""
    root = Path(root)
    ids = _read_ids(root / "sequences" / sequence / "frames.txt")
    return NyudLayoutDataset(root, sequence, size, False, class_names=synthetic_class_names(root), ids=ids)


def frame_to_sample(frame, size: tuple[int, int] | None = None) -> dict:
    """A rendered Frame (mtshare_ros.data.renderer) as the torch sample contract, optionally resized."""
    sample = {"image": frame.rgb, "segmentation": frame.segmentation.astype(np.int64), "depth": frame.depth,
              "normals": frame.normals, "name": frame.name}
    return to_tensors(resize(sample, size) if size is not None else sample)
