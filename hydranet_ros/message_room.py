"""Output arrays with room around them for their ROS message, so that the node can publish
each one serialized in place (``ros/serialized.py``): the message's other fields are written
into the free bytes before and after the array's own, and the middleware takes the whole
message from there, without rclpy copying the data into a message of its own first.

CUDA engines' outputs come back packed in one buffer laid out so (``device_outputs.pack``);
the host path allocates each output array with ``empty``, and ``room`` finds the room again.
The arrays are plain numpy arrays: code that does not publish them sees no difference.
"""

from __future__ import annotations

import weakref

import numpy as np

#: Bytes kept free before and after each output: room for the fields a ROS message puts
#: before and after its data (an Image's header, sizes and encoding; a PointCloud2's fields
#: and ``is_dense``). Each output starts on a 64-byte boundary.
ROOM_BEFORE = 256
ROOM_AFTER = 8
ALIGNMENT = 64


def layout_offsets(sizes: list[int]) -> tuple[list[int], int]:
    """Where outputs of these byte sizes start in one buffer, and its length: each after
    ROOM_BEFORE free bytes, aligned, and followed by ROOM_AFTER (``device_outputs.pack`` lays
    a frame's outputs out so, ``empty`` one array)."""
    offsets, end = [], 0
    for size in sizes:
        start = -(-(end + ROOM_BEFORE) // ALIGNMENT) * ALIGNMENT
        offsets.append(start)
        end = start + size + ROOM_AFTER
    return offsets, end


#: Where ``empty`` puts an array's first byte in its buffer.
START = layout_offsets([0])[0][0]

#: The buffers ``empty`` made, by id, while they live: only their room is known to be free.
_BUFFERS: weakref.WeakValueDictionary[int, np.ndarray] = weakref.WeakValueDictionary()


def empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array, as ``np.empty``, with ROOM_BEFORE free bytes
    before it and ROOM_AFTER after it in the one buffer it views."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(layout_offsets([size])[1], np.uint8)
    _BUFFERS[id(buffer)] = buffer
    return buffer[START:START + size].view(dtype).reshape(shape)


def room(array: np.ndarray) -> tuple[np.ndarray, int] | None:
    """(the byte buffer, where the array's bytes start in it) for an array ``empty`` made (or
    a view of all of it: another dtype or shape), or None for any other array, whose
    neighbouring bytes may belong to something else."""
    buffer = array
    while isinstance(buffer.base, np.ndarray):
        buffer = buffer.base
    if _BUFFERS.get(id(buffer)) is not buffer or not array.flags.c_contiguous:
        return None
    offset = array.__array_interface__["data"][0] - buffer.__array_interface__["data"][0]
    if offset != START or array.nbytes != buffer.nbytes - START - ROOM_AFTER:
        return None
    return buffer, offset
