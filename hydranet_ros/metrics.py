"""Running evaluation metrics, shared by training, the evaluator node and the demo.

Segmentation: confusion matrix -> per-class IoU and mIoU (classes never seen in ground truth
nor predicted are left out of the mean). Depth (on pixels with valid ground truth up to
``max_depth``; a missing prediction counts as ``max_depth``): AbsRel, RMSE, delta < 1.25.
Normals (on pixels with ground truth): mean and median angle, the median from a 0.05 degree
histogram so that it can run over any number of frames.
"""

from __future__ import annotations

import numpy as np

IGNORE = 255
ANGLE_BIN_DEG = 0.05
ANGLE_BINS = int(180 / ANGLE_BIN_DEG)
#: Depth scored up to this where nothing says otherwise (training's depth loss too).
DEFAULT_MAX_DEPTH_M = 80.0


class RunningMetrics:
    def __init__(self, class_names: tuple[str, ...] | list[str],
                 max_depth: float = DEFAULT_MAX_DEPTH_M) -> None:
        self.class_names = tuple(class_names)
        self.max_depth = max_depth
        n = len(self.class_names)
        self.confusion = np.zeros((n, n), dtype=np.int64)  # rows: ground truth
        self.frames = 0
        self._depth = np.zeros(4)  # abs rel sum, squared error sum, delta count, pixels
        self._angles = np.zeros(ANGLE_BINS, dtype=np.int64)
        self._angle_sum = 0.0

    def update(self, labels=None, gt_labels=None, depth=None, gt_depth=None, normals=None,
               gt_normals=None) -> None:
        """Add one frame; any pair may be None (a task without prediction or ground truth)."""
        self.frames += 1
        if labels is not None and gt_labels is not None:
            self._update_segmentation(labels, gt_labels)
        if depth is not None and gt_depth is not None:
            self._update_depth(depth, gt_depth)
        if normals is not None and gt_normals is not None:
            self._update_normals(normals, gt_normals)

    def _update_segmentation(self, labels: np.ndarray, gt: np.ndarray) -> None:
        n = len(self.class_names)
        valid = (gt != IGNORE) & (gt < n)
        pred = np.minimum(labels[valid].astype(np.int64), n - 1)
        self.confusion += np.bincount(gt[valid].astype(np.int64) * n + pred,
                                      minlength=n * n).reshape(n, n)

    def _update_depth(self, depth: np.ndarray, gt: np.ndarray) -> None:
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(gt) & (gt > 0) & (gt <= self.max_depth)
        truth = gt[valid].astype(np.float64)
        pred = depth[valid].astype(np.float64)
        pred = np.where(np.isfinite(pred) & (pred > 0), pred, self.max_depth)
        ratio = np.maximum(pred / truth, truth / pred)
        self._depth += [np.sum(np.abs(pred - truth) / truth), np.sum((pred - truth) ** 2),
                        np.sum(ratio < 1.25), truth.size]

    def _update_normals(self, normals: np.ndarray, gt: np.ndarray) -> None:
        gt_norm = np.linalg.norm(gt, axis=-1)
        valid = np.isfinite(gt_norm) & (gt_norm > 0.5)
        a = gt[valid] / gt_norm[valid, None]
        b = np.nan_to_num(normals[valid].astype(np.float64))
        b_norm = np.linalg.norm(b, axis=-1, keepdims=True)
        b = np.divide(b, b_norm, out=np.zeros_like(b), where=b_norm > 0)
        angles = np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))
        self._angle_sum += float(angles.sum())
        bins = np.minimum((angles / ANGLE_BIN_DEG).astype(np.int64), ANGLE_BINS - 1)
        self._angles += np.bincount(bins, minlength=ANGLE_BINS)

    def summary(self) -> dict:
        """Plain numbers (JSON-ready); NaN where a task had no data."""
        out: dict = {"frames": self.frames}
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(0) + self.confusion.sum(1) - tp
        iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
        out["per_class_iou"] = {name: float(v) for name, v in zip(self.class_names, iou)}
        out["miou"] = float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")
        total = self.confusion.sum()
        out["pixel_accuracy"] = float(tp.sum() / total) if total else float("nan")
        abs_rel, squared, within, pixels = self._depth
        out["abs_rel"] = abs_rel / pixels if pixels else float("nan")
        out["rmse"] = float(np.sqrt(squared / pixels)) if pixels else float("nan")
        out["delta1"] = within / pixels if pixels else float("nan")
        count = self._angles.sum()
        out["normal_mean_deg"] = self._angle_sum / count if count else float("nan")
        if count:
            median_bin = int(np.searchsorted(np.cumsum(self._angles), count / 2))
            out["normal_median_deg"] = (median_bin + 0.5) * ANGLE_BIN_DEG
        else:
            out["normal_median_deg"] = float("nan")
        return out


def format_summary(summary: dict) -> str:
    """One line: the headline numbers."""
    return (f"frames {summary['frames']}  mIoU {summary['miou']:.3f}  AbsRel {summary['abs_rel']:.3f}"
            f"  RMSE {summary['rmse']:.2f} m  d<1.25 {summary['delta1']:.3f}  normals mean "
            f"{summary['normal_mean_deg']:.1f} deg, median {summary['normal_median_deg']:.1f} deg")
