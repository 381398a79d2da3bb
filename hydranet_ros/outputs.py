"""The node's products for one frame, as arrays: what each output is, and how it is made.

Shared by the live node and the offline tools so that both publish the same bytes. Only the
outputs asked for are computed (a colour view nobody watches costs nothing).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import message_room
from .errors import HydraNetError
from .geometry import Intrinsics, invalid_as_nan, point_cloud
from .postprocess import Prediction
from .presets import Preset
from .visualize import colorize_depth, colorize_labels, colorize_normals, depth_range
from .workers import submit


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
#: What a navigation stack needs of every frame before it can act on it: Nav2's semantic
#: segmentation layer takes the mask, its confidence and the point cloud of one stamp together
#: (an exact-time synchroniser: ``navigation.py``), so it waits for the last of these three.
NAVIGATION_OUTPUTS = ("labels", "confidence", "points")
#: The order a frame's messages go out in: a navigation stack's inputs first, the smallest
#: first (a costmap acts once the last of them has arrived), then the metric depth with its
#: camera_info and the normals, then the views made for people, so that a costmap gets its
#: inputs without waiting for the other 9 MB of a 640x480 frame to be published.
PUBLISH_ORDER = NAVIGATION_OUTPUTS + ("depth", "normals", "segmentation_color", "overlay",
                                      "depth_color", "normals_color")
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
    """The prediction parts (labels, depth, normals, confidence) that the wanted outputs are
    made from."""
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
    """REP 118 depth in metres with REP 117's meanings: +Inf beyond ``max_depth`` (farther
    than the model's range: "nothing within range", which costmaps may clear with), NaN where
    there is no estimate (not positive, not a number)."""
    with np.errstate(invalid="ignore"):
        invalid = ~(depth > 0)  # NaN compares false
        far = depth > max_depth
    out = invalid_as_nan(depth, invalid)
    np.copyto(out, np.float32(np.inf), where=far)
    return out


def overlay(rgb: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    """Class colours blended over the image: alpha 0 shows the image, 1 only the colours."""
    return cv2.addWeighted(rgb, 1.0 - alpha, colors, alpha, 0.0,
                           dst=message_room.empty(rgb.shape, np.uint8))


def compute_outputs(rgb: np.ndarray, pred: Prediction, preset: Preset, settings: OutputSettings,
                    wanted: set[str], intrinsics: Intrinsics | None = None) -> dict[str, np.ndarray]:
    """Arrays for the wanted outputs (points only when ``intrinsics`` is given), all made."""
    return start_outputs(rgb, pred, preset, settings, wanted, intrinsics).wait()


def start_outputs(rgb: np.ndarray, pred: Prediction, preset: Preset, settings: OutputSettings,
                  wanted: set[str], intrinsics: Intrinsics | None = None) -> FrameOutputs:
    """The wanted outputs of a frame: the views made for people (colour images, overlay)
    started on the worker threads, then what navigation reads (labels, confidence, the point
    cloud) made here. The node publishes in ``PUBLISH_ORDER``, so the navigation outputs go
    out while the views are still being made instead of after them (see the README's node
    overhead for what that changed)."""
    max_depth = effective_max_depth(preset, settings)
    depth = metric_depth(pred.depth, max_depth) if pred.depth is not None else None
    ready: dict[str, np.ndarray] = {}
    if "labels" in wanted:
        ready["labels"] = pred.labels
    if "confidence" in wanted and pred.confidence is not None:
        ready["confidence"] = pred.confidence
    if "depth" in wanted:
        ready["depth"] = depth
    if pred.normals is not None and "normals" in wanted:
        ready["normals"] = pred.normals
    cloud = "points" in wanted and intrinsics is not None
    cloud_colors = colorize_labels(pred.labels, preset) \
        if cloud and settings.pointcloud_color == "segmentation" else None
    # the views first: the worker threads make them while this thread makes the cloud
    pending: dict[str, Future] = {}
    if wanted & {"segmentation_color", "overlay"}:
        colors = _done(cloud_colors) if cloud_colors is not None else \
            submit(colorize_labels, pred.labels, preset)
        if "segmentation_color" in wanted:
            pending["segmentation_color"] = colors
        if "overlay" in wanted:  # queued after the colours it waits for (a FIFO pool): the
            pending["overlay"] = submit(  # colours never wait for a thread held by it
                lambda: overlay(rgb, colors.result(), settings.overlay_alpha))
    if "depth_color" in wanted:
        pending["depth_color"] = submit(lambda: colorize_depth(depth, depth_range(depth, preset)))
    if pred.normals is not None and "normals_color" in wanted:
        pending["normals_color"] = submit(colorize_normals, pred.normals)
    if cloud:
        ready["points"] = point_cloud(
            depth, intrinsics, rgb if cloud_colors is None else cloud_colors, pred.labels,
            settings.pointcloud_stride, settings.pointcloud_max_depth or max_depth,
            class_ids(preset, settings.pointcloud_exclude_classes), settings.pointcloud_organized)
    return FrameOutputs(ready, pending)


def _done(value: np.ndarray) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class FrameOutputs(Mapping):
    """One frame's output arrays by name, in ``PUBLISH_ORDER``; the views may still be being
    made on the worker threads, and reading one waits for it. A plain mapping otherwise, so
    the bag tool, the evaluation and the node read it as they read the CUDA engines' dicts."""

    def __init__(self, ready: dict[str, np.ndarray], pending: dict[str, Future]) -> None:
        self._arrays = dict(ready)
        self._pending = dict(pending)
        self._names = [name for name in PUBLISH_ORDER if name in ready or name in pending]

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._pending:
            self._arrays[name] = self._pending.pop(name).result()
        return self._arrays[name]

    def __contains__(self, name: object) -> bool:  # without waiting (Mapping's would)
        return name in self._arrays or name in self._pending

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def wait(self) -> dict[str, np.ndarray]:
        """Every output, made."""
        return {name: self[name] for name in self}
