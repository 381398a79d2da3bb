"""Publishing the node's outputs serialized in place: from the memory they were made in,
without copying their bytes into rclpy's messages first.

rclpy's ``Publisher.publish`` copies a message's data three times: into the message's C form
(rclpy's converter), into Fast DDS's serialized payload, and into the shared-memory segment
its subscribers read. For the 16 MB of a 640x480 frame's outputs that was about 11 ms on this
project's 2-core machine, the conversion about a quarter of it (py-spy, ``benchmarks/
publish_probe.py``). Every output is made with room before and after it
(``message_room.py``): a CUDA engine's come back in one packed host buffer laid out so, the
host path allocates each array so. The message's other fields are written there in CDR, the
encoding every ROS 2 DDS middleware puts on the wire, so each output's bytes already are its
serialized message, and ``rcl_publish_serialized_message`` (through ctypes, without Python's
lock, so the worker threads making the colour views meanwhile go on) hands them to the
middleware: the first copy is gone.

What arrives is the message rclpy would have sent (the tests deserialise both and compare
every field). Outputs without such room (a point cloud of the valid points only, made by
selecting them; a frame_id longer than the room) are published as rclpy messages, as is
everything where rclpy lacks what this needs (``unavailable`` says why, once, in the node's
log).

With ``publish_threads`` above 1 a frame's messages serialized in place go out from that
many threads at once (``SideBySide``), in runs of about equal bytes in the node's order
(``shares``: labels, confidence and the point cloud first, on the calling thread). Fast DDS copies
a sample into its writer's payload under that writer's own lock and into the shared-memory
segment under one lock of the whole participant (``sendSync``), and the call holds no GIL
here, so the copies of different messages partly overlap. A first version, which converted
each message with rclpy under the GIL and sent it with ``rcl_publish`` on a pool, gained
nothing (measured on this project's 2 cores and on an H200's 16-core host; rclpy's own
``publish`` holds the GIL throughout). In place, on 2 cores, two threads brought the
last output to a consumer in another process sooner and the point cloud later (the README's
Node overhead section), so one thread stays the default.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import accumulate, pairwise

import numpy as np

from ..message_room import ROOM_BEFORE, room as array_room
from .conversions import image_fields, output_message, point_fields, pointcloud_fields
from .transport import loaded_library

RCL_LIBRARY = "librcl.so"
RCUTILS_LIBRARY = "librcutils.so"
#: The CDR encapsulation of little-endian plain CDR (what rmw_fastrtps and rclpy write).
CDR_LITTLE_ENDIAN = b"\x00\x01\x00\x00"
IMAGE_TYPE = "sensor_msgs/msg/Image"
POINTCLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"


class _Cdr:
    """A little-endian CDR (XCDR1) writer for the few field kinds these messages have;
    alignment counts from after the encapsulation, as the DDS middlewares do."""

    def __init__(self) -> None:
        self.out = bytearray(CDR_LITTLE_ENDIAN)

    def _align(self, size: int) -> None:
        self.out += bytes(-(len(self.out) - len(CDR_LITTLE_ENDIAN)) % size)

    def u32(self, value: int) -> None:
        self._align(4)
        self.out += struct.pack("<I", value)

    def i32(self, value: int) -> None:
        self._align(4)
        self.out += struct.pack("<i", value)

    def u8(self, value: int) -> None:
        self.out.append(value)

    def string(self, text: str) -> None:
        encoded = text.encode()
        self.u32(len(encoded) + 1)
        self.out += encoded + b"\x00"

    def header(self, header) -> None:
        self.i32(header.stamp.sec)
        self.u32(header.stamp.nanosec)
        self.string(header.frame_id)


def image_prefix(header, array: np.ndarray) -> bytes:
    """A sensor_msgs/Image's serialized bytes up to its data, for a C-contiguous array."""
    fields = image_fields(array)
    cdr = _Cdr()
    cdr.header(header)
    cdr.u32(fields["height"])
    cdr.u32(fields["width"])
    cdr.string(fields["encoding"])
    cdr.u8(fields["is_bigendian"])
    cdr.u32(fields["step"])
    cdr.u32(array.nbytes)
    return bytes(cdr.out)


