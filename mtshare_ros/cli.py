"""``mtshare``: one command, one subcommand per tool. Subcommands import lazily so that
``mtshare render --help`` does not pay for torch or rclpy."""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "node": ("mtshare_ros.ros.node", "run the perception node (lifecycle, autostarts to active)"),
    "demo": ("mtshare_ros.demo", "synthetic camera -> node process -> side-by-side picture and summary"),
    "render": ("mtshare_ros.data.render_cli", "render synthetic indoor scenes with MuJoCo"),
    "make-bag": ("mtshare_ros.data.bag_cli", "write a rosbag2 camera bag with ground truth"),
    "train": ("mtshare_ros.training.train_cli", "train models from a config"),
    "eval": ("mtshare_ros.training.eval_cli", "evaluate a checkpoint on a dataset"),
    "replay": ("mtshare_ros.replay.cli", "replay rosbag2 bags: output bag, metrics, latency, plots, montage, video"),
    "export": ("mtshare_ros.export.cli", "export the models as ONNX graphs (dynamic width) with their metadata"),
    "visualize": ("mtshare_ros.replay.visualize_cli", "montage and video from a bag that holds result topics"),
    "temporal-train": (
        "mtshare_ros.training.temporal_step", "fine-tune the base task for sparse temporal activation changes"
    ),
    "share-train": (
        "mtshare_ros.training.share_train_cli", "train sub-tasks as deltas of the base task (method steps 1-3)"
    ),
}


def usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: mtshare <command> [--help] [args...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {desc}" for name, (_, desc) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"mtshare: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
