"""Colour views of predictions (for RViz, PNG files and montages), all RGB uint8."""

from __future__ import annotations

import cv2
import numpy as np

from . import message_room
from .presets import Preset

TITLE_HEIGHT = 24


def label_palette(preset: Preset, size: int = 256) -> np.ndarray:
    """(size, 3) lookup table: class colours, then the ignore colour for every other id."""
    lut = np.empty((size, 3), dtype=np.uint8)
    lut[:] = preset.ignore_color
    count = min(size, preset.num_classes)
    lut[:count] = preset.colors[:count]
    return lut


def colorize_labels(labels: np.ndarray, preset: Preset) -> np.ndarray:
    if labels.dtype == np.uint8:  # OpenCV's table lookup, several times numpy's indexing
        return cv2.LUT(cv2.merge([labels, labels, labels]), label_palette(preset)[:, None, :],
                       dst=message_room.empty(labels.shape + (3,), np.uint8))
    return label_palette(preset, 65536)[labels]


def depth_range(depth: np.ndarray, preset: Preset) -> tuple[float, float]:
    """The preset's display range, or this image's 1st-99th percentile for unknown models."""
    if preset.depth_range is not None:
        return preset.depth_range
    valid = depth[np.isfinite(depth)]
    if valid.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(valid, [1, 99])
    return float(low), float(max(high, low + 1e-6))


#: OpenCV's plasma colour map as an RGB lookup table (its own output is BGR).
PLASMA_RGB = np.ascontiguousarray(
    cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_PLASMA)[:, :, ::-1])


def colorize_depth(depth: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Plasma colour map (as the release's figures) over ``value_range``; invalid is black."""
    low, high = value_range
    scale = 255.0 / (high - low)
    # fmax maps NaN to ``low``; convertScaleAbs rounds and saturates at 255 (clips the far end)
    indices = cv2.convertScaleAbs(np.fmax(depth, np.float32(low)), alpha=scale, beta=-low * scale)
    colored = cv2.applyColorMap(indices, PLASMA_RGB)
    black = message_room.empty(colored.shape, np.uint8)
    black.fill(0)  # where the mask is 0, OpenCV leaves its output as it was
    return cv2.bitwise_and(colored, colored, dst=black, mask=np.isfinite(depth).view(np.uint8))


def colorize_normals(normals: np.ndarray) -> np.ndarray:
    """The release's encoding: R = (x+1)/2, G = (y+1)/2, B = (1-z)/2, times 255, truncated to
    uint8; black where a normal is NaN (a zero vector normalised: no direction).

    In float32, in place: negating z first makes one expression serve all channels
    (1 - z == 1 + (-z) exactly), and (v / 2) * 255 == v * 127.5 exactly (halving is exact),
    so the bytes are those of the formula as written, in three passes fewer. z is negated in
    a copy rather than by multiplying with (1, 1, -1): numpy broadcasts a 3-element operand
    element by element (2.3 against 0.25 ms at 640x480).
    """
    scaled = np.array(normals, dtype=np.float32)
    np.negative(scaled[..., 2], out=scaled[..., 2])
    np.add(scaled, np.float32(1.0), out=scaled)
    np.multiply(scaled, np.float32(127.5), out=scaled)
    np.fmax(scaled, np.float32(0.0), out=scaled)  # NaN -> 0
    colors = message_room.empty(scaled.shape, np.uint8)
    np.copyto(colors, scaled, casting="unsafe")  # truncated, as astype
    return colors


def _titled(title: str, rgb: np.ndarray) -> np.ndarray:
    bar = np.full((TITLE_HEIGHT, rgb.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(bar, title, (6, TITLE_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.vstack([bar, rgb])


def montage(panels: list[tuple[str, np.ndarray]], columns: int | None = None) -> np.ndarray:
    """Titled panels of equal size side by side (``columns`` per row, default all in one row)."""
    titled = [_titled(title, rgb) for title, rgb in panels]
    columns = columns or len(titled)
    blank = np.zeros_like(titled[0])
    rows = []
    for start in range(0, len(titled), columns):
        row = titled[start:start + columns]
        row += [blank] * (columns - len(row))
        rows.append(np.hstack(row))
    return np.vstack(rows)
