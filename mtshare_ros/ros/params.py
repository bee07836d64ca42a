"""The node's parameters, declared from one table, checked by one function and resolved into the
``FrameSettings`` the worker runs with.

Each row says everything a user sees about a parameter (``ros2 param describe``): name, type, default,
range or choices, description, and whether it is read-only (set at start-up; a change needs a reconfigure)
or can change at run time. Defaults of run-time settings come from ``runtime/settings.py``;
``config/mtshare.yaml`` is checked against this table by a test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from mtshare_ros.runtime.onnx_backend import BACKENDS
from mtshare_ros.runtime.settings import ALL_TASKS, MODES, SUB_TASKS, FrameSettings, SharingSettings, TemporalSettings
from mtshare_ros.tasks import task_names

RELIABILITIES = ("reliable", "best_effort")
_FRAME = FrameSettings()
_SHARING = SharingSettings()
_TEMPORAL = TemporalSettings()


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: type
    default: Any
    description: str
    read_only: bool = False
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.range is not None and self.type is float:
            d.floating_point_range = [FloatingPointRange(from_value=self.range[0], to_value=self.range[1])]
        elif self.range is not None and self.type is int:
            d.integer_range = [IntegerRange(from_value=int(self.range[0]), to_value=int(self.range[1]))]
        if self.choices:
            d.additional_constraints = f"one of: {', '.join(self.choices)}"
        return d


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("checkpoint", str, "default", "Checkpoint path, or a shipped name: 'default' (= 'multitask': the "
              "multi-task model, one encoder for every task, with its trained sub-tasks) or 'independent' (three "
              "single-task models and their sub-tasks: more accurate, about twice the cost with sharing off). "
              "Trained sub-task files beside a dense checkpoint (<stem>_depth.pt, <stem>_normals.pt) run in the "
              "shared engine; a task without one runs as the checkpoint's dense model (for a multi-task "
              "checkpoint: its own head on the one encoder pass).", True),
    ParamSpec("device", str, "auto", "Torch device: auto, cpu, cuda or cuda:N.", True),
    ParamSpec("backend", str, "torch", "Inference backend: 'torch' (PyTorch eager), 'onnxruntime' or 'openvino' "
              "(the checkpoint's ONNX graphs, exported once into $MTSHARE_CACHE/onnx or ~/.cache/mtshare_ros/onnx; "
              "onnxruntime: CPU provider, CUDA/TensorRT when device asks for cuda and they are installed; openvino: "
              "CPU only, float32). The exported backends run the shared engine in sharing.mode 'fixed' (threshold "
              "mode falls back to it with a warning) and refuse temporal sharing; a missing package or provider "
              "fails configure with the reason.", True,
              choices=BACKENDS),
    ParamSpec("cameras", list, [""], "Camera names: for each name N the node subscribes N/image (N/image/compressed) "
              "and N/camera_info and publishes N/segmentation, N/depth, ... ; [''] (the default) is one camera with "
              "the node's own topic names. Frames of cameras waiting together go through one pass. Checked at "
              "configure: names unique, each a relative ROS name (letters, digits, _ and /).", True),
    ParamSpec("threads", str, "auto", "Inference threads: 'auto' (chosen at configure from the cores this process "
              "may use and the OpenMP wait policy; see README) or a number as a string, e.g. '2'.", True),
    ParamSpec("latency_budget_ms", float, 0.0, "Per-camera p95 latency the node holds by adapting what it spends: "
              "token caps of task and temporal sharing first, then the colour and point outputs, then the camera's "
              "frame rate; 0 = off. Changeable at run time; /diagnostics says what changed and why.",
              range=(0.0, 60000.0)),
    ParamSpec("tasks", list, list(_FRAME.tasks),
              f"Enabled tasks (subset of {', '.join(ALL_TASKS)} and any task registered through "
              "MTSHARE_TASK_MODULES); changeable at run time."),
    ParamSpec("input_transport", str, "raw",
              "'raw' subscribes to 'image' (sensor_msgs/Image), 'compressed' to 'image/compressed'.", True,
              choices=("raw", "compressed")),
    ParamSpec("autostart", bool, True, "Configure and activate on start-up (mtshare node / launch file).", True),
    ParamSpec("depth.min", float, _FRAME.min_depth, "Depth below this (metres) is published as NaN.",
              range=(0.0, 100.0)),
    ParamSpec("depth.max", float, _FRAME.max_depth, "Depth above this (metres) is published as NaN.",
              range=(0.01, 1000.0)),
    ParamSpec("max_output_width", int, _FRAME.max_width,
              "Widest inference (and output) image, pixels. Outputs have the model's rows (240) and the camera's "
              "aspect ratio; a wider frame (a strip) gets this width and fewer rows, so cost and memory stay "
              "bounded.", range=(16, 4096)),
    ParamSpec("output_size", str, _FRAME.output_size,
              "Resolution of the outputs: 'inference' (the model's, 240 rows; scaled_camera_info describes it) or "
              "'input' (the camera's: segmentation resized nearest, depth and normals edge-aware, so they overlay "
              "the image and its camera_info directly).", choices=("inference", "input")),
    ParamSpec("sharing.enabled", bool, _SHARING.enabled,
              "Run sub-tasks (depth, normals) through the shared engine on the base task's activations."),
    ParamSpec("sharing.mode", str, _SHARING.mode,
              "Token selection of the shared engine: 'threshold' recomputes the tokens whose change exceeds the "
              "thresholds, at most sharing.max_token_fraction of them (cheapest on a static scene); 'fixed' "
              "recomputes exactly ceil(max_token_fraction * tokens) per layer and sub-task, the largest changes, "
              "thresholds ignored: every shape fixed for an image size, what the ONNX backends run. 'fixed' runs "
              "per frame: temporal.enabled must be false.", choices=MODES),
    ParamSpec("sharing.threshold", float, _SHARING.threshold,
              "Relative token-change threshold for every sub-task, in [0, 1]: a token is recomputed when its "
              "activation differs from the base task's by more than this fraction of the base's norm (0.05 = 5%). "
              "0 recomputes everything (exact); 1 recomputes almost nothing. The default is the setting the "
              "shipped sub-tasks were trained at.", range=(0.0, 1.0)),
    *(ParamSpec(f"sharing.{task}_threshold", float, -1.0,
                f"Threshold for {task} only, in [0, 1] like sharing.threshold; -1 uses sharing.threshold.",
                range=(-1.0, 1.0)) for task in SUB_TASKS),
    ParamSpec("sharing.max_token_fraction", float, _SHARING.max_token_fraction,
              "Upper bound on the fraction of tokens a sub-task recomputes per layer, largest changes first (caps "
              "worst-case cost; 1 = no cap). Default 0.1: faster than the shipped sub-tasks' training setting "
              "(0.3) and as accurate on the held-out split.", range=(0.01, 1.0)),
    ParamSpec("temporal.enabled", bool, _TEMPORAL.enabled,
              "Reuse the previous frames' work between keyframes: a token is recomputed only where its input "
              "changed since it was last computed (base task and sub-tasks; needs a checkpoint the shared engine "
              "runs). Off: every frame is computed anew."),
    ParamSpec("temporal.threshold", float, _TEMPORAL.threshold,
              "Relative change of a token's block input since it was last computed above which it is recomputed, "
              "in [0, 1] (0.1 = 10% of the input's norm). 0 recomputes everything (exact per-frame inference).",
              range=(0.0, 1.0)),
    ParamSpec("temporal.max_token_fraction", float, _TEMPORAL.max_token_fraction,
              "Upper bound on the fraction of tokens recomputed per layer between keyframes, largest changes "
              "first; tokens left out add up towards an early keyframe.", range=(0.01, 1.0)),
    ParamSpec("temporal.keyframe_interval", int, _TEMPORAL.keyframe_interval,
              "Frames between keyframes (a keyframe computes the frame in full and bounds drift). Keyframes also "
              "come on scene cuts, stream breaks and ~/reset.", range=(1, 100000)),
    ParamSpec("temporal.motion", str, _TEMPORAL.motion,
              "Motion compensation of the reference buffers: 'image' estimates the image motion between frames "
              "(phase correlation on a downscaled grey frame, ~1-2 ms), moves the references by whole tokens and "
              "the frame by the remaining whole pixels with it, so that content that only moved is not recomputed; "
              "'off' compares tokens at fixed grid positions.", choices=("image", "off")),
    ParamSpec("temporal.motion_frame", str, _FRAME.motion_frame,
              "Fixed frame (e.g. 'odom') to look the camera's pose up in for motion compensation: the image "
              "motion is the camera's rotation and translation between the previous and the current frame "
              "(/tf, /tf_static, at the image stamps, the camera being the image's frame_id) projected with "
              "camera_info's K (exact for rotation; parallax at the previous frame's median model depth, or 3 m "
              "without the depth task). A frame whose transform is unavailable uses the image estimate (one "
              "warning). '' (default): the image estimate only. Needs temporal.motion 'image'.", True),
    ParamSpec("temporal.max_drift", float, _TEMPORAL.max_drift,
              "Keyframe when the measured drift (mean relative change of the tokens reusing their references, "
              "over tokens and blocks) exceeds this; keyframe_interval stays the upper bound.", range=(0.0, 10.0)),
    ParamSpec("temporal.scene_cut_fraction", float, _TEMPORAL.scene_cut_fraction,
              "Keyframe when more than this fraction of the tokens entering the first block changed beyond "
              "temporal.threshold against their (motion-compensated) references: a scene cut. A hand-held camera "
              "changes most tokens a little every frame, so set it high enough not to fire on that.",
              range=(0.0, 1.0)),
    ParamSpec("temporal.partial_heads", bool, _TEMPORAL.partial_heads,
              "Between keyframes run each task's head only around the tokens whose features changed (crops, with "
              "the GroupNorm statistics of the last full head run) and reuse its previous output elsewhere; off: "
              "the full heads on every frame."),
    ParamSpec("temporal.max_stamp_gap", float, 0.5,
              "Seconds between input stamps above which the stream counts as broken (next frame: a keyframe); a "
              "stamp going backwards, another frame_id or image size break it too.", range=(0.0, 3600.0)),
    ParamSpec("qos.input_reliability", str, "best_effort", "Reliability of the image subscriptions: best_effort or "
              "reliable.", True, choices=RELIABILITIES),
    ParamSpec("qos.input_depth", int, 1, "History depth of the image subscriptions.", True, range=(1, 100)),
    ParamSpec("qos.output_reliability", str, "reliable", "Reliability of the output publishers: reliable or "
              "best_effort.", True, choices=RELIABILITIES),
    ParamSpec("qos.output_depth", int, 2, "History depth of the output publishers.", True, range=(1, 100)),
    ParamSpec("diagnostics_period", float, 1.0, "Seconds between /diagnostics messages.", True, range=(0.1, 60.0)),
)
SPECS = {p.name: p for p in PARAMS}


def declare(node: Any) -> None:
    """Declare every parameter of the table on ``node``; a bad start-up value of a read-only one is fatal (it
    cannot be changed later), so it raises ``ValueError`` with the reason."""
    for p in PARAMS:
        node.declare_parameter(p.name, p.default, p.descriptor())
    for p in PARAMS:
        reason = check(p.name, node.get_parameter(p.name).value) if p.read_only else ""
        if reason:
            raise ValueError(reason)


def check(name: str, value: Any) -> str:
    """'' when ``value`` is acceptable for parameter ``name`` on its own, else the reason. (ROS enforces the
    declared ranges and types itself; this checks what a descriptor cannot say.)"""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter {name!r}"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {list(spec.choices)}, got {value!r}"
    if name == "tasks":
        unknown = [t for t in value if t not in task_names()]
        if not value or unknown:
            return f"tasks must be a non-empty subset of {list(task_names())}; got {list(value)}"
        if len(set(value)) != len(value):
            return f"tasks lists a task twice: {list(value)}"
    if name.startswith("sharing.") and name.endswith("_threshold") and value != -1.0 and value < 0:
        return f"{name} must be -1 (use sharing.threshold) or in [0, 1], got {value}"
    if name == "threads" and not (value == "auto" or (str(value).isdigit() and 0 < int(value) <= 1024)):
        return f"threads must be 'auto' or a positive number such as '2', got {value!r}"
    if name == "device" and not (value in ("auto", "cpu", "cuda") or str(value).startswith("cuda:")):
        return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
    return ""


CAMERA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def check_cameras(names: list[str]) -> str:
    """'' when ``cameras`` can name topics, else why not: unique, relative ROS names; '' (the node's own topics)
    only alone."""
    names = list(names)
    if not names:
        return "cameras must name at least one camera ([''] is the node's own topics)"
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return f"cameras lists {dup} more than once: each camera needs its own topics"
    if "" in names and len(names) > 1:
        return f"cameras {names}: '' (the node's own topic names) cannot be combined with named cameras"
    bad = [n for n in names if n and not CAMERA_NAME.match(n)]
    if bad:
        return (f"cameras {bad}: not a relative ROS name (letters, digits and _, parts separated by /, not starting "
                "with a digit or /)")
    return ""


def frame_settings(values: Mapping[str, Any]) -> FrameSettings:
    """The settings a frame runs with, from parameter values (a per-task threshold of -1 inherits)."""
    overrides = {t: values[f"sharing.{t}_threshold"] for t in SUB_TASKS if values[f"sharing.{t}_threshold"] >= 0}
    sharing = SharingSettings(
        enabled=bool(values["sharing.enabled"]),
        mode=str(values["sharing.mode"]),
        threshold=float(values["sharing.threshold"]),
        max_token_fraction=float(values["sharing.max_token_fraction"]),
        task_thresholds=overrides,
    )
    temporal = TemporalSettings(
        enabled=bool(values["temporal.enabled"]),
        threshold=float(values["temporal.threshold"]),
        max_token_fraction=float(values["temporal.max_token_fraction"]),
        keyframe_interval=int(values["temporal.keyframe_interval"]),
        motion=str(values["temporal.motion"]),
        max_drift=float(values["temporal.max_drift"]),
        scene_cut_fraction=float(values["temporal.scene_cut_fraction"]),
        partial_heads=bool(values["temporal.partial_heads"]),
    )
    return FrameSettings(tuple(values["tasks"]), float(values["depth.min"]), float(values["depth.max"]),
                         int(values["max_output_width"]), str(values["output_size"]), sharing, temporal,
                         str(values["temporal.motion_frame"]).lstrip("/"))


def check_settings(settings: FrameSettings) -> str:
    """What no single parameter shows: the depth range must not be empty."""
    if settings.min_depth >= settings.max_depth:
        return f"depth.min ({settings.min_depth}) must be below depth.max ({settings.max_depth})"
    if settings.sharing.mode == "fixed" and settings.temporal.enabled:
        return "sharing.mode 'fixed' runs per frame: set temporal.enabled false (or sharing.mode 'threshold')"
    return ""
