"""Finding the package's shared files (config, launch, rviz) however it was installed.

colcon installs them under ``share/mtshare_ros`` (found through the ament index), pip under
``<prefix>/share/mtshare_ros``, and an editable checkout keeps them at the repository root.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

PACKAGE = "mtshare_ros"
FASTDDS_PROFILE = "config/fastdds_shm.xml"


def share_dir() -> Path:
    """The directory holding ``config/`` and ``launch/``; raises if none can be found."""
    candidates = [Path(__file__).resolve().parents[2]]  # editable checkout
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        # not in an ament index, or no AMENT_PREFIX_PATH at all: fall through to the other candidates
        with contextlib.suppress(PackageNotFoundError, OSError):
            candidates.insert(0, Path(get_package_share_directory(PACKAGE)))
    except ImportError:
        pass
    candidates.append(Path(sys.prefix) / "share" / PACKAGE)
    for c in candidates:
        if (c / FASTDDS_PROFILE).is_file():
            return c
    raise FileNotFoundError(f"cannot find the {PACKAGE} share directory (looked in {[str(c) for c in candidates]})")


def share_path(relative: str) -> Path:
    return share_dir() / relative


def use_fastdds_profile(env: dict[str, str] | os._Environ = os.environ) -> str:
    """Point Fast DDS at the shipped profile (large shared-memory segment) unless the user set one.

    Must run before the first DDS participant is created (before ``rclpy.init``). Returns the path used.
    """
    if not env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(share_path(FASTDDS_PROFILE))
    return env["FASTDDS_DEFAULT_PROFILES_FILE"]
