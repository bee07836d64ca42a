"""Import MuJoCo with an offscreen OpenGL backend chosen before the first import.

MuJoCo reads ``MUJOCO_GL`` once, when ``mujoco`` is first imported, so every module of this package
imports it through :func:`import_mujoco`. Default: ``egl`` (Mesa's software EGL on machines without a
GPU); set ``MUJOCO_GL=osmesa`` to use OSMesa instead.
"""

from __future__ import annotations

import os


def import_mujoco():
    os.environ.setdefault("MUJOCO_GL", "egl")
    if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    import mujoco

    return mujoco
