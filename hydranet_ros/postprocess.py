"""From the network's raw 1/4-resolution outputs to full-resolution, metric, per-pixel results.

Follows the release's notebooks step for step so that results agree to the pixel: every raw
map is resized with bicubic interpolation to the image size *before* anything else (labels
are the argmax of resized logits, never resized ids), depth is ``abs()`` in metres, normals
are unit-normalised. The labels come from ``resized_argmax``, which repeats OpenCV's bicubic
arithmetic row by row (the release's labels bit for bit, several times faster than resizing
every class plane); depth and normals are resized with OpenCV as the release does.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import cv2
import numpy as np

from . import message_room
from .workers import WORKERS, submit

try:  # compiled row-by-row labels and unit normals (numba); without it, OpenCV plane by plane
    from . import resized_argmax, unit_normals
    RESIZED_ARGMAX_MISSING = ""
except Exception as exc:  # noqa: BLE001  not installed, or not built for this numpy
    resized_argmax = unit_normals = None
    RESIZED_ARGMAX_MISSING = f"{type(exc).__name__}: {exc}"

T = TypeVar("T")

#: What a prediction holds by default; ``confidence`` is made only when asked for.
PARTS = ("labels", "depth", "normals")
CONFIDENCE = "confidence"
#: Below this many classes one thread is faster than splitting the work (OpenCV path).
PARALLEL_MIN_CLASSES = 12
#: Below this many class scores (classes x output pixels) one thread makes the labels faster
#: than several (the compiled path; 2 M is about 0.3 ms of work).
PARALLEL_MIN_SCORES = 2_000_000
#: What a frame's normals cost in class planes of the labels, to share the work evenly
#: between threads: a plane is one class through the compiled kernel (640x480: 0.1 ms; the
#: normals, resized and made unit vectors in one pass, 0.8-0.9 ms; 14 while they took 1.3-1.9
#: ms), or one OpenCV resize and running-maximum step (0.21 ms) without it. (Costs of 19 and
#: 2.5 then, and of 2 to 9 now, from timings beside the other thread, were no faster or slower
#: beyond this machine's noise in interleaved A/Bs.)
NORMALS_COST = 7.0
NORMALS_COST_OPENCV = 8.0
#: The depth's cost in the same units (one bicubic resize and abs: 0.15 ms), and in OpenCV
#: planes (as the compiled cost converted by the normals' ratio gave it while that was 8/14).
DEPTH_COST = 1.5
DEPTH_COST_OPENCV = 0.86
#: What the confidence adds to a class plane of the compiled labels, in the same units (the
#: softmax's exponential of every resized score: ``resized_argmax._row_confidence``).
CONFIDENCE_COST = 1.5


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

    Same ids as the release (resize all planes, then argmax; the first maximum wins), made
    row by row by ``resized_argmax`` (bands of rows on parallel workers), which repeats
    OpenCV's arithmetic without writing any full-resolution score plane. Without numba: a
    running maximum over OpenCV-resized class planes, runs of classes on parallel workers
    merged in class order (a later run wins only where it is strictly greater).
    """
    return _labels_and_best(logits, size, want_best=False).labels


def prepare(num_classes: int, normals: bool = True) -> None:
    """Compile the labels' code (and the confidence's, and where the model has them the
    normals') now rather than on the first frame (numba, on this project's 2-core machine: 7
    to 8 s the first time after installing, 0.6 s from its cache on disk)."""
    labels_from_logits(np.zeros((num_classes, 4, 4), np.float32), (16, 16))
    if normals:
        normals_from_raw(np.ones((3, 4, 4), np.float32), (16, 16))


def _class_runs(num_classes: int, beside: float = 0.0) -> list[tuple[int, int]]:
    """Runs of classes, one per thread (one run below PARALLEL_MIN_CLASSES), such that the
    threads finish together when the last one also does ``beside`` class planes' worth of
    other work; that run may be empty."""
    runs = WORKERS if num_classes >= PARALLEL_MIN_CLASSES else 1
    return _split(num_classes, beside, runs)


def _row_bands(size: tuple[int, int], classes: int, beside: float = 0.0,
               plane: float = 1.0) -> list[tuple[int, int]]:
    """Bands of output rows, one per thread (one band for small work), such that the threads
    finish together when the last one also does ``beside`` class planes' worth of other work,
    a class plane of this work costing ``plane`` of them; that band may be empty."""
    height, width = size
    runs = WORKERS if classes * height * width >= PARALLEL_MIN_SCORES else 1
    return _split(height, height * beside / (classes * plane), runs)


