"""The compiled labels against the release's own computation: all class planes resized with
one ``cv2.resize(..., INTER_CUBIC)`` call, then the argmax."""

import cv2
import numpy as np
import pytest
from conftest import import_or_skip

resized_argmax = import_or_skip("hydranet_ros.resized_argmax",
                                "the compiled labels need numba (pip install numba)")


def release_resize(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) -> (H, W, C): the notebook's multi-channel resize (OpenCV's generic code)."""
    return cv2.resize(np.ascontiguousarray(logits.transpose(1, 2, 0)), size[::-1],
                      interpolation=cv2.INTER_CUBIC).reshape(*size, -1)


def compiled(logits: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.empty(size, np.uint8 if logits.shape[0] <= 256 else np.uint16)
    best = np.empty(size, np.float32)
    half = size[0] // 2  # two bands, as two threads make them
    resized_argmax.argmax_rows(logits, size, 0, half, labels, best)
    resized_argmax.argmax_rows(logits, size, half, size[0], labels, best)
    return labels, best


@pytest.mark.parametrize("classes, source, size, sliced", [
    (40, (120, 160), (480, 640), 0.9),  # the network's 1/4 outputs back to 640x480
    (40, (30, 40), (120, 160), 0.9),
    (6, (93, 307), (370, 1226), 0.9),  # KITTI: not a whole multiple, the weights drift
    (40, (30, 40), (77, 101), 0.5),  # 2.5x: one rank in two breaks into short runs
    (40, (12, 16), (36, 48), 0.0),  # too narrow for runs: every column by look-up
    (40, (40, 50), (20, 30), 0.0),  # shrinking
    (8, (12, 16), (12, 16), 0.0),  # same size
])
def test_labels_and_scores_equal_the_release_bit_for_bit(classes, source, size, sliced):
    rng = np.random.default_rng(classes + size[1])
    logits = (rng.normal(size=(classes, *source)) * rng.uniform(0.1, 10)).astype(np.float32)
    logits[classes // 2] = logits[0]  # an exact tie everywhere: the first class must win
    runs = resized_argmax.column_layout(source[1], size[1])[2]
    # the share of the columns made from slices (the fast path)
    assert (runs[:, 1].sum() >= sliced * size[1]) if sliced else len(runs) == 0
    labels, best = compiled(logits, size)
    resized = release_resize(logits, size)
    assert np.array_equal(labels, resized.argmax(axis=2))
    assert np.array_equal(best, resized.max(axis=2))
    assert not (labels == classes // 2).any()


def test_more_than_256_classes_get_16_bit_ids():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(300, 8, 10)).astype(np.float32)
    labels, _ = compiled(logits, (32, 40))
    resized = np.concatenate([release_resize(logits[i:i + 100], (32, 40))
                              for i in range(0, 300, 100)], axis=2)
    assert labels.dtype == np.uint16 and labels.max() > 255
    assert np.array_equal(labels, resized.argmax(axis=2))


def test_cubic_weights_sum_to_one_and_indices_stay_inside():
    for n_src, n_dst in [(160, 640), (307, 1226), (50, 20), (7, 7)]:
        index, weights = resized_argmax.cubic_table(n_src, n_dst)
        assert index.min() >= 0 and index.max() <= n_src - 1
        assert np.allclose(weights.sum(axis=1), 1.0, atol=1e-6)


def test_non_finite_scores_never_win_and_a_broken_first_class_stays():
    """NaN and infinite scores, spread by the resize as OpenCV spreads them: the labels follow
    the running maximum's rule (class 0 first; a later class wins only where its score is
    strictly greater), so a NaN score never wins and a NaN first score is never beaten; the
    compiled update (numba's max, a select) must keep that rule exactly."""
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(12, 30, 40)).astype(np.float32)
    logits[0, 3:5, 4:9] = np.nan
    logits[5, 20, 10:20] = np.nan
    logits[7, 12, 30] = np.inf
    logits[8, 25:27, 2] = -np.inf
    size = (120, 160)
    labels, best = compiled(logits, size)
    resized = release_resize(logits, size)
    expected_best, expected = resized[..., 0].copy(), np.zeros(size, np.int64)
    for c in range(1, logits.shape[0]):
        greater = resized[..., c] > expected_best
        expected[greater], expected_best[greater] = c, resized[..., c][greater]
    assert np.isnan(resized).any(axis=2).sum() > 100  # the resize did spread the NaNs
    assert np.array_equal(labels, expected)
    assert np.array_equal(best, expected_best, equal_nan=True)
