"""From the network's raw 1/4-resolution outputs to full-resolution, metric, per-pixel results.

Follows the release's notebooks step for step so that results agree to the pixel: every raw
map is resized with bicubic interpolation to the image size *before* anything else (labels
are the argmax of resized logits, never resized ids), depth is ``abs()`` in metres, normals
are unit-normalised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from .workers import WORKERS, submit

T = TypeVar("T")

#: What a prediction holds by default; ``confidence`` is made only when asked for.
PARTS = ("labels", "depth", "normals")
CONFIDENCE = "confidence"
#: Below this many classes one thread is faster than splitting the work.
PARALLEL_MIN_CLASSES = 12
#: What a frame's normals cost in class planes of the labels (a plane: one bicubic resize and
#: a running-maximum step; measured at 640x480: normals 1.6-1.9 ms, a class plane 0.21 ms),
#: to share the work evenly between threads.
NORMALS_COST = 8.0


@dataclass
class Prediction:
    """Full-resolution results; a part that was not asked for (or has no head) is None."""
    labels: np.ndarray | None  # (H, W) uint8, or uint16 for more than 256 classes
    depth: np.ndarray | None  # (H, W) float32 metres
    normals: np.ndarray | None  # (H, W, 3) float32 unit vectors
    #: (H, W) uint8: 255 x the softmax probability of the chosen class
    confidence: np.ndarray | None = None


def label_dtype(num_classes: int) -> type:
    return np.uint8 if num_classes <= 256 else np.uint16


def resize_map(values: np.ndarray, size: tuple[int, int],
               out: np.ndarray | None = None) -> np.ndarray:
    """Bicubic resize of an (h, w[, c]) float map to ``size`` = (height, width)."""
    height, width = size
    if values.shape[:2] == (height, width):
        if out is None:
            return values
        out[...] = values
        return out
    return cv2.resize(values, (width, height), dst=out, interpolation=cv2.INTER_CUBIC)


def labels_from_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) class scores -> (H, W) ids: the argmax of the bicubically resized scores.

    Same ids as the release (resize all planes, then argmax; the first maximum wins), but
    computed as a running maximum over class planes: a fraction of the memory traffic of an
    (H, W, C) array, which matters at 40 classes. Runs of classes go to parallel workers and
    are merged in class order, where a later run wins only where it is strictly greater.
    """
    return _labels_and_best(logits, size)[0]


def _class_runs(num_classes: int, beside: float = 0.0) -> list[tuple[int, int]]:
    """Runs of classes, one per thread (one run below PARALLEL_MIN_CLASSES), such that the
    threads finish together when the last one also does ``beside`` class planes' worth of
    other work; that run may be empty."""
    runs = WORKERS if num_classes >= PARALLEL_MIN_CLASSES else 1
    share = (num_classes + beside) / runs
    bounds = [min(num_classes, round(share * k)) for k in range(runs)] + [num_classes]
    return list(zip(bounds[:-1], bounds[1:]))


def _labels_and_best(logits: np.ndarray, size: tuple[int, int],
                     beside: Callable[[], T] | None = None,
                     beside_cost: float = 0.0) -> tuple[np.ndarray, np.ndarray, T | None]:
    """The ids and the winning (resized) score of every pixel, and the result of ``beside``
    (other work of the frame, worth ``beside_cost`` class planes), which the thread of the
    last run of classes does after its run."""
    first, *others = _class_runs(logits.shape[0], beside_cost)
    others = [(start, stop) for start, stop in others if stop > start]
    later = [submit(_running_argmax, logits, start, stop, size) for start, stop in others[:-1]]

    def last_then_beside() -> tuple[tuple[np.ndarray, np.ndarray] | None, T | None]:
        run = _running_argmax(logits, *others[-1], size) if others else None
        return run, beside() if beside is not None else None
    tail = submit(last_then_beside) if others or beside is not None else None
    best, labels = _running_argmax(logits, *first, size)
    runs = [future.result() for future in later]
    run, extra = tail.result() if tail is not None else (None, None)
    greater = np.empty(size, dtype=np.uint8)
    for run_best, run_labels in runs + ([run] if run is not None else []):
        cv2.compare(run_best, best, cv2.CMP_GT, dst=greater)
        cv2.max(best, run_best, dst=best)
        cv2.copyTo(run_labels, greater, dst=labels)
    return labels, best, extra


