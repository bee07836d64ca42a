"""Where a frame's outputs meet its ground truth: its metrics, its record and its pictures, in one call.

Offline runs call it as each frame is predicted; live runs and ``mtshare visualize`` call it while reading the
results back from the output bag. All three therefore score and draw frames identically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtshare_ros.data.bag import image_to_array
from mtshare_ros.replay.evaluation import Evaluation, FrameRecord
from mtshare_ros.replay.frames import SyncedFrame, gt_array
from mtshare_ros.replay.pictures import Pictures
from mtshare_ros.replay.topics import Topics
from mtshare_ros.runtime.decode import FrameError
from mtshare_ros.tasks import task_names


class Sink:
    """Collects the records, metrics and pictures of one bag's frames, in order."""

    def __init__(self, out_dir: Path, topics: Topics, num_classes: int, fps: float, samples: int = 4,
                 video_name: str | None = "replay.mp4") -> None:
        self.topics = topics
        self.evaluation = Evaluation(num_classes)
        self.pictures = Pictures(out_dir, topics.count, fps, num_classes, tuple(topics.gt), samples, video_name)
        self.records: list[FrameRecord] = []
        self.t0: int | None = None

    def ground_truth(self, frame: SyncedFrame) -> dict[str, np.ndarray]:
        """The frame's ground truth in the dataset loaders' conventions, at its native size."""
        return {task: gt_array(task, frame.attached[f"gt/{task}"], topic)
                for task, topic in self.topics.gt.items() if f"gt/{task}" in frame.attached}

    def add_recorded(
        self, frame: SyncedFrame, names, missing: str, latency_ms: float | None = None
    ) -> FrameRecord:
        """A frame whose results were recorded in a bag (live mode, ``visualize``): its ``names`` outputs as
        arrays; status ``missing`` when none came back, ``rejected`` when the image does not decode."""
        try:
            rgb = frame.rgb()
        except FrameError as exc:
            return self.add(frame, None, {}, "rejected", note=str(exc))
        outputs = {n: image_to_array(frame.attached[n]) for n in names if n in frame.attached}
        return self.add(frame, rgb, outputs, "ok" if outputs else missing, latency_ms)

    def add(self, frame: SyncedFrame, rgb: np.ndarray | None, outputs: dict[str, np.ndarray], status: str = "ok",
            latency_ms: float | None = None, stats: dict[str, float] | None = None, note: str = "") -> FrameRecord:
        """Score and draw one frame (``rgb`` None: the image did not decode; nothing to draw)."""
        if self.t0 is None:
            self.t0 = frame.stamp_ns
        raw = {t: outputs[t] for t in task_names() if t in outputs}
        gt = self.ground_truth(frame) if rgb is not None else {}
        metrics = self.evaluation.add(raw, gt, self.topics.gt) if status == "ok" else {}
        record = FrameRecord(frame.index, frame.stamp_ns, frame.log_ns, status, latency_ms, dict(stats or {}),
                             metrics, note)
        self.records.append(record)
        if rgb is not None:
            label = f"#{frame.index}  {(frame.stamp_ns - self.t0) * 1e-9:.2f} s"
            self.pictures.add(frame.index, rgb, raw if status == "ok" else {}, gt, label, status)
        return record

    def close(self) -> dict[str, Path]:
        return self.pictures.close()
