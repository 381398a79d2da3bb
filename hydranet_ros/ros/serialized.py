"""Publishing the node's outputs serialized in place: from the buffer the GPU copied them into,
without copying their bytes into rclpy's messages first.

rclpy's ``Publisher.publish`` copies a message's data three times: into the message's C form
(rclpy's converter), into Fast DDS's serialized payload, and into the shared-memory segment
its subscribers read. For the 16 MB of a 640x480 frame's outputs that was about 11 ms on this
project's 2-core machine, the conversion about a quarter of it (py-spy, ``benchmarks/
publish_probe.py``). A CUDA engine's outputs come back in one packed host buffer that keeps
room before and after each output (``device_outputs.ROOM_BEFORE``): the message's other
fields are written there in CDR, the encoding every ROS 2 DDS middleware puts on the wire, so
each output's bytes already are its serialized message, and ``rcl_publish_serialized_message``
(through ctypes, without Python's lock) hands them to the middleware: the first copy is gone.

What arrives is the message rclpy would have sent (the tests deserialise both and compare
every field). Outputs without such room (CPU engines, whose outputs are separate arrays; a
frame_id longer than the room) are published as rclpy messages, as is everything where rclpy
lacks what this needs (``unavailable`` says why, once, in the node's log).

Sending messages side by side on threads was tried and measured: it gained nothing on this
project's 2 cores nor (with rclpy's conversion still in it) on an H200's 16-core host. Fast DDS
copies each sample into the writer's payload under that writer's own lock, but into the
shared-memory segment under one lock of the whole participant (``sendSync``), so threads can
overlap only the first copies; ``benchmarks/publish_probe.py --spread`` measures threads and
participants on a machine with the cores for it. A frame's messages go out in order, from
one thread.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np

from ..device_outputs import ROOM_BEFORE
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


def pointcloud_parts(header, cloud: np.ndarray) -> tuple[bytes, bytes]:
    """A PointCloud2's serialized bytes before its data and after (``is_dense``)."""
    fields = pointcloud_fields(cloud)
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
    """Output ``name`` serialized around its own bytes, where ``arrays`` (a
    ``device_outputs.FrameArrays``) left room for it; None where it did not."""
    room = getattr(arrays, "room", None)
    placed = room(name) if room is not None else None
    if placed is None:
        return None
    buffer, offset = placed
    array = arrays[name]
    if name == "points":
        prefix, suffix, type_name = *pointcloud_parts(header, array), POINTCLOUD2_TYPE
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