def labels_and_confidence(logits: np.ndarray,
                          size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The labels, and (H, W) uint8 confidence: 255 x the softmax probability of the chosen
    class over the bicubically resized scores, i.e. 255 / sum_c exp(score_c - best).

    A second pass over the class planes after the argmax (resizing again is cheaper than
    keeping C full-resolution planes); the exponentials are at most 1, so nothing overflows.
    A pixel whose scores are not finite gets 0.
    """
    labels, best, _ = _labels_and_best(logits, size)
    spans = _class_runs(logits.shape[0])
    later = [submit(_exp_sum, logits, first, stop, size, best) for first, stop in spans[1:]]
    total = _exp_sum(logits, *spans[0], size, best)
    for future in later:
        total += future.result()
    with np.errstate(divide="ignore", invalid="ignore"):
        probability = 255.0 / total
    probability[~np.isfinite(probability)] = 0.0
    return labels, np.rint(np.clip(probability, 0.0, 255.0)).astype(np.uint8)


def _exp_sum(logits: np.ndarray, first: int, stop: int, size: tuple[int, int],
             best: np.ndarray) -> np.ndarray:
    """sum over classes ``first`` .. ``stop - 1`` of exp(resized score - best)."""
    total = np.zeros(size, dtype=np.float32)
    plane = np.empty(size, dtype=np.float32)
    for c in range(first, stop):
        resize_map(logits[c], size, out=plane)
        cv2.subtract(plane, best, dst=plane)
        cv2.exp(plane, dst=plane)
        cv2.add(total, plane, dst=total)
    return total


def _running_argmax(logits: np.ndarray, first: int, stop: int,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The best score and its class id among classes ``first`` .. ``stop - 1``."""
    best = np.array(resize_map(logits[first], size), dtype=np.float32)
    labels = np.full(size, first, dtype=label_dtype(logits.shape[0]))
    plane = np.empty_like(best)
    greater = np.empty(size, dtype=np.uint8)
    class_id = np.empty_like(labels)
    for c in range(first + 1, stop):
        resize_map(logits[c], size, out=plane)
        cv2.compare(plane, best, cv2.CMP_GT, dst=greater)
        cv2.max(best, plane, dst=best)
        class_id.fill(c)
        cv2.copyTo(class_id, greater, dst=labels)
    return best, labels


def depth_from_raw(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(1, h, w) raw depth -> (H, W) metres."""
    return np.abs(resize_map(depth[0], size)).astype(np.float32, copy=False)


def normals_from_raw(normals: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(3, h, w) raw normals -> (H, W, 3) unit vectors in the camera's optical frame.

    The same float32 arithmetic as the release's ``norm / np.linalg.norm(norm, axis=2)``
    (squares summed x, y, z in order, correctly rounded sqrt and division), done plane by
    plane with OpenCV; a zero vector stays zero.
    """
    resized = resize_map(np.ascontiguousarray(normals.transpose(1, 2, 0)), size)
    # Plain copies of the channels: several times faster than cv2.split here.
    x, y, z = (np.ascontiguousarray(resized[:, :, i], dtype=np.float32) for i in range(3))
    norm = cv2.sqrt(cv2.add(cv2.add(cv2.multiply(x, x), cv2.multiply(y, y)), cv2.multiply(z, z)))
    return cv2.merge([cv2.divide(x, norm), cv2.divide(y, norm), cv2.divide(z, norm)])


def postprocess(outputs: tuple[np.ndarray, ...], size: tuple[int, int],
                parts: set[str] | frozenset[str] = frozenset(PARTS)) -> Prediction:
    """Raw outputs of one image (no batch axis) -> full-resolution Prediction of ``parts``.

    The labels' class planes are shared between this thread and the workers, and the thread
    of the last share also makes the normals, with fewer classes to make up for them, so that
    all finish together (on 2 cores, 40 classes and 3 tasks at 640x480: 6.9 ms against 7.6
    with the normals as a task of their own).
    """
    def normals() -> np.ndarray:
        return normals_from_raw(outputs[2], size)
    wanted = "normals" in parts and len(outputs) > 2
    labels = confidence = normals_map = None
    if CONFIDENCE in parts:
        later = submit(normals) if wanted else None
        labels, confidence = labels_and_confidence(outputs[0], size)
        normals_map = later.result() if later is not None else None
    elif "labels" in parts:
        labels, _, normals_map = _labels_and_best(outputs[0], size, normals if wanted else None,
                                                  NORMALS_COST if wanted else 0.0)
    elif wanted:
        normals_map = normals()
    depth = depth_from_raw(outputs[1], size) if "depth" in parts else None
    return Prediction(labels=labels if "labels" in parts else None, depth=depth,
                      normals=normals_map, confidence=confidence)