def _split(units: int, beside: float, runs: int) -> list[tuple[int, int]]:
    """``runs`` consecutive shares of ``units`` (classes or rows), the last one smaller by
    ``beside`` units' worth of other work (possibly empty)."""
    share = (units + beside) / runs
    bounds = [min(units, round(share * k)) for k in range(runs)] + [units]
    return list(zip(bounds[:-1], bounds[1:]))


def _share_out(shares: list[tuple[int, int]], work: Callable[[int, int], T],
               beside: Callable[[], object] | None = None) -> tuple[list[T | None], object]:
    """``work(start, stop)`` for each share (None for an empty one), the first in this thread
    and the others on the workers, the last one's thread then doing ``beside``; the results
    in share order, and beside's."""
    def run(start: int, stop: int) -> T | None:
        return work(start, stop) if stop > start else None
    first, *others = shares
    later = [submit(run, *share) for share in others[:-1]]

    def last_then_beside() -> tuple[T | None, object]:
        return (run(*others[-1]) if others else None), (beside() if beside is not None else None)
    tail = submit(last_then_beside) if others or beside is not None else None
    results = [run(*first)] + [future.result() for future in later]
    last, extra = tail.result() if tail is not None else (None, None)
    return results + ([last] if others else []), extra


@dataclass
class _Scored:
    """What one pass over a frame's class scores made: the ids and, where asked for, the
    winning scores and the confidence; and the result of the work done beside it."""
    labels: np.ndarray
    best: np.ndarray | None
    confidence: np.ndarray | None
    beside: object


def _labels_and_best(logits: np.ndarray, size: tuple[int, int],
                     beside: Callable[[], object] | None = None, beside_cost: float = 0.0,
                     want_best: bool = True, want_confidence: bool = False) -> _Scored:
    """The ids, (``want_best``) the winning resized score and (``want_confidence``) the
    confidence of every pixel, and the result of ``beside`` (other work of the frame, worth
    ``beside_cost`` class planes of the path that runs: ``_beside_cost``), which the thread
    of the last share does after its share.
    Compiled, the confidence is made with the labels, row by row; without numba, in a second
    pass over OpenCV's class planes."""
    if resized_argmax is None:
        _warn_once_without_numba()
        labels, best, extra = _labels_and_best_opencv(logits, size, beside, beside_cost)
        confidence = _confidence_opencv(logits, size, best) if want_confidence else None
        return _Scored(labels, best if want_best else None, confidence, extra)
    scores = np.ascontiguousarray(logits, dtype=np.float32)
    # labels and confidence are published: with room for their messages
    labels = message_room.empty(size, label_dtype(scores.shape[0]))
    best = np.empty(size if want_best else (0, 0), dtype=np.float32)
    confidence = message_room.empty(size if want_confidence else (0, 0), np.uint8)

    def rows(y0: int, y1: int) -> None:
        resized_argmax.argmax_rows(scores, size, y0, y1, labels, best, confidence)
    plane = 1.0 + (CONFIDENCE_COST if want_confidence else 0.0)
    _, extra = _share_out(_row_bands(size, scores.shape[0], beside_cost, plane), rows, beside)
    return _Scored(labels, best if want_best else None,
                   confidence if want_confidence else None, extra)


_warned_without_numba = False


def _warn_once_without_numba() -> None:
    global _warned_without_numba
    if not _warned_without_numba:
        _warned_without_numba = True
        warnings.warn(f"hydranet_ros: numba is not usable ({RESIZED_ARGMAX_MISSING}); labels are "
                      "made with OpenCV plane by plane, 2-3x slower (pip install numba)",
                      RuntimeWarning, stacklevel=3)


