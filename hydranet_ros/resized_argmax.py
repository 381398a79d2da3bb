"""The labels of a frame, fast and exact: the argmax over classes of the bicubically resized
class scores, made row by row without ever writing a full-resolution score plane.

The release resizes all C score planes with one ``cv2.resize(..., INTER_CUBIC)`` call and
takes the argmax. Done that way (or plane by plane) most of the time goes to writing and
re-reading C full-resolution planes. Here OpenCV's own arithmetic is repeated operation for
operation in float32 (its cubic coefficients with A = -0.75 from each pixel's sub-pixel
offset, source indices clamped at the borders, a horizontal pass summed left to right, then a
vertical pass summed as OpenCV's SIMD code does, ``S0*b0 + (S1*b1 + (S2*b2 + S3*b3))``,
without fused multiply-adds), and each output row's scores are compared as they are made.
The labels equal the release's bit for bit wherever OpenCV sums a row with SIMD (all but at
most the last few columns of a row whose width times C is not a multiple of 8).

Where asked, each row's confidence (255 x the softmax probability of the winning class) is
made from the same row's scores right after its argmax, so that the class planes are not
resized a second time.

Compiled with numba; ``postprocess`` falls back to OpenCV plane by plane without it.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

#: OpenCV's bicubic kernel parameter.
CUBIC_A = np.float32(-0.75)
#: Shorter stretches of columns are made by table look-up.
MIN_RUN = 16


def compiled(function, fastmath: bool | set[str] = False, error_model: str = "python"):
    """Compiled without the GIL (the workers run bands of rows in parallel), cached on disk
    where numba finds a writable place for it (else compiled once per process, ~2 s).
    ``error_model="numpy"``: a float division by zero gives inf or NaN as IEEE 754 says,
    without the check for Python's ZeroDivisionError, which keeps LLVM from vectorising."""
    options = dict(nogil=True, boundscheck=False, fastmath=fastmath, error_model=error_model)
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # numba: "no locator available" (no writable cache location)
        return numba.njit(**options)(function)


def _compiled_with_fma(function):
    """``compiled``, with fused multiply-adds allowed: for the confidence, which need not
    repeat OpenCV's arithmetic (the labels' code keeps plain multiplies and adds)."""
    return compiled(function, fastmath={"contract"})


