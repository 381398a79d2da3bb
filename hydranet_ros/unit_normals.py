"""The resized normals made unit vectors in one compiled pass, with the release's arithmetic.

The release divides each vector by ``np.linalg.norm`` over its three components: in float32,
the squares summed x, y, z in order, a correctly rounded square root, then three correctly
rounded divisions. OpenCV does the same plane by plane (``postprocess.normals_from_raw``
without numba), in twelve passes over full-resolution planes; here each pixel is read once
and written once, vectorised by LLVM, without fused multiply-adds, so the bits are the
release's (a zero vector gives NaN, as there).
"""

from __future__ import annotations

from functools import partial

import numpy as np

from . import message_room
from .resized_argmax import compiled


@partial(compiled, error_model="numpy")  # x / 0 as IEEE 754 says, and vectorised
def _unit(values, out):
    """out = values / |values|, both flat (x, y, z, x, y, z, ...) float32."""
    for i in range(values.shape[0] // 3):
        x, y, z = values[3 * i], values[3 * i + 1], values[3 * i + 2]
        norm = np.sqrt((x * x + y * y) + z * z)
        out[3 * i] = x / norm
        out[3 * i + 1] = y / norm
        out[3 * i + 2] = z / norm


def unit_normals(vectors: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 vectors -> unit vectors, in a new array with room for its message."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    out = message_room.empty(vectors.shape, np.float32)
    _unit(vectors.reshape(-1), out.reshape(-1))
    return out
