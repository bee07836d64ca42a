"""The node's parameters for a replay, resolved the way a ROS launch resolves them: the table's defaults
(``ros/params.py``), then a params file in the ROS layout (``config/mtshare.yaml``), then ``--param NAME=VALUE``
in order, each value checked as the node checks it.

The same names and checks as the node, so a replay runs what the node would run with that file, and a file
that works here works in a launch. Names a params file sets that the node does not declare are ignored with a
warning (rclpy ignores them too); an unknown ``--param`` is an error, with the nearest name.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mtshare_ros.ros import params as ros_params
from mtshare_ros.runtime.settings import FrameSettings

NODE_NAME = "mtshare"


class ParamError(ValueError):
    """A parameter file or value that the node would refuse; the message is one line."""


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested YAML mappings -> dotted names (``depth: {min: 1}`` is ``depth.min``, as ROS reads it)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _node_matches(key: str) -> bool:
    """Does a params-file key apply to the node (``/**``, ``mtshare``, ``/ns/mtshare``, ``/**/mtshare``)?"""
    key = str(key)
    return key in ("/**", "**") or key.rstrip("/").rsplit("/", 1)[-1] == NODE_NAME


def read_params_file(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    """The parameters a ROS params file gives the node, and warnings for names the node does not declare."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParamError(f"{path}: cannot read the params file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ParamError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ParamError(f"{path}: expected a ROS params file (<node name or /**>: ros__parameters: ...)")
    values: dict[str, Any] = {}
    matched = False
    for key, section in doc.items():
        if _node_matches(key) and isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
            matched = True
            values.update(_flatten(section["ros__parameters"]))
    if not matched:
        raise ParamError(f"{path}: no ros__parameters for node {NODE_NAME!r} (top-level keys: {list(doc)}; expected "
                         f"'/**' or '{NODE_NAME}')")
    warnings = [f"{path}: {name} is not a parameter of the node; ignored" for name in values
                if name not in ros_params.SPECS]
    return {k: v for k, v in values.items() if k in ros_params.SPECS}, warnings


def coerce(name: str, value: Any) -> Any:
    """``value`` as the declared type of ``name`` (an int for a double is widened, as a YAML ``20`` for
    ``depth.max`` is meant); anything else of the wrong type, or outside the declared range, is refused."""
    spec = ros_params.SPECS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, list(ros_params.SPECS), 1)
        raise ParamError(f"unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    if spec.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)) if spec.type is list else (
        isinstance(value, spec.type) and not (spec.type is int and isinstance(value, bool)))
    if not ok:
        raise ParamError(f"{name} must be {spec.type.__name__}{' of strings' if spec.type is list else ''}, "
                         f"got {value!r}")
    if spec.range is not None and not spec.range[0] <= value <= spec.range[1]:
        raise ParamError(f"{name} must be in [{spec.range[0]:g}, {spec.range[1]:g}], got {value!r}")
    reason = ros_params.check(name, value)
    if reason:
        raise ParamError(reason)
    return value


def parse_assignment(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` (or ROS's ``NAME:=VALUE``) with VALUE read as YAML, like ``--ros-args -p``."""
    name, sep, raw = text.partition(":=") if ":=" in text else text.partition("=")
    if not sep or not name.strip():
        raise ParamError(f"--param {text!r}: expected NAME=VALUE, e.g. sharing.threshold=0.1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return name.strip(), value


def resolve(params_file: str | Path | None, assignments: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Every parameter's value (defaults <- params file <- assignments) and the warnings to show."""
    values = {p.name: p.default for p in ros_params.PARAMS}
    warnings: list[str] = []
    if params_file is not None:
        from_file, warnings = read_params_file(params_file)
        for name, value in from_file.items():
            try:
                values[name] = coerce(name, value)
            except ParamError as exc:
                raise ParamError(f"{params_file}: {exc}") from None
    for text in assignments:
        name, value = parse_assignment(text)
        try:
            values[name] = coerce(name, value)
        except ParamError as exc:
            raise ParamError(f"--param {text}: {exc}") from None
    settings(values)  # the values must also make sense together
    return values, warnings


def settings(values: dict[str, Any]) -> FrameSettings:
    """The ``FrameSettings`` the node would run frames with, checked as the node checks them."""
    frame = ros_params.frame_settings(values)
    reason = ros_params.check_settings(frame)
    if reason:
        raise ParamError(reason)
    return frame


def changed(values: dict[str, Any]) -> dict[str, Any]:
    """The values that differ from the table's defaults (for the report)."""
    return {p.name: values[p.name] for p in ros_params.PARAMS if values[p.name] != p.default}


def ros_args(values: dict[str, Any]) -> list[str]:
    """``-p name:=value`` for every parameter: a node process started with these runs exactly ``values``,
    whatever params file it also reads."""
    out: list[str] = []
    for name, value in values.items():
        text = yaml.safe_dump(value, default_flow_style=True).strip()
        out += ["-p", f"{name}:={text.removesuffix('...').strip()}"]
    return out
