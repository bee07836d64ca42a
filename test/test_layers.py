"""The package's layers point one way: models <- sharing <- runtime <- ros, with training and data beside.

Every import in every module is read (top-level and inside functions: a lazy import is still a dependency),
and each must go to the module's own layer or one it may use. The map below is the README's Layout section.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mtshare_ros"

MAY_USE = {
    "classes": set(),  # class names and palette: a leaf
    "tasks": {"classes"},  # the task registry: what each task is, below every layer that runs tasks
    "models": {"tasks", "classes"},
    "data": {"tasks", "classes"},
    "sharing": {"models", "tasks", "classes"},
    "export": {"sharing", "models", "tasks", "classes"},  # ONNX graphs of the models and their runner
    "runtime": {"export", "sharing", "models", "tasks", "classes"},
    "training": {"sharing", "models", "data", "tasks", "classes"},
    "ros": {"runtime", "sharing", "models", "tasks", "classes"},
    # cli.py, demo.py
    "apps": {"ros", "runtime", "export", "training", "sharing", "models", "data", "tasks", "classes"},
}


def layer_of(module: str) -> str:
    """``mtshare_ros.sharing.engine`` -> ``sharing``; top-level modules other than classes are applications."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__init__",):
        return "apps"
    name = parts[1]
    return name if name in MAY_USE else "apps"


def imports(path: Path) -> list[str]:
    """Every ``mtshare_ros`` module ``path`` imports, resolving relative imports."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("mtshare_ros")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mtshare_ros"):
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names if node.module == "mtshare_ros"]
    return out


def violations(package: Path) -> list[str]:
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        own = layer_of(".".join(rel.parts))
        for target in imports(path):
            to = layer_of(target)
            if to != own and to not in MAY_USE[own]:
                bad.append(f"{rel} ({own}) imports {target} ({to})")
    return bad


def test_no_import_points_up_or_sideways():
    assert len(list(PACKAGE.rglob("*.py"))) > 40, "the package was not found"
    bad = violations(PACKAGE)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_the_check_sees_upward_and_lazy_imports(tmp_path):
    pkg = tmp_path / "mtshare_ros"
    (pkg / "sharing").mkdir(parents=True)
    (pkg / "sharing" / "engine.py").write_text("from mtshare_ros.models.vit import DenseViT\n")
    (pkg / "sharing" / "bad.py").write_text("def f():\n    from mtshare_ros.runtime.predictor import Predictor\n")
    (pkg / "training").mkdir()
    (pkg / "training" / "bad.py").write_text("import mtshare_ros.ros.node\n")
    assert violations(pkg) == [
        "mtshare_ros/sharing/bad (sharing) imports mtshare_ros.runtime.predictor (runtime)",
        "mtshare_ros/training/bad (training) imports mtshare_ros.ros.node (ros)",
    ]