@lru_cache(maxsize=32)
def cubic_table(n_src: int, n_dst: int) -> tuple[np.ndarray, np.ndarray]:
    """For each output index: the 4 source indices (clamped at the borders) and the 4 float32
    weights OpenCV's INTER_CUBIC uses along one axis. Where the size does not change, OpenCV
    copies: every tap is the pixel itself, weighted (0, 1, 0, 0), so that a broken (NaN)
    score stays where it is instead of spreading to its neighbours."""
    if n_src == n_dst:
        weights = np.tile(np.array([0, 1, 0, 0], np.float32), (n_dst, 1))
        return np.repeat(np.arange(n_dst, dtype=np.int64)[:, None], 4, axis=1), weights
    scale = 1.0 / (n_dst / n_src)  # as OpenCV computes it, in double
    f32 = np.float32
    position = ((np.arange(n_dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(f32)
    first = np.floor(position).astype(np.int64)
    x = (position - first.astype(f32)).astype(f32)
    a, one = CUBIC_A, f32(1)
    w0 = ((a * (x + one) - f32(5) * a) * (x + one) + f32(8) * a) * (x + one) - f32(4) * a
    w1 = ((a + f32(2)) * x - (a + f32(3))) * x * x + one
    w2 = ((a + f32(2)) * (one - x) - (a + f32(3))) * (one - x) * (one - x) + one
    w3 = one - w0 - w1 - w2
    weights = np.stack([w0, w1, w2, w3], axis=1).astype(f32)
    index = np.clip(first[:, None] + np.arange(-1, 3), 0, n_src - 1)
    return index, weights


@lru_cache(maxsize=32)
def column_layout(n_src: int, n_dst: int):
    """How the horizontal pass lays out a row, so that most of it vectorises.

    When enlarging, each source pixel is the first tap of a few consecutive output columns.
    Columns are stored by their rank among those (all first-ranked columns in image order,
    then the second-ranked, ...): along a rank the source index rises by one per column, so
    the taps are plain slices (for 160 -> 640 these are the 4 phases, whose weights are
    constant; for 307 -> 1226 the weights drift, and a rank that some pixel lacks breaks into
    a few runs). Returns (index, by_tap, runs, lone, column): the source indices (W, 4) and
    the weights (4, W, so that a run's weights are slices) in stored order, runs of (first
    stored column, length, first source index, whether its weights are constant), the stored
    columns made by table look-up (clamped at a border, or in no run of MIN_RUN), and the
    image column of each stored column."""
    index, weights = cubic_table(n_src, n_dst)
    x = np.arange(n_dst, dtype=np.int64)
    start = index[:, 0]
    rank = x - np.searchsorted(start, start, side="left")  # start is non-decreasing
    order = np.lexsort((x, rank))  # by rank, then image order
    index, weights, rank = index[order], weights[order], rank[order]
    inside = index[:, 3] - index[:, 0] == 3  # no tap clamped at a border
    steady = inside[1:] & inside[:-1] & (rank[1:] == rank[:-1]) & (index[1:, 0] == index[:-1, 0] + 1)
    runs, lone, i = [], [], 0
    while i < n_dst:
        j = i
        while j < n_dst - 1 and steady[j]:
            j += 1
        if j - i + 1 >= MIN_RUN and inside[i]:
            constant = bool((weights[i:j + 1] == weights[i]).all())
            runs.append((i, j - i + 1, index[i, 0], constant))
        else:
            lone.extend(range(i, j + 1))
        i = j + 1
    return (index, np.ascontiguousarray(weights.T), np.array(runs, np.int64).reshape(-1, 4),
            np.array(lone, np.int64), order)


@compiled
def _tap(src, index, by_tap, i):
    """Stored column i of a source row resized along x, by table look-up."""
    return ((src[index[i, 0]] * by_tap[0, i] + src[index[i, 1]] * by_tap[1, i])
            + src[index[i, 2]] * by_tap[2, i]) + src[index[i, 3]] * by_tap[3, i]


@compiled
def _horizontal(scores, r0, r1, index, by_tap, runs, lone, out):
    """out[c, r - r0, i]: source row r of class c resized along x, at stored column i."""
    for c in range(scores.shape[0]):
        for r in range(r0, r1):
            src = scores[c, r]
            dst = out[c, r - r0]
            if runs.shape[0] == 0:  # every column by look-up, without the list's indirection
                for i in range(dst.shape[0]):
                    dst[i] = _tap(src, index, by_tap, i)
                continue
            for i in lone:
                dst[i] = _tap(src, index, by_tap, i)
            for q in range(runs.shape[0]):
                first, length, start = runs[q, 0], runs[q, 1], runs[q, 2]
                part = src[start:start + length + 3]  # slices: indices known non-negative,
                run = dst[first:first + length]  # so the loop vectorises
                if runs[q, 3]:  # one set of weights (a whole-number scale): 0.6 ms against 1.05
                    a0, a1 = by_tap[0, first], by_tap[1, first]  # at 640x480, 40 classes
                    a2, a3 = by_tap[2, first], by_tap[3, first]
                    for j in range(length):
                        run[j] = ((part[j] * a0 + part[j + 1] * a1) + part[j + 2] * a2) \
                            + part[j + 3] * a3
                    continue
                w0, w1 = by_tap[0, first:first + length], by_tap[1, first:first + length]
                w2, w3 = by_tap[2, first:first + length], by_tap[3, first:first + length]
                for j in range(length):
                    run[j] = ((part[j] * w0[j] + part[j + 1] * w1[j]) + part[j + 2] * w2[j]) \
                        + part[j + 3] * w3[j]


#: exp's argument is clamped here (exp(-87) is about 1.6e-38, a normal float32), so that the
#: power of two below stays a normal number; such a class adds nothing visible to a sum >= 1.
EXP_LOW = np.float32(-87.0)
LOG2E = np.float32(1.4426950408889634)
#: ln 2 in two parts, the first exact in a few bits, so that x - n ln 2 loses nothing.
LN2_HIGH = np.float32(0.693359375)
LN2_LOW = np.float32(-2.12194440e-4)
#: Cephes' expf polynomial for exp(r) on |r| <= ln(2) / 2 (relative error about 1e-7).
EXP_POLY = (np.float32(1.9875691500e-4), np.float32(1.3981999507e-3),
            np.float32(8.3334519073e-3), np.float32(4.1665795894e-2),
            np.float32(1.6666665459e-1), np.float32(5.0000001201e-1))
#: 2^n as float32 bits: (n + 127) << 23, made in float32 (exact) and converted once.
EXPONENT_ONE = np.float32(1 << 23)


@intrinsic
def _float_bits(typingctx, bits):
    """The float32 whose bits are the int32 ``bits`` (a bit cast, which numba has no word for;
    through memory it would cost a second loop)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))
    return types.float32(types.int32), codegen


@_compiled_with_fma
def _row_confidence(scores, top, column, total, out):
    """One output row's confidence from its resized class scores ``scores`` (C, W), each at
    most ``top``, the row's winning scores: 255 / sum over classes of exp(score - top),
    rounded to uint8; 0 where a score is not finite. ``total`` is a scratch row.

    exp is written out (Cephes' expf: n = round(x log2 e), a polynomial of x - n ln 2, times
    2^n built from its bits) because a call of the C library's stops LLVM from vectorising
    the loop.
    """
    width = top.shape[0]
    q0, q1, q2, q3, q4, q5 = EXP_POLY
    for x in range(width):
        total[x] = 0
    for c in range(scores.shape[0]):
        v = scores[c]
        for x in range(width):
            d = max(v[x] - top[x], EXP_LOW)  # NaN stays NaN: numba's max is select(b > a, b, a)
            g = d if d > EXP_LOW else EXP_LOW  # without NaN, for the power of two
            n = np.floor(g * LOG2E + np.float32(0.5))
            r = (d - n * LN2_HIGH) - n * LN2_LOW
            p = (((((q0 * r + q1) * r + q2) * r + q3) * r + q4) * r + q5) * (r * r) + r \
                + np.float32(1.0)
            total[x] += p * _float_bits(np.int32((n + np.float32(127.0)) * EXPONENT_ONE))
    for i in range(width):
        q = np.float32(255.0) / total[i]  # the winning class adds exp(0) = 1: q <= 255
        out[column[i]] = np.uint8(np.rint(q)) if q == q else np.uint8(0)


@compiled
def _vertical_argmax(rows, r0, y0, y1, index, weights, column, labels, best, confidence):
    """For output rows y0..y1-1: each class's row resized along y from ``rows`` (the
    horizontal pass of source rows r0.., in stored column order), the running maximum over
    classes in class order (a later class wins only where strictly greater, as numpy's
    argmax), written to image column ``column[i]``; ``best`` and ``confidence`` (255 x the
    softmax probability of the winning class, ``_row_confidence``) may have no rows (not
    wanted)."""
    width = rows.shape[2]
    top = np.empty(width, np.float32)
    # The running labels as 32-bit integers, the width of the scores: with the labels' own
    # uint8, LLVM did not vectorise the class loop (31.5 ms against 9 ms of one core at
    # 640x480, 40 classes, on an AMD EPYC with AVX2). And both updates are stores of a
    # select (numba's max is ``select(b > a, b, a)``; the labels only rise, as c does):
    # written ``top[x] = v if greater else top[x]``, LLVM made masked stores of them, which
    # AMD's cores run slowly (9 ms against 3.9 ms on that EPYC; same results bit for bit).
    label = np.empty(width, np.int32)
    wanted = confidence.shape[0] > 0
    scores = np.empty((rows.shape[0] if wanted else 0, width), np.float32)
    total = np.empty(width if wanted else 0, np.float32)
    for y in range(y0, y1):
        k0, k1 = index[y, 0] - r0, index[y, 1] - r0
        k2, k3 = index[y, 2] - r0, index[y, 3] - r0
        b0, b1, b2, b3 = weights[y, 0], weights[y, 1], weights[y, 2], weights[y, 3]
        s0, s1, s2, s3 = rows[0, k0], rows[0, k1], rows[0, k2], rows[0, k3]
        for x in range(width):
            top[x] = s0[x] * b0 + (s1[x] * b1 + (s2[x] * b2 + s3[x] * b3))
            label[x] = 0
        if wanted:
            scores[0] = top
        for c in range(1, rows.shape[0]):
            s0, s1, s2, s3 = rows[c, k0], rows[c, k1], rows[c, k2], rows[c, k3]
            for x in range(width):
                v = s0[x] * b0 + (s1[x] * b1 + (s2[x] * b2 + s3[x] * b3))
                t = top[x]
                label[x] = max(label[x], np.int32(c) if v > t else np.int32(0))
                top[x] = max(t, v)  # v where v > t, as numpy's argmax: the first of ties
                if wanted:
                    scores[c, x] = v
        out = labels[y]
        for i in range(width):
            out[column[i]] = label[i]
        if best.shape[0] > 0:
            out_best = best[y]
            for i in range(width):
                out_best[column[i]] = top[i]
        if wanted:
            _row_confidence(scores, top, column, total, confidence[y])


def argmax_rows(scores: np.ndarray, size: tuple[int, int], y0: int, y1: int,
                labels: np.ndarray, best: np.ndarray,
                confidence: np.ndarray = np.empty((0, 0), np.uint8)) -> None:
    """Rows y0..y1-1 of the (H, W) ids and (unless they have no rows) winning scores and
    confidence of (C, h, w) float32 ``scores`` resized to ``size``."""
    height, width = size
    y_index, y_weights = cubic_table(scores.shape[1], height)
    index, by_tap, runs, lone, column = column_layout(scores.shape[2], width)
    r0, r1 = int(y_index[y0:y1].min()), int(y_index[y0:y1].max()) + 1
    rows = np.empty((scores.shape[0], r1 - r0, width), np.float32)
    _horizontal(scores, r0, r1, index, by_tap, runs, lone, rows)
    _vertical_argmax(rows, r0, y0, y1, y_index, y_weights, column, labels, best, confidence)