def pointcloud_parts(header, cloud: np.ndarray,
                     is_dense: bool | None = None) -> tuple[bytes, bytes]:
    """A PointCloud2's serialized bytes before its data and after (``is_dense``, where not
    given read from the cloud)."""
    fields = pointcloud_fields(cloud, is_dense)
    cdr = _Cdr()
    cdr.header(header)
    cdr.u32(fields["height"])
    cdr.u32(fields["width"])
    points = point_fields(cloud)
    cdr.u32(len(points))
    for name, offset, datatype, count in points:
        cdr.string(name)
        cdr.u32(offset)
        cdr.u8(datatype)
        cdr.u32(count)
    cdr.u8(fields["is_bigendian"])
    cdr.u32(fields["point_step"])
    cdr.u32(fields["row_step"])
    cdr.u32(cloud.nbytes)
    return bytes(cdr.out), bytes([fields["is_dense"]])


@dataclass(frozen=True)
class SerializedMessage:
    """A message's serialized bytes (a view of the buffer they were written in) and its type."""
    data: np.ndarray
    type_name: str


def in_place(name: str, header, arrays: Mapping[str, np.ndarray]) -> SerializedMessage | None:
    """Output ``name`` serialized around its own bytes, where there is room for it: laid out
    so in a CUDA engine's buffer (``device_outputs.FrameArrays.room``), or made with room by
    the host path (``message_room.empty``); None where there is not."""
    array = arrays[name]
    room = getattr(arrays, "room", None)
    placed = room(name) if room is not None else array_room(array)
    if placed is None:
        return None
    buffer, offset = placed
    if name == "points":
        dense = getattr(arrays, "cloud_is_dense", None)  # see device_outputs.dense_flag
        prefix, suffix, type_name = *pointcloud_parts(header, array, dense), POINTCLOUD2_TYPE
    else:
        prefix, suffix, type_name = image_prefix(header, array), b"", IMAGE_TYPE
    if len(prefix) > ROOM_BEFORE:  # the suffix (at most 1 byte) always fits ROOM_AFTER
        return None  # a frame_id too long for the room
    begin, end = offset - len(prefix), offset + array.nbytes + len(suffix)
    buffer[begin:offset] = np.frombuffer(prefix, np.uint8)
    buffer[offset + array.nbytes:end] = np.frombuffer(suffix, np.uint8)
    return SerializedMessage(buffer[begin:end], type_name)


def message_in_place(name: str, header, arrays: Mapping[str, np.ndarray]):
    """The node's ``conversions.MessageMaker``: serialized in place where there is room, else
    rclpy's message."""
    return in_place(name, header, arrays) or output_message(name, header, arrays[name])


# -- publishing -----------------------------------------------------------------------------

class _ErrorString(ctypes.Structure):
    _fields_ = [("str", ctypes.c_char * 1024)]  # rcutils_error_string_t


class _SerializedBytes(ctypes.Structure):
    """rcl_serialized_message_t (rcutils_uint8_array_t): rcl only reads the bytes."""
    _fields_ = [("buffer", ctypes.c_void_p), ("buffer_length", ctypes.c_size_t),
                ("buffer_capacity", ctypes.c_size_t),
                ("allocator", ctypes.c_void_p * 5)]  # rcutils_allocator_t, unused


@dataclass(frozen=True)
class _Rcl:
    publish_serialized: object  # through ctypes.CDLL: the GIL is released during the call
    error_string: object
    reset_error: object


@cache
def _rcl() -> _Rcl | None:
    rcl, rcutils = loaded_library(RCL_LIBRARY), loaded_library(RCUTILS_LIBRARY)
    if rcl is None or rcutils is None:
        return None
    try:
        rcl_lib, rcutils_lib = ctypes.CDLL(rcl), ctypes.CDLL(rcutils)
        publish = rcl_lib.rcl_publish_serialized_message
        error_string = rcutils_lib.rcutils_get_error_string
        reset_error = rcutils_lib.rcutils_reset_error
    except (OSError, AttributeError):
        return None
    publish.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SerializedBytes), ctypes.c_void_p]
    publish.restype = ctypes.c_int
    error_string.argtypes, error_string.restype = [], _ErrorString
    reset_error.argtypes, reset_error.restype = [], None
    return _Rcl(publish, error_string, reset_error)


