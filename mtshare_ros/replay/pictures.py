"""What people look at: a montage of sample frames and a video of the whole sequence, one row per frame:
input | segmentation | depth | normals, then an error map for each task the bag has ground truth for.

Colours are the node's own (``runtime/colorize.py``: the palette, turbo depth with near = red, (n + 1) / 2
normals), so the pictures match RViz. Depth uses one colour scale for the whole run (from the first frame's
ground truth, else its prediction), so the video does not flicker. Error maps: segmentation red where wrong
over the dimmed image; depth absolute relative error and normals angular error in inferno (black = no error),
from 0 to ``DEPTH_ERR_MAX`` / ``NORMALS_ERR_MAX``; grey where there is no ground truth (or no prediction).
The video is MPEG-4 (``mp4v``, what OpenCV's pip wheels can write; VLC, mpv, QuickTime and Foxglove's desktop
app play it).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mtshare_ros.replay.evaluation import TASKS, resize_nearest
from mtshare_ros.runtime.colorize import colorize_array
from mtshare_ros.tasks import task_spec

HEADER = 22
NO_TRUTH = (96, 96, 96)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour=(255, 255, 255), scale: float = 0.45) -> None:
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, colour, 1, cv2.LINE_AA)


def error_panel(task: str, pred: np.ndarray, gt: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """The error of ``pred`` against ``gt`` (already at the prediction's size) as an RGB picture (the task's own
    ``TaskSpec.error_picture``; grey for a task that draws none)."""
    draw = task_spec(task).error_picture
    return draw(pred, gt, rgb) if draw is not None else np.full((*pred.shape[:2], 3), NO_TRUTH, np.uint8)


class Pictures:
    """Builds montage rows and the video frame by frame; ``close`` writes ``montage.png`` and the video."""

    def __init__(self, out_dir: Path, total: int, fps: float, num_classes: int, gt_tasks: tuple[str, ...],
                 samples: int = 4, video_name: str | None = "replay.mp4") -> None:
        self.out_dir, self.fps, self.num_classes = Path(out_dir), fps, num_classes
        self.gt_tasks = tuple(t for t in TASKS if t in gt_tasks)
        self.columns = ["input", *TASKS, *(task_spec(t).error_title or f"{t} error" for t in self.gt_tasks)]
        self.targets = sorted({int(round(x)) for x in np.linspace(0, max(total - 1, 0), max(1, min(samples, total)))})
        self.best: dict[int, tuple[int, np.ndarray]] = {}  # target -> (index, row) of the nearest good frame
        self.video_name = video_name
        self.size: tuple[int, int] | None = None  # panel (h, w)
        self.vmax: float | None = None
        self._writer = None

    def _panel_size(self, rgb: np.ndarray, outputs: dict) -> tuple[int, int]:
        if self.size is None:
            maps = [a for a in outputs.values() if a is not None]
            h, w = maps[0].shape[:2] if maps else rgb.shape[:2]
            if not maps and h > 240:  # no output to go by: the model's usual 240 rows
                h, w = 240, int(round(w * 240 / h))
            self.size = (h, w)
        return self.size

    def row(self, rgb: np.ndarray, outputs: dict[str, np.ndarray], gt: dict[str, np.ndarray], label: str,
            status: str = "ok") -> np.ndarray:
        """One frame's panels side by side, at the output size."""
        h, w = self._panel_size(rgb, outputs)
        small = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA) if rgb.shape[:2] != (h, w) else rgb
        outs = {t: resize_nearest(a, (h, w)) for t, a in outputs.items() if a is not None}
        gts = {t: resize_nearest(a, (h, w)) for t, a in gt.items() if t in self.gt_tasks}
        if self.vmax is None and ("depth" in gts or "depth" in outs):
            d = gts["depth"] if "depth" in gts else outs["depth"]
            finite = d[np.isfinite(d) & (d > 0)]
            self.vmax = float(np.percentile(finite, 98)) if finite.size else None
        blank = np.zeros((h, w, 3), np.uint8)
        panels = [small.copy()]
        for task in TASKS:
            ok = task in outs
            panels.append(colorize_array(task, outs[task], self.num_classes, self.vmax) if ok else blank.copy())
        for task in self.gt_tasks:
            ok = task in outs and task in gts
            panels.append(error_panel(task, outs[task], gts[task], small) if ok else blank.copy())
        _text(panels[0], label, (5, h - 8))
        if status != "ok":
            _text(panels[0], status.upper(), (5, 22), (255, 60, 60), 0.7)
        return np.hstack(panels)

    def header(self, width: int) -> np.ndarray:
        """The column names above a row (or the montage)."""
        h, w = self.size or (240, 320)
        strip = np.full((HEADER, width, 3), 32, np.uint8)
        for i, name in enumerate(self.columns):
            _text(strip, name, (i * w + 5, HEADER - 7))
        return strip

    def add(self, index: int, rgb: np.ndarray, outputs: dict[str, np.ndarray], gt: dict[str, np.ndarray],
            label: str, status: str = "ok") -> None:
        """One frame of the sequence, in order."""
        row = self.row(rgb, outputs, gt, label, status)
        if self.video_name is not None:
            self._write_video(np.vstack([self.header(row.shape[1]), row]))
        if status == "ok":
            for target in self.targets:
                known = self.best.get(target)
                if known is None or abs(index - target) < abs(known[0] - target):
                    self.best[target] = (index, row)

    def _write_video(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self._writer is None:
            self._video_size = (w + w % 2, h + h % 2)  # MPEG-4 wants even sizes
            path = self.out_dir / self.video_name
            self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._video_size)
            if not self._writer.isOpened():
                raise RuntimeError(f"{path}: OpenCV cannot write MPEG-4 video here")
        canvas = np.zeros((self._video_size[1], self._video_size[0], 3), np.uint8)
        canvas[:h, :w] = frame[:, :, ::-1]
        self._writer.write(canvas)

    def close(self) -> dict[str, Path]:
        """Write the montage and finish the video; returns what was written by kind."""
        written: dict[str, Path] = {}
        if self._writer is not None:
            self._writer.release()
            written["video"] = self.out_dir / self.video_name
        rows = [row for _, row in sorted(dict(self.best.values()).items(), key=lambda e: e[0])]
        if rows:
            montage = np.vstack([self.header(rows[0].shape[1]), *rows])
            path = self.out_dir / "montage.png"
            cv2.imwrite(str(path), montage[:, :, ::-1])
            written["montage"] = path
        return written
