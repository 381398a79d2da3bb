"""The labels' post-processing alone: 40 classes of random scores at the network's 1/4
resolution back to the image, compiled (``resized_argmax``, the default) against OpenCV plane
by plane (the fall-back without numba), in turns, on the package's worker threads; then the
labels with their confidence (the softmax of the resized scores): compiled with the labels,
row by row (the default), after the compiled labels in a second pass over OpenCV's class
planes (the code before the confidence was compiled), and all with OpenCV (without numba).

    .venv/bin/python benchmarks/labels.py [--classes 40 --repeat 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from hydranet_ros import postprocess
from hydranet_ros.memory import keep_freed_memory

#: (network output, image): 640x480, KITTI-sized frames (not a whole-number scale), 1280x720
SIZES = [((120, 160), (480, 640)), ((93, 307), (370, 1226)), ((180, 320), (720, 1280))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=40)
    args = parser.parse_args()
    keep_freed_memory()
    labels = {"compiled": postprocess.labels_from_logits,
              "opencv": postprocess._labels_and_best_opencv}
    confidence = {"compiled": postprocess.labels_and_confidence,
                  "compiled labels, opencv confidence": compiled_labels_opencv_confidence,
                  "opencv": opencv_labels_and_confidence}
    print(f"{args.classes} classes, median of {args.repeat} (ms), "
          f"{postprocess.WORKERS} worker threads")
    for title, ways in (("labels", labels), ("labels and confidence", confidence)):
        print(title)
        for source, size in SIZES:
            scores = np.random.default_rng(0).normal(size=(args.classes, *source))
            print(f"  {source[1]}x{source[0]} -> {size[1]}x{size[0]}: " + ", ".join(
                f"{name} {ms:.2f}" for name, ms in in_turns(ways, scores.astype(np.float32),
                                                            size, args.repeat).items()))


def in_turns(ways: dict, scores: np.ndarray, size: tuple[int, int], repeat: int) -> dict:
    """Median ms of each way, called in turns."""
    times = {name: [] for name in ways}
    for way in ways.values():
        way(scores, size)  # compile, warm up
    for _ in range(repeat):
        for name, way in ways.items():
            started = time.perf_counter()
            way(scores, size)
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def compiled_labels_opencv_confidence(scores: np.ndarray, size: tuple[int, int]):
    best = postprocess._labels_and_best(scores, size).best
    return postprocess._confidence_opencv(scores, size, best)


def opencv_labels_and_confidence(scores: np.ndarray, size: tuple[int, int]):
    _, best, _ = postprocess._labels_and_best_opencv(scores, size)
    return postprocess._confidence_opencv(scores, size, best)


if __name__ == "__main__":
    main()
