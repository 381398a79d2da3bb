"""The metric functions, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hydranet_ros.metrics import RunningMetrics, format_summary


def test_segmentation_iou_by_hand():
    m = RunningMetrics(("a", "b", "c"))
    gt = np.array([[0, 0, 1, 1, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1, 2]], np.uint8)
    m.update(labels=pred, gt_labels=gt)
    s = m.summary()
    # a: tp 1, union 2 -> 0.5; b: tp 2, union 3 -> 2/3; c never seen -> left out of the mean
    assert s["per_class_iou"]["a"] == pytest.approx(0.5)
    assert s["per_class_iou"]["b"] == pytest.approx(2 / 3)
    assert math.isnan(s["per_class_iou"]["c"])
    assert s["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["pixel_accuracy"] == pytest.approx(3 / 4)


def test_depth_metrics_by_hand():
    m = RunningMetrics(("a",), max_depth=80.0)
    gt = np.array([1.0, 2.0, 4.0, np.nan, 100.0, 0.0], np.float32)
    pred = np.array([1.1, 2.0, 2.0, 5.0, 1.0, 3.0], np.float32)
    m.update(depth=pred, gt_depth=gt)
    s = m.summary()
    # valid: gt 1, 2, 4 (nan, beyond 80 and 0 are not)
    assert s["abs_rel"] == pytest.approx((0.1 / 1 + 0 + 2 / 4) / 3, rel=1e-6)
    assert s["rmse"] == pytest.approx(math.sqrt((0.01 + 0 + 4) / 3), rel=1e-6)
    assert s["delta1"] == pytest.approx(2 / 3)
    m2 = RunningMetrics(("a",), max_depth=80.0)
    m2.update(depth=np.array([np.nan], np.float32), gt_depth=np.array([40.0], np.float32))
    assert m2.summary()["abs_rel"] == pytest.approx(1.0)  # missing prediction = max depth


def test_normal_angles_by_hand():
    m = RunningMetrics(("a",))
    gt = np.array([[0, 0, -1], [0, 0, -1], [1, 0, 0], [np.nan, np.nan, np.nan]], np.float32)
    angle = np.radians(30)
    pred = np.array([[0, 0, -2], [np.sin(angle), 0, -np.cos(angle)], [0, 1, 0], [1, 0, 0]],
                    np.float32)
    m.update(normals=pred, gt_normals=gt)
    s = m.summary()
    assert s["normal_mean_deg"] == pytest.approx((0 + 30 + 90) / 3, abs=1e-3)
    assert s["normal_median_deg"] == pytest.approx(30, abs=0.05)


def test_running_over_frames_and_formatting():
    m = RunningMetrics(("a", "b"))
    for _ in range(3):
        m.update(labels=np.zeros((2, 2), np.uint8), gt_labels=np.zeros((2, 2), np.uint8))
    s = m.summary()
    assert s["frames"] == 3 and s["miou"] == 1.0 and math.isnan(s["abs_rel"])
    assert format_summary(s).startswith("frames 3  mIoU 1.000")
