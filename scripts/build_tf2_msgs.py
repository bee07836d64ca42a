"""Build and install the tf2_msgs message package (TFMessage only) into this Python environment.

The node reads /tf and /tf_static (``temporal.motion_frame``, ``mtshare_ros/ros/tf_listener.py``), whose type is
``tf2_msgs/msg/TFMessage``. A ROS installation has it; the pip-installed ROS 2 wheels this project uses have no
tf2_msgs wheel. This script makes one the way colcon would: the rosidl generators the wheels ship generate the C
structs, the C type support (dispatching to Fast DDS's and introspection's), and the Python bindings from
TFMessage's definition (``sequence<geometry_msgs/TransformStamped> transforms``, as in ros2/geometry2); the
system's C/C++ compiler builds them against the installed geometry_msgs; the libraries go to ``<prefix>/lib``
(on the wheels' library path) and the Python package to site-packages.

Does nothing when ``tf2_msgs`` already imports (a ROS installation, or a second run).

    .venv/bin/python scripts/build_tf2_msgs.py            # ~30 s (two cores)
    .venv/bin/python scripts/build_tf2_msgs.py --force    # rebuild
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

PKG = "tf2_msgs"
IDL = """\
#include "geometry_msgs/msg/TransformStamped.idl"

module tf2_msgs {
  module msg {
    struct TFMessage {
      sequence<geometry_msgs::msg::TransformStamped> transforms;
    };
  };
};
"""
MSG = "geometry_msgs/TransformStamped[] transforms\n"
DEPS = ("geometry_msgs", "std_msgs", "builtin_interfaces")


def _generate(src: Path, out: Path, prefix: Path) -> None:
    """Each rosidl generator into its own folder (two of them write files of the same name)."""
    os.environ.setdefault("AMENT_PREFIX_PATH", str(prefix))  # the generators find their templates in the index
    from rosidl_generator_c.cli import GenerateC
    from rosidl_generator_py.cli import GeneratePython
    from rosidl_typesupport_c.cli import GenerateCTypesupport
    from rosidl_typesupport_fastrtps_c.cli import GenerateFastRTPSCTypesupport
    from rosidl_typesupport_introspection_c.cli import GenerateIntrospectionCTypesupport

    for name, cls in (("c", GenerateC), ("ts_c", GenerateCTypesupport), ("fastrtps_c", GenerateFastRTPSCTypesupport),
                      ("introspection_c", GenerateIntrospectionCTypesupport), ("py", GeneratePython)):
        print(f"generating {name}", flush=True)
        cls(name).generate(PKG, [f"{src}:msg/TFMessage.idl"], [str(prefix / "share")], out / name / PKG)


def _compile(out: Path, prefix: Path, lib_dir: Path, pkg_dir: Path) -> None:
    inc = [f"-I{out / d}" for d in ("c", "fastrtps_c", "introspection_c", "py")]
    # the wheels' headers: include/<pkg>/<pkg>/... for ROS packages, include/<pkg>/... for Fast DDS's
    inc += [f"-I{prefix / 'include'}"] + [f"-I{p}" for p in sorted((prefix / "include").iterdir()) if p.is_dir()]
    py_inc = [f"-I{sysconfig.get_paths()['include']}"]
    import numpy

    py_inc.append(f"-I{numpy.get_include()}")
    link = [f"-L{prefix / 'lib'}", f"-L{lib_dir}", f"-Wl,-rpath,{prefix / 'lib'}"]

    def dep_libs(kind: str) -> list[str]:
        return [f"-l{d}__{kind}" for d in DEPS]

    def build(name: str, sources: list[Path], libs: list[str], extra: list[str] = (), dest: Path = lib_dir) -> None:
        cxx = any(s.suffix == ".cpp" for s in sources)
        cmd = ["c++" if cxx else "cc", "-shared", "-fPIC", "-O2", *(["-std=c++17"] if cxx else []), *inc, *extra,
               *map(str, sources), "-o", str(dest / name), *link, *libs]
        print(f"compiling {name}", flush=True)
        subprocess.run(cmd, check=True)

    c, msg = f"lib{PKG}__rosidl_generator_c.so", Path("msg")
    detail = msg / "detail"
    build(c, [out / "c" / PKG / detail / f for f in ("tf_message__description.c", "tf_message__functions.c",
                                                      "tf_message__type_support.c")],
          [*dep_libs("rosidl_generator_c"), "-lrosidl_runtime_c", "-lrcutils"])
    build(f"lib{PKG}__rosidl_typesupport_introspection_c.so",
          [out / "introspection_c" / PKG / detail / "tf_message__type_support.c"],
          [f"-l{PKG}__rosidl_generator_c", *dep_libs("rosidl_typesupport_introspection_c"),
           "-lrosidl_typesupport_introspection_c", "-lrosidl_runtime_c", "-lrcutils"])
    build(f"lib{PKG}__rosidl_typesupport_fastrtps_c.so",
          [out / "fastrtps_c" / PKG / detail / "tf_message__type_support_c.cpp"],
          [f"-l{PKG}__rosidl_generator_c", *dep_libs("rosidl_typesupport_fastrtps_c"),
           *dep_libs("rosidl_generator_c"), "-lrosidl_typesupport_fastrtps_c", "-lrosidl_typesupport_fastrtps_cpp",
           "-lrosidl_dynamic_typesupport", "-lrmw", "-lfastcdr", "-lrosidl_runtime_c", "-lrcutils"])
    build(f"lib{PKG}__rosidl_typesupport_c.so", [out / "ts_c" / PKG / msg / "tf_message__type_support.cpp"],
          [f"-l{PKG}__rosidl_generator_c", "-lrosidl_typesupport_c", "-lrosidl_runtime_c", "-lrcutils"])
    build(f"lib{PKG}__rosidl_generator_py.so", [out / "py" / PKG / msg / "_tf_message_s.c"],
          [f"-l{PKG}__rosidl_typesupport_c", f"-l{PKG}__rosidl_generator_c", *dep_libs("rosidl_generator_py"),
           *dep_libs("rosidl_generator_c"), "-lrosidl_runtime_c", "-lrcutils"], py_inc)
    build(f"{PKG}_s__rosidl_typesupport_c.so", [out / "py" / PKG / f"_{PKG}_s.ep.rosidl_typesupport_c.c"],
          [f"-l{PKG}__rosidl_generator_py", f"-l{PKG}__rosidl_typesupport_c", f"-l{PKG}__rosidl_generator_c",
           "-lrosidl_typesupport_c", "-lrosidl_runtime_c", "-lrcutils"], py_inc, dest=pkg_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even when tf2_msgs imports")
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix),
                        help="the environment the ROS wheels are installed in (default: this Python's)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec(PKG) is not None and not args.force:
        print(f"{PKG} is installed: nothing to do")
        return 0
    prefix = args.prefix.resolve()
    site = Path(sysconfig.get_paths(vars={"base": str(prefix), "platbase": str(prefix)})["purelib"])
    with tempfile.TemporaryDirectory(prefix="tf2_msgs_build_") as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        (src / "msg").mkdir(parents=True)
        (src / "msg" / "TFMessage.idl").write_text(IDL)
        out, lib_dir, pkg_dir = tmp / "gen", tmp / "lib", tmp / PKG
        lib_dir.mkdir()
        (pkg_dir / "msg").mkdir(parents=True)
        _generate(src, out, prefix)
        _compile(out, prefix, lib_dir, pkg_dir)
        (pkg_dir / "__init__.py").write_text("")
        for f in ("__init__.py", "_tf_message.py"):
            shutil.copy(out / "py" / PKG / "msg" / f, pkg_dir / "msg" / f)
        # installed last, all at once: an interrupted build leaves nothing half-installed that imports
        for lib in lib_dir.iterdir():
            shutil.copy(lib, prefix / "lib" / lib.name)
        share = prefix / "share" / PKG / "msg"
        share.mkdir(parents=True, exist_ok=True)
        (share / "TFMessage.idl").write_text(IDL)
        (share / "TFMessage.msg").write_text(MSG)
        shutil.rmtree(site / PKG, ignore_errors=True)
        shutil.copytree(pkg_dir, site / PKG)
    print(f"installed {PKG} into {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
