"""Semantic class lists: the one place where class ids, names and colours are defined.

The synthetic scenes use ``SYNTHETIC_CLASSES`` (a NYUD-v2-like indoor subset); the NYUD-v2 loader uses
``NYUD40_CLASSES``. Id 255 is "ignore" everywhere (unlabelled pixels, background beyond the far plane).
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "wall",
    "floor",
    "ceiling",
    "door",
    "window",
    "picture",
    "table",
    "chair",
    "sofa",
    "cabinet",
    "shelves",
    "books",
    "lamp",
    "floor_mat",
    "otherprop",
)

NYUD40_CLASSES: tuple[str, ...] = (
    "wall",
    "floor",
    "cabinet",
    "bed",
    "chair",
    "sofa",
    "table",
    "door",
    "window",
    "bookshelf",
    "picture",
    "counter",
    "blinds",
    "desk",
    "shelves",
    "curtain",
    "dresser",
    "pillow",
    "mirror",
    "floor_mat",
    "clothes",
    "ceiling",
    "books",
    "refridgerator",
    "television",
    "paper",
    "towel",
    "shower_curtain",
    "box",
    "whiteboard",
    "person",
    "night_stand",
    "toilet",
    "sink",
    "lamp",
    "bathtub",
    "bag",
    "otherstructure",
    "otherfurniture",
    "otherprop",
)


def palette(num_classes: int) -> np.ndarray:
    """Distinct, deterministic RGB colours (uint8, shape (256, 3)); the ignore id maps to black.

    Colours follow the PASCAL VOC bit-interleaving scheme so that neighbouring ids differ strongly.
    """
    colours = np.zeros((256, 3), dtype=np.uint8)
    for i in range(min(num_classes, 255)):
        c, r, g, b = i + 1, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    return colours
