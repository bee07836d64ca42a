"""Semantic segmentation, the base task: class logits out of the model, class ids (mono8) on the topic."""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mtshare_ros.classes import IGNORE_INDEX
from mtshare_ros.tasks.colour import colorize_segmentation
from mtshare_ros.tasks.spec import TaskSpec, identity, register_task

NAME = "segmentation"


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over labelled pixels; ``IGNORE_INDEX`` pixels contribute nothing."""
    loss = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, (target != IGNORE_INDEX).sum()


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


def check_segmentation(seg: np.ndarray, num_classes: int, path) -> None:
    bad = (seg >= num_classes) & (seg != IGNORE_INDEX)
    if bad.any() or (seg < 0).any():
        values = np.unique(seg[bad | (seg < 0)])[:10].tolist()
        raise ValueError(f"{path}: segmentation ids {values} outside 0..{num_classes - 1} (or {IGNORE_INDEX} ignore)")


def upsample_segmentation(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(labels, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def _to_map(output: torch.Tensor, settings) -> torch.Tensor:
    # max().indices: the same labels as argmax, ~10x cheaper on CPU for (K, H, W) logits
    return output.max(0).indices.to(torch.uint8)


def _eval_pair(pred: np.ndarray, gt: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(pred.astype(np.int64))[None], torch.from_numpy(gt.astype(np.int64))[None]


NO_TRUTH = (96, 96, 96)


def _error_picture(pred: np.ndarray, gt: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    out = (rgb.astype(np.float32) * 0.35).astype(np.uint8)
    out[(pred != gt) & (gt != IGNORE_INDEX)] = (255, 40, 40)
    out[gt == IGNORE_INDEX] = NO_TRUTH
    return out


def _colour(labels: torch.Tensor, out: torch.Tensor | None = None, num_classes: int = 0, scale=None) -> torch.Tensor:
    return colorize_segmentation(labels.to(torch.uint8), num_classes, out)


SPEC = register_task(TaskSpec(
    name=NAME, order=0, channels=None, encoding="mono8", activate=identity, to_map=_to_map, loss=segmentation_loss,
    as_target=lambda output: output.argmax(1), metrics=SegmentationMetrics, headline=("mIoU", "pixel_acc"),
    colour=_colour, upsample=upsample_segmentation, decode_gt=lambda arr, encoding: arr, eval_pair=_eval_pair,
    gt_encodings=("mono8", "8UC1"), check_gt=check_segmentation, error_picture=_error_picture,
    error_title="segmentation error (red)",
), replace=True)
