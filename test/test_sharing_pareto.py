"""bench/sharing_pareto.py: the front of a sweep and the plot of the sweep beside its baselines."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from sharing_pareto import pareto_front, write_pareto_png  # noqa: E402


def test_front_keeps_only_points_nothing_beats():
    pts = [(2.0, 0.5), (1.0, 0.8), (1.5, 0.9), (3.0, 0.4), (2.5, 0.6)]
    assert pareto_front(pts) == [(1.0, 0.8), (2.0, 0.5), (3.0, 0.4)]


def test_plot_is_written_with_every_kind_of_point(tmp_path):
    def row(kind, gmacs, depth, normals, **extra):
        return {"kind": kind, "gmacs": gmacs, "headline": [("depth", depth), ("normals", normals)], **extra}

    rows = [
        row("independent", 3.6, 0.54, 16.6),
        row("multitask", 1.5, 0.53, 18.4, role="baseline_multitask"),
        row("shared", 1.6, 0.55, 18.4, delta="checkpoint", threshold=1000.0, max_token_fraction=1.0,
            role="baseline_nothing_recomputed"),
        row("shared", 1.8, 0.52, 18.0, delta="checkpoint", threshold=0.05, max_token_fraction=0.1,
            role="node_default"),
        row("shared", 2.0, 0.51, 17.8, delta="checkpoint", threshold=0.0, max_token_fraction=0.2),
    ]
    path = write_pareto_png(rows, tmp_path / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
