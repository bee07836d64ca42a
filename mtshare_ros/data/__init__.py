"""Data: synthetic indoor scenes rendered with MuJoCo, real dataset loaders, camera bags.

Public API (imported lazily so that ``mtshare render --help`` stays fast):
  render_sequence, write_dataset, ensure_synthetic_dataset, list_sequences, load_sequence, Frame
      (mtshare_ros.data.synthetic / .renderer)
  build_dataset, build_sequence_dataset, frame_to_sample (mtshare_ros.data.datasets)
  write_camera_bag, read_camera_bag (mtshare_ros.data.bag)

Conventions everywhere: depth in metres along the optical axis (0 = invalid); normals are unit vectors in
the camera optical frame (x right, y down, z forward; all-zero = invalid); synthetic class ids index
mtshare_ros.classes.SYNTHETIC_CLASSES with 255 = ignore; poses are camera-to-world 4x4 (optical frame).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Frame": "mtshare_ros.data.renderer",
    "render_sequence": "mtshare_ros.data.synthetic",
    "write_dataset": "mtshare_ros.data.synthetic",
    "ensure_synthetic_dataset": "mtshare_ros.data.synthetic",
    "list_sequences": "mtshare_ros.data.synthetic",
    "load_sequence": "mtshare_ros.data.synthetic",
    "build_dataset": "mtshare_ros.data.datasets",
    "build_sequence_dataset": "mtshare_ros.data.datasets",
    "frame_to_sample": "mtshare_ros.data.datasets",
    "write_camera_bag": "mtshare_ros.data.bag",
    "read_camera_bag": "mtshare_ros.data.bag",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mtshare_ros.data' has no attribute {name!r}")
