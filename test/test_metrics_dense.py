"""Dense metrics against cases computed by hand."""

import math

import pytest
import torch

from mtshare_ros.classes import IGNORE_INDEX
from mtshare_ros.training.metrics import DepthMetrics, NormalsMetrics, SegmentationMetrics


def test_segmentation_miou_and_pixel_accuracy_by_hand():
    # truth: 0 0 1 1 | 2 255 ; prediction: 0 1 1 1 | 0 2
    target = torch.tensor([[[0, 0, 1, 1, 2, IGNORE_INDEX]]])
    pred = torch.tensor([[[0, 1, 1, 1, 0, 2]]])
    m = SegmentationMetrics(num_classes=4)
    m.update(pred, target)
    res = m.compute()
    # class 0: tp 1, union 3 (truth 2 + pred 2 - 1); class 1: tp 2, union 3; class 2: tp 0, union 1; class 3 absent
    assert res["mIoU"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert res["pixel_acc"] == pytest.approx(3 / 5)  # the ignored pixel counts nowhere
    assert res["per_class_IoU"][3] is None
    assert res["pixels"] == 5


def test_segmentation_accepts_logits_and_accumulates_batches():
    target = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    m = SegmentationMetrics(2)
    m.update(logits, target)
    m.update(logits, target)
    res = m.compute()
    assert res["pixel_acc"] == pytest.approx(0.75)
    assert res["mIoU"] == pytest.approx((0.0 + 0.75) / 2)


def test_segmentation_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside 0..2"):
        SegmentationMetrics(3).update(torch.zeros(1, 1, 1, dtype=torch.long), torch.tensor([[[7]]]))


def test_depth_metrics_by_hand():
    target = torch.tensor([[[1.0, 2.0, 4.0, 0.0]]])  # last pixel invalid
    pred = torch.tensor([[[[1.1, 1.0, 4.0, 9.0]]]])
    m = DepthMetrics()
    m.update(pred, target)
    res = m.compute()
    assert res["rmse"] == pytest.approx(math.sqrt((0.01 + 1.0 + 0.0) / 3))
    assert res["abs_rel"] == pytest.approx((0.1 + 0.5 + 0.0) / 3)
    assert res["delta1"] == pytest.approx(2 / 3)  # 1.1 and 4.0 within 1.25, 1.0 vs 2.0 is not
    assert res["pixels"] == 3
    scale = 2.0 / 1.1  # median target / median prediction over the valid pixels
    want = (abs(1.1 * scale - 1) / 1 + abs(1.0 * scale - 2) / 2 + abs(4.0 * scale - 4) / 4) / 3
    assert res["abs_rel_aligned"] == pytest.approx(want)


def test_aligned_depth_error_forgives_one_scale_per_image_but_not_wrong_structure():
    target = torch.tensor([[[1.0, 2.0, 3.0]], [[2.0, 4.0, 0.0]]])
    m = DepthMetrics()
    m.update(torch.stack([target[0] * 0.5, target[1] * 2.0]), target)  # each image off by its own scale
    res = m.compute()
    assert res["abs_rel_aligned"] == pytest.approx(0.0, abs=1e-12)
    assert res["abs_rel"] == pytest.approx((0.5 * 3 + 1.0 * 2) / 5)
    flat = DepthMetrics()
    flat.update(torch.full((1, 1, 3), 2.0), target[:1])  # a constant: no structure to align
    assert flat.compute()["abs_rel_aligned"] == pytest.approx((1.0 + 0.0 + 1 / 3) / 3)


def _unit(deg: float) -> list[float]:
    r = math.radians(deg)
    return [math.sin(r), 0.0, math.cos(r)]


def test_normals_metrics_by_hand():
    angles = [0.0, 10.0, 20.0, 25.0, 40.0]
    target = torch.tensor([[0.0, 0.0, 1.0]] * 5 + [[0.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 6)
    pred = torch.tensor([_unit(a) for a in angles] + [_unit(90.0)]).T.reshape(1, 3, 1, 6)
    m = NormalsMetrics()
    m.update(pred, target)
    res = m.compute()
    assert res["pixels"] == 5  # the all-zero target is invalid
    assert res["mean_deg"] == pytest.approx(sum(angles) / 5, abs=1e-6)
    assert res["median_deg"] == pytest.approx(20.0, abs=0.01)
    assert res["within_11.25"] == pytest.approx(2 / 5)
    assert res["within_22.5"] == pytest.approx(3 / 5)
    assert res["within_30"] == pytest.approx(4 / 5)


def test_metrics_merge_by_adding_state():
    """Distributed evaluation sums ``state``: two halves must give the result of the whole."""
    torch.manual_seed(0)
    target = torch.randint(0, 5, (2, 8, 8))
    pred = torch.randint(0, 5, (2, 8, 8))
    whole, a, b = SegmentationMetrics(5), SegmentationMetrics(5), SegmentationMetrics(5)
    whole.update(pred, target)
    a.update(pred[:1], target[:1])
    b.update(pred[1:], target[1:])
    a.state += b.state
    assert a.compute() == whole.compute()
