"""Standard dense-prediction metrics as accumulators that can be merged across processes.

Every accumulator keeps only sums (a confusion matrix, error sums, an angle histogram) in one float64
tensor ``state``, so that distributed evaluation is one ``all_reduce`` of that tensor. Depth and
normals errors are pooled over all valid pixels of the split (not averaged per image).
"""

from __future__ import annotations

import math

import torch

from mtshare_ros.classes import IGNORE_INDEX
from mtshare_ros.training.losses import MIN_VALID_DEPTH, normals_valid

ANGLE_BIN_DEG = 0.01
"""Histogram resolution of normal errors: the median is exact to this many degrees."""


class SegmentationMetrics:
    """Confusion matrix -> mIoU (classes present in ground truth or prediction) and pixel accuracy."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.state = torch.zeros(num_classes * num_classes, dtype=torch.float64)

    def update(self, logits_or_labels: torch.Tensor, target: torch.Tensor) -> None:
        """``logits_or_labels``: (B, K, H, W) logits or (B, H, W) class ids; ``target``: (B, H, W)."""
        pred = logits_or_labels.argmax(1) if logits_or_labels.dim() == 4 else logits_or_labels
        valid = target != IGNORE_INDEX
        if (target[valid] >= self.num_classes).any() or (target[valid] < 0).any():
            raise ValueError(f"segmentation target holds ids outside 0..{self.num_classes - 1} (and {IGNORE_INDEX})")
        idx = target[valid].long() * self.num_classes + pred[valid].long().clamp(0, self.num_classes - 1)
        self.state += torch.bincount(idx.cpu(), minlength=self.num_classes**2).double()

    def compute(self) -> dict[str, float]:
        cm = self.state.view(self.num_classes, self.num_classes)  # rows: truth, cols: prediction
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp_min(1), torch.zeros_like(tp))
        total = cm.sum()
        return {
            "mIoU": float(iou[present].mean()) if present.any() else float("nan"),
            "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
            "per_class_IoU": [float(v) if p else None for v, p in zip(iou, present, strict=True)],
            "pixels": int(total),
        }


class DepthMetrics:
    """RMSE (m), abs-rel and delta<1.25 over pixels with valid ground truth (> 0), and the scale-aligned abs-rel.

    ``abs_rel_aligned`` scales each image's prediction by ``median(target) / median(prediction)`` first: it
    separates a wrong metric scale (which one number per image fixes) from wrong structure (which it does not),
    and is the usual score of models that only predict relative depth.
    """

    def __init__(self) -> None:
        self.state = torch.zeros(5, dtype=torch.float64)  # sq err, abs rel, delta hits, count, aligned abs rel

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: (B, 1, H, W) or (B, H, W) metres; ``target``: (B, H, W) metres, 0 where invalid."""
        pred = pred[:, 0] if pred.dim() == 4 else pred
        valid = target > MIN_VALID_DEPTH
        p, t = pred[valid].double().clamp_min(1e-6), target[valid].double()
        ratio = torch.maximum(p / t, t / p)
        aligned = p.new_zeros(())
        counts = valid.flatten(1).sum(1).tolist()  # the masked pixels come image by image, in batch order
        for pv, tv in zip(p.split(counts), t.split(counts), strict=True):
            if pv.numel():
                aligned = aligned + ((pv * (tv.median() / pv.median()) - tv).abs() / tv).sum()
        self.state += torch.stack(
            [((p - t) ** 2).sum(), ((p - t).abs() / t).sum(), (ratio < 1.25).sum().double(), torch.tensor(p.numel()),
             aligned]
        ).cpu()

    def compute(self) -> dict[str, float]:
        sq, rel, hits, n, aligned = self.state.tolist()
        if n == 0:
            nan = float("nan")
            return {"rmse": nan, "abs_rel": nan, "delta1": nan, "abs_rel_aligned": nan, "pixels": 0}
        return {"rmse": math.sqrt(sq / n), "abs_rel": rel / n, "delta1": hits / n, "abs_rel_aligned": aligned / n,
                "pixels": int(n)}


class NormalsMetrics:
    """Mean / median angular error (degrees) and % of pixels within 11.25, 22.5 and 30 degrees."""

    THRESHOLDS = (11.25, 22.5, 30.0)

    def __init__(self) -> None:
        self.bins = int(round(180.0 / ANGLE_BIN_DEG))
        # histogram of angles, then the exact sum of angles (for the mean)
        self.state = torch.zeros(self.bins + 1, dtype=torch.float64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``, ``target``: (B, 3, H, W) unit vectors; all-zero target pixels are invalid."""
        valid = normals_valid(target)
        p = torch.nn.functional.normalize(pred.double(), dim=1)
        cos = (p * target.double()).sum(1)[valid].clamp(-1.0, 1.0)
        ang = torch.rad2deg(torch.acos(cos))
        idx = (ang / ANGLE_BIN_DEG).long().clamp(0, self.bins - 1)
        self.state[: self.bins] += torch.bincount(idx.cpu(), minlength=self.bins).double()
        self.state[self.bins] += ang.sum().cpu()

    def compute(self) -> dict[str, float]:
        hist = self.state[: self.bins]
        n = float(hist.sum())
        if n == 0:
            return {"mean_deg": float("nan"), "median_deg": float("nan"), "pixels": 0}
        cum = hist.cumsum(0)
        median_bin = int(torch.searchsorted(cum, torch.tensor(n / 2, dtype=torch.float64)))
        out = {"mean_deg": float(self.state[self.bins]) / n, "median_deg": (median_bin + 0.5) * ANGLE_BIN_DEG}
        for th in self.THRESHOLDS:
            # bins lie entirely below the threshold up to floor(th / bin); the thresholds are multiples of the bin
            out[f"within_{th:g}"] = float(hist[: int(round(th / ANGLE_BIN_DEG))].sum()) / n
        out["pixels"] = int(n)
        return out


Metrics = SegmentationMetrics | DepthMetrics | NormalsMetrics


def build_metrics(task: str, num_classes: int) -> Metrics:
    """The accumulator for ``task``."""
    if task == "segmentation":
        return SegmentationMetrics(num_classes)
    if task == "depth":
        return DepthMetrics()
    if task == "normals":
        return NormalsMetrics()
    raise ValueError(f"no metrics for task {task!r}")


HEADLINE = {
    "segmentation": ("mIoU", "pixel_acc"),
    "depth": ("rmse", "abs_rel", "delta1", "abs_rel_aligned"),
    "normals": ("mean_deg", "median_deg", "within_11.25", "within_22.5", "within_30"),
}
"""The numbers each task reports in logs and tables."""