def _labels_and_best_opencv(logits: np.ndarray, size: tuple[int, int],
                            beside: Callable[[], T] | None = None,
                            beside_cost: float = 0.0) -> tuple[np.ndarray, np.ndarray, T | None]:
    """``_labels_and_best`` without numba: OpenCV resizes each class plane, runs of classes
    are shared between threads and merged in class order."""
    def run(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        return _running_argmax(logits, start, stop, size)
    results, extra = _share_out(_class_runs(logits.shape[0], beside_cost), run, beside)
    (best, labels), *runs = results  # the first run is never empty
    greater = np.empty(size, dtype=np.uint8)
    for run_best, run_labels in filter(None, runs):
        cv2.compare(run_best, best, cv2.CMP_GT, dst=greater)
        cv2.max(best, run_best, dst=best)
        cv2.copyTo(run_labels, greater, dst=labels)
    return labels, best, extra


def labels_and_confidence(logits: np.ndarray,
                          size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The labels, and (H, W) uint8 confidence: 255 x the softmax probability of the chosen
    class over the bicubically resized scores, i.e. 255 / sum_c exp(score_c - best), rounded.
    The exponentials are at most 1, so nothing overflows; a pixel whose scores are not finite
    gets 0."""
    scored = _labels_and_best(logits, size, want_best=False, want_confidence=True)
    return scored.labels, scored.confidence


def _confidence_opencv(logits: np.ndarray, size: tuple[int, int],
                       best: np.ndarray) -> np.ndarray:
    """The confidence without numba: a second pass over OpenCV's class planes after the
    argmax (resizing again is cheaper than keeping C full-resolution planes), runs of
    classes on the workers."""
    spans = _class_runs(logits.shape[0])
    later = [submit(_exp_sum, logits, first, stop, size, best) for first, stop in spans[1:]]
    total = _exp_sum(logits, *spans[0], size, best)
    for future in later:
        total += future.result()
    with np.errstate(divide="ignore", invalid="ignore"):
        probability = 255.0 / total
    probability[~np.isfinite(probability)] = 0.0
    return np.rint(np.clip(probability, 0.0, 255.0)).astype(np.uint8)


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
    (squares summed x, y, z in order, correctly rounded sqrt and division), in one compiled
    pass (``unit_normals``) or without numba plane by plane with OpenCV; a zero vector gives
    NaN, as in the release (OpenCV 5's division follows IEEE 754 there; older OpenCV gave 0).
    """
    resized = resize_map(np.ascontiguousarray(normals.transpose(1, 2, 0)), size)
    if unit_normals is not None:
        return unit_normals.unit_normals(resized)
    # Plain copies of the channels: several times faster than cv2.split here.
    x, y, z = (np.ascontiguousarray(resized[:, :, i], dtype=np.float32) for i in range(3))
    norm = cv2.sqrt(cv2.add(cv2.add(cv2.multiply(x, x), cv2.multiply(y, y)), cv2.multiply(z, z)))
    return cv2.merge([cv2.divide(x, norm), cv2.divide(y, norm), cv2.divide(z, norm)],
                     dst=message_room.empty(resized.shape[:2] + (3,), np.float32))


def _beside_cost(normals: bool, depth: bool) -> float:
    """What making the normals and the depth beside the labels costs, in class planes of the
    path that makes the labels (compiled, or OpenCV without numba)."""
    if resized_argmax is None:
        return (NORMALS_COST_OPENCV if normals else 0.0) + (DEPTH_COST_OPENCV if depth else 0.0)
    return (NORMALS_COST if normals else 0.0) + (DEPTH_COST if depth else 0.0)


def postprocess(outputs: tuple[np.ndarray, ...], size: tuple[int, int],
                parts: set[str] | frozenset[str] = frozenset(PARTS)) -> Prediction:
    """Raw outputs of one image (no batch axis) -> full-resolution Prediction of ``parts``.

    The labels are shared between this thread and the workers, and the thread of the last
    share also makes the normals and the depth, with less of the labels to make up for them,
    so that all finish together (on 2 cores, 40 classes and 3 tasks at 640x480: 3.6-3.9 ms,
    6.9 ms before the labels were compiled).
    """
    wanted = "normals" in parts and len(outputs) > 2

    def others() -> tuple[np.ndarray | None, np.ndarray | None]:
        return (normals_from_raw(outputs[2], size) if wanted else None,
                depth_from_raw(outputs[1], size) if "depth" in parts else None)
    confident = CONFIDENCE in parts
    labels = confidence = None
    if "labels" in parts or confident:
        cost = _beside_cost(wanted, "depth" in parts)
        scored = _labels_and_best(outputs[0], size, others, cost, False, confident)
        labels, confidence, (normals_map, depth) = scored.labels, scored.confidence, scored.beside
    else:
        normals_map, depth = others()
    return Prediction(labels=labels if "labels" in parts else None, depth=depth,
                      normals=normals_map, confidence=confidence)
