"""Run by test_predictor_onnx in a child process: the openvino backend against torch on a 640x480 frame.

A child process because OpenVINO's CPU plugin leaves native worker threads behind that crash a later fork of the
same process (seen: the share-train test, which forks DataLoader workers, segfaults after it). Prints one JSON
line with what the test asserts."""

from __future__ import annotations

import json
import sys

from test_predictor_onnx import camera_frame, compare

from mtshare_ros.export.runner import BackendUnavailable
from mtshare_ros.runtime.onnx_backend import OnnxBackend
from mtshare_ros.runtime.predictor import Predictor
from mtshare_ros.runtime.settings import FrameSettings, SharingSettings

if __name__ == "__main__":
    torch_p, ov_p = Predictor("default", "cpu"), Predictor("default", "cpu", backend="openvino")
    rgb = camera_frame()
    out: dict = {"graphs_before": ov_p.onnx.graphs}
    ov_p.prepare(FrameSettings(sharing=SharingSettings(mode="fixed", max_token_fraction=0.2)))
    out["graphs_prepared"] = ov_p.onnx.graphs
    for mode in ("fixed", "threshold"):
        ref = torch_p.predict(rgb, FrameSettings(sharing=SharingSettings(mode="fixed", max_token_fraction=0.2)))
        got = ov_p.predict(rgb, FrameSettings(sharing=SharingSettings(mode=mode, max_token_fraction=0.2)))
        out[mode] = compare(got, ref)
    try:
        OnnxBackend(torch_p.loaded, "cuda:0", backend="openvino")
        out["gpu_refused"] = ""
    except BackendUnavailable as exc:
        out["gpu_refused"] = str(exc)
    print(json.dumps(out))
    sys.stdout.flush()
