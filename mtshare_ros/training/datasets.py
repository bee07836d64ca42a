"""The bridge from a training config to the dataset loaders of ``mtshare_ros.data``."""

from __future__ import annotations

from typing import Any

from torch.utils.data import ConcatDataset, Dataset

from mtshare_ros.classes import NYUD40_CLASSES, SYNTHETIC_CLASSES

KNOWN_CLASSES = {"synthetic": SYNTHETIC_CLASSES, "nyud": NYUD40_CLASSES}


class RootsDataset(ConcatDataset):
    """Several dataset folders of one kind read as one (e.g. a separately rendered extra training set)."""

    def __init__(self, parts: list[Dataset], roots: list[str]) -> None:
        super().__init__(parts)
        names = [tuple(getattr(p, "class_names", ())) for p in parts]
        if any(n != names[0] for n in names):
            raise ValueError(f"data.root folders {roots} have different class lists")
        self.class_names = names[0]


def make_dataset(data_cfg: dict[str, Any], split: str, size: tuple[int, int], augment: bool) -> Dataset:
    """``build_dataset`` of the configured dataset (``toy``: the procedural smoke-test set).

    ``data_cfg["root"]`` may be a list of folders of the same dataset kind; their ``split`` lists are joined.
    """
    if isinstance(data_cfg["root"], list):
        roots = [str(r) for r in data_cfg["root"]]
        parts = [make_dataset({**data_cfg, "root": r}, split, size, augment) for r in roots]
        return RootsDataset(parts, roots)
    if data_cfg["dataset"] == "toy":
        from mtshare_ros.training.toy_data import ToyScenes

        return ToyScenes(length=64 if split == "train" else 16, size=size, seed=0 if split == "train" else 1)
    from mtshare_ros.data import build_dataset

    return build_dataset(data_cfg["dataset"], data_cfg["root"], split, size=tuple(size), augment=augment)


def class_names(dataset_name: str, dataset: Dataset | None = None) -> list[str]:
    """Class names of a dataset: its own ``class_names`` attribute, else the package's list for its name."""
    names = getattr(dataset, "class_names", None)
    if names:
        return list(names)
    if dataset_name in KNOWN_CLASSES:
        return list(KNOWN_CLASSES[dataset_name])
    raise ValueError(f"dataset {dataset_name!r} exposes no class_names and none are known for it")
