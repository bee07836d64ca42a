"""Import MuJoCo with an offscreen OpenGL backend chosen before the first import.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so every module of this package
imports it through :func:`import_mujoco`. An explicit ``MUJOCO_GL`` is respected; otherwise ``egl``
(Mesa's software EGL on machines without a GPU) is used when libEGL is installed and ``osmesa`` when only
libOSMesa is.
"""

from __future__ import annotations

import ctypes.util
import os


def choose_backend() -> str:
    """The backend to use when MUJOCO_GL is not set: egl, else osmesa, else egl (to get MuJoCo's error)."""
    if ctypes.util.find_library("EGL"):
        return "egl"
    if ctypes.util.find_library("OSMesa"):
        return "osmesa"
    return "egl"


def import_mujoco():
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = choose_backend()
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    import mujoco

    return mujoco
