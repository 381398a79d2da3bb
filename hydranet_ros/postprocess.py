"""From the network's raw 1/4-resolution outputs to full-resolution, metric, per-pixel results.

Follows the release's notebooks step for step so that results agree to the pixel: every raw
map is resized with bicubic interpolation to the image size *before* anything else (labels
are the argmax of resized logits, never resized ids), depth is ``abs()`` in metres, normals
are unit-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_RESIZE_CHANNELS = 128


@dataclass
class Prediction:
    labels: np.ndarray  # (H, W) uint8, or uint16 for more than 256 classes
    depth: np.ndarray  # (H, W) float32 metres
    normals: np.ndarray | None  # (H, W, 3) float32 unit vectors (NaN where undefined)


def label_dtype(num_classes: int) -> type:
    return np.uint8 if num_classes <= 256 else np.uint16


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of an (h, w[, c]) float map to ``size`` = (height, width)."""
    height, width = size
    if values.shape[:2] == (height, width):
        return values
    if values.ndim == 3 and values.shape[2] > MAX_RESIZE_CHANNELS:  # OpenCV's channel limit
        return np.concatenate([resize_map(values[:, :, i:i + MAX_RESIZE_CHANNELS], size)
                               .reshape(height, width, -1)
                               for i in range(0, values.shape[2], MAX_RESIZE_CHANNELS)], axis=2)
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_CUBIC)


def labels_from_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) class scores -> (H, W) ids: argmax after the bicubic resize, as released."""
    num_classes = logits.shape[0]
    resized = resize_map(np.ascontiguousarray(logits.transpose(1, 2, 0)), size)
    # reshape: cv2 drops the channel axis of a single-channel map
    return resized.reshape(*size, num_classes).argmax(axis=2).astype(label_dtype(num_classes))


def depth_from_raw(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(1, h, w) raw depth -> (H, W) metres."""
    return np.abs(resize_map(depth[0], size)).astype(np.float32, copy=False)


def normals_from_raw(normals: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(3, h, w) raw normals -> (H, W, 3) unit vectors in the camera's optical frame."""
    resized = resize_map(np.ascontiguousarray(normals.transpose(1, 2, 0)), size)
    norm = np.linalg.norm(resized, axis=2, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = resized / norm
    return unit.astype(np.float32, copy=False)


def postprocess(outputs: tuple[np.ndarray, ...], size: tuple[int, int]) -> Prediction:
    """Raw outputs of one image (no batch axis) -> full-resolution Prediction."""
    return Prediction(
        labels=labels_from_logits(outputs[0], size),
        depth=depth_from_raw(outputs[1], size),
        normals=normals_from_raw(outputs[2], size) if len(outputs) > 2 else None,
    )