def _type_name(msg_type: type) -> str:
    module = msg_type.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_type.__name__}" if len(module) > 1 else ""


def unavailable(publisher=None) -> str | None:
    """Why serialized messages cannot be published (on ``publisher``, if given) without a
    copy; None if they can."""
    if _rcl() is None:
        return f"{RCL_LIBRARY} or {RCUTILS_LIBRARY} is not loaded in this process"
    handle = getattr(publisher, "handle", None)
    if publisher is not None and not isinstance(getattr(handle, "pointer", None), int):
        return "rclpy's publisher handle has no 'pointer'"
    return None


def publish(publisher, msg) -> None:
    """``publisher.publish(msg)``, and for a SerializedMessage its bytes as they are:
    through rcl without a copy where ``unavailable`` allows, else through rclpy."""
    if not isinstance(msg, SerializedMessage):
        publisher.publish(msg)
        return
    expected = _type_name(publisher.msg_type)
    if msg.type_name != expected:
        raise TypeError(f"expected {expected} on '{publisher.topic_name}', got {msg.type_name}")
    if unavailable(publisher) is not None:
        publisher.publish(msg.data.tobytes())
        return
    rcl = _rcl()
    data = msg.data
    serialized = _SerializedBytes(data.ctypes.data, data.nbytes, data.nbytes)
    with publisher.handle:  # keeps rclpy from destroying it meanwhile
        ret = rcl.publish_serialized(publisher.handle.pointer, ctypes.byref(serialized), None)
    if ret != 0:
        detail = rcl.error_string().str.decode(errors="replace")
        rcl.reset_error()
        raise RuntimeError(f"publishing on '{publisher.topic_name}' failed "
                           f"(rcl_publish_serialized_message returned {ret}): {detail}")


# -- a frame's messages side by side ---------------------------------------------------------

def message_size(msg) -> int:
    """The bytes of a message's data (what Fast DDS copies), for sharing messages by size."""
    if isinstance(msg, SerializedMessage):
        return msg.data.nbytes
    data = getattr(msg, "data", None)
    return len(data) if data is not None else 0


def shares(sizes: Sequence[int], count: int) -> list[list[int]]:
    """The indices of ``sizes`` (in the order of importance) cut into at most ``count`` runs
    of consecutive indices of about equal total: each cut where the running total comes
    closest to its share. The first thread sends the first run, so the messages that
    matter most (the node's: labels, confidence, point cloud) start at once and in order."""
    before = list(accumulate(sizes, initial=0))  # before[c]: the bytes of sizes[:c]
    cuts = [0]
    for share in range(1, count):
        target = before[-1] * share / count
        options = range(cuts[-1] + 1, len(sizes))
        if not options:
            break
        cuts.append(min(options, key=lambda cut: abs(before[cut] - target)))
    cuts.append(len(sizes))
    return [list(range(start, end)) for start, end in pairwise(cuts) if end > start]


class SideBySide:
    """Publishes a frame's messages from ``threads`` threads at once (the caller's and a
    small pool), in runs of about equal bytes (``shares``), and returns when all are sent;
    the first error, if any, is raised after that. Each topic's messages keep their order,
    as a frame's are all sent before the next frame's begin."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="hydranet-send") \
            if self.threads > 1 else None

    def publish(self, items: Sequence[tuple[object, object]]) -> None:
        """``items``: (publisher, message) pairs, in the order one thread would send them."""
        groups = shares([message_size(msg) for _, msg in items], self.threads)
        if self._pool is None or len(groups) < 2:
            publish_all(items)
            return
        futures = [self._pool.submit(publish_all, [items[i] for i in group])
                   for group in groups[1:]]
        errors: list[Exception] = []
        try:
            publish_all([items[i] for i in groups[0]])
        except Exception as exc:  # noqa: BLE001  raised below, once the others are done
            errors.append(exc)
        for future in futures:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        if errors:
            raise errors[0]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def publish_all(items: Iterable[tuple[object, object]]) -> None:
    """(publisher, message) pairs published one after another, each as it is reached (a
    generator may make the next message meanwhile)."""
    for publisher, msg in items:
        publish(publisher, msg)
