"""Run the GPU's kernels on the CPU: colours and points are made by OpenCV/numpy on the CPU and by torch on any
other device; the ``kernels`` fixture swaps the CPU's kernels for the torch ones, so that tests check both against
the same references on a machine without a GPU."""

import pytest

from mtshare_ros.runtime import pointcloud
from mtshare_ros.tasks import colour as colorize

TORCH_FOR_CPU = {
    (colorize, "_segmentation_opencv"): colorize._segmentation_torch,
    (colorize, "_depth_opencv"): colorize._depth_torch,
    (colorize, "_normals_opencv"): colorize._normals_torch,
    (pointcloud, "_points_numpy"): pointcloud._points_torch,
}


@pytest.fixture(params=["opencv", "torch"])
def kernels(request, monkeypatch) -> str:
    """``opencv``: the CPU's own kernels; ``torch``: the kernels of the other devices, on the CPU."""
    if request.param == "torch":
        for (module, name), kernel in TORCH_FOR_CPU.items():
            monkeypatch.setattr(module, name, kernel)
    return request.param
