"""The node's products for one frame, as arrays: what each output is, and how it is made.

Shared by the live node and the offline tools so that both publish the same bytes. Only the
outputs asked for are computed (a colour view nobody watches costs nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from .errors import HydraNetError
from .geometry import Intrinsics, point_cloud
from .postprocess import Prediction
from .presets import Preset
from .visualize import colorize_depth, colorize_labels, colorize_normals, depth_range
from .workers import run_all


@dataclass(frozen=True)
class OutputSpec:
    name: str  # also the suffix of its ``publish_<name>`` switch
    topic: str  # relative to the node's namespace
    needs: frozenset[str]  # prediction parts: labels, depth, normals
    needs_intrinsics: bool = False


OUTPUTS = (
    OutputSpec("labels", "segmentation/labels", frozenset({"labels"})),
    OutputSpec("confidence", "segmentation/confidence", frozenset({"confidence"})),
    OutputSpec("segmentation_color", "segmentation/color", frozenset({"labels"})),
    OutputSpec("overlay", "segmentation/overlay", frozenset({"labels"})),
    OutputSpec("depth", "depth/image", frozenset({"depth"})),
    OutputSpec("depth_color", "depth/color", frozenset({"depth"})),
    OutputSpec("normals", "normals/image", frozenset({"normals"})),
    OutputSpec("normals_color", "normals/color", frozenset({"normals"})),
    OutputSpec("points", "points", frozenset({"labels", "depth"}), needs_intrinsics=True),
)
OUTPUT_BY_NAME = {spec.name: spec for spec in OUTPUTS}
#: The order a frame's messages go out in: what navigation reads (labels, depth and then its
#: camera_info, the point cloud) before the views made for people, so that a costmap gets its
#: inputs without waiting for the colour images to be published.
PUBLISH_ORDER = ("labels", "depth", "points", "normals", "confidence", "segmentation_color",
                 "overlay", "depth_color", "normals_color")
POINT_COLOR_SOURCES = ("image", "segmentation")


@dataclass
class OutputSettings:
    overlay_alpha: float = 0.5
    #: Depth beyond this (metres) is published as NaN; 0 uses the preset's display range.
    max_depth: float = 0.0
    pointcloud_stride: int = 1
    #: 0 follows max_depth.
    pointcloud_max_depth: float = 0.0
    pointcloud_organized: bool = True
    pointcloud_color: str = "image"
    pointcloud_exclude_classes: tuple[str, ...] = field(default_factory=tuple)


def parts_needed(wanted: set[str]) -> set[str]:
    """The prediction parts (labels, depth, normals) that the wanted outputs are made from."""
    return set().union(*(OUTPUT_BY_NAME[name].needs for name in wanted)) if wanted else set()


def class_ids(preset: Preset, names: tuple[str, ...]) -> np.ndarray:
    unknown = [n for n in names if n not in preset.class_names]
    if unknown:
        raise HydraNetError(f"unknown class name(s) {', '.join(unknown)} for preset "
                            f"'{preset.name}' (classes: {', '.join(preset.class_names)})")
    return np.array([preset.class_names.index(n) for n in names], dtype=np.int64)


def effective_max_depth(preset: Preset, settings: OutputSettings) -> float:
    if settings.max_depth > 0:
        return settings.max_depth
    return preset.depth_range[1] if preset.depth_range is not None else np.inf


def metric_depth(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """REP 118 depth: metres, NaN where not positive, not finite or beyond ``max_depth``."""
    with np.errstate(invalid="ignore"):
        invalid = ~(np.isfinite(depth) & (depth > 0) & (depth <= max_depth))
    return np.where(invalid, np.float32(np.nan), depth).astype(np.float32, copy=False)


def overlay(rgb: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    """Class colours blended over the image: alpha 0 shows the image, 1 only the colours."""
    return cv2.addWeighted(rgb, 1.0 - alpha, colors, alpha, 0.0)


def compute_outputs(rgb: np.ndarray, pred: Prediction, preset: Preset, settings: OutputSettings,
                    wanted: set[str], intrinsics: Intrinsics | None = None) -> dict[str, np.ndarray]:
    """Arrays for the wanted outputs (points only when ``intrinsics`` is given); the views
    that take time are made concurrently, the point cloud (the largest) first."""
    max_depth = effective_max_depth(preset, settings)
    depth = metric_depth(pred.depth, max_depth) if pred.depth is not None else None
    seg_colors = None
    if wanted & {"segmentation_color", "overlay"} or (
            "points" in wanted and settings.pointcloud_color == "segmentation"):
        seg_colors = colorize_labels(pred.labels, preset)
    out: dict[str, np.ndarray] = {}
    if "labels" in wanted:
        out["labels"] = pred.labels
    if "confidence" in wanted and pred.confidence is not None:
        out["confidence"] = pred.confidence
    if "segmentation_color" in wanted:
        out["segmentation_color"] = seg_colors
    if "depth" in wanted:
        out["depth"] = depth
    if pred.normals is not None and "normals" in wanted:
        out["normals"] = pred.normals
    slow: dict[str, Callable[[], np.ndarray]] = {}
    if "points" in wanted and intrinsics is not None:
        cloud_max = settings.pointcloud_max_depth or max_depth
        slow["points"] = lambda: point_cloud(
            depth, intrinsics, seg_colors if settings.pointcloud_color == "segmentation" else rgb,
            pred.labels, settings.pointcloud_stride, cloud_max,
            class_ids(preset, settings.pointcloud_exclude_classes), settings.pointcloud_organized)
    if "overlay" in wanted:
        slow["overlay"] = lambda: overlay(rgb, seg_colors, settings.overlay_alpha)
    if "depth_color" in wanted:
        slow["depth_color"] = lambda: colorize_depth(depth, depth_range(depth, preset))
    if pred.normals is not None and "normals_color" in wanted:
        slow["normals_color"] = lambda: colorize_normals(pred.normals)
    out.update(run_all(slow))
    return out
