"""Publishing a frame's messages side by side, with Python's GIL released while DDS sends them.

rclpy's ``Publisher.publish`` holds the GIL for the whole call: converting the message to its
C form, Fast DDS serialising it, and the transport writing it for each subscriber (for a
6 MB point cloud to a subscriber in another process about 2 ms, of which the conversion is
0.8). A node that publishes ten messages a frame (about 15 MB at 640x480) therefore publishes
them one after another, and no other Python thread of the process (the worker with the next
frame) runs meanwhile.

The same publish in two parts: the conversion, which reads Python objects, with the GIL held
in the calling thread (rclpy's own generated converter, found on the message class as rclpy
finds it), then ``rcl_publish`` (what rclpy calls next) through ctypes, which releases the
GIL, on a small pool of threads. The messages of a frame then go out side by side while the
calling thread converts the next one, and the call returns when every one has been sent, so
each topic's messages keep their order and a frame is published whole.

Where rclpy lacks what this needs (a publisher's ``handle.pointer``, the message class's
converter capsules, a loaded ``librcl``), a publisher is published through rclpy as before
(``FramePublisher.parallel`` says which).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

RCL_LIBRARY = "librcl.so"
RCUTILS_LIBRARY = "librcutils.so"
#: More threads than this gain nothing: the conversions, which need the GIL, set the pace.
MAX_THREADS = 4


class _ErrorString(ctypes.Structure):
    _fields_ = [("str", ctypes.c_char * 1024)]  # rcutils_error_string_t


def _loaded_library(name: str, maps: Path = Path("/proc/self/maps")) -> str | None:
    """The path of a shared library this process has loaded (rclpy loads rcl); None if not."""
    try:
        text = maps.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if os.path.basename(path).startswith(name):
            return path
    return None


@dataclass(frozen=True)
class _Rcl:
    publish: object  # rcl_publish, through ctypes.CDLL: the GIL is released during the call
    error_string: object
    reset_error: object


@cache
def _rcl() -> _Rcl | None:
    rcl, rcutils = _loaded_library(RCL_LIBRARY), _loaded_library(RCUTILS_LIBRARY)
    if rcl is None or rcutils is None:
        return None
    try:
        rcl_lib, rcutils_lib = ctypes.CDLL(rcl), ctypes.CDLL(rcutils)
        publish = rcl_lib.rcl_publish
        error_string = rcutils_lib.rcutils_get_error_string
        reset_error = rcutils_lib.rcutils_reset_error
    except (OSError, AttributeError):
        return None
    publish.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    publish.restype = ctypes.c_int
    error_string.argtypes, error_string.restype = [], _ErrorString
    reset_error.argtypes, reset_error.restype = [], None
    return _Rcl(publish, error_string, reset_error)


@dataclass(frozen=True)
class _Converter:
    """A message class's C form: made, filled from the Python message, destroyed."""
    create: object
    convert: object
    destroy: object


@cache
def _capsule_functions() -> tuple:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.argtypes, get_name.restype = [ctypes.py_object], ctypes.c_char_p
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.argtypes, get_pointer.restype = [ctypes.py_object, ctypes.c_char_p], ctypes.c_void_p
    return get_name, get_pointer


def _capsule_pointer(capsule) -> int:
    get_name, get_pointer = _capsule_functions()
    pointer = get_pointer(capsule, get_name(capsule))
    if not pointer:
        raise ValueError("empty capsule")
    return pointer


@cache
def _converter(cls: type) -> _Converter | None:
    """The class's generated C functions, as rclpy uses them (set once its type support is
    imported, which creating a publisher does)."""
    meta = type(cls)
    try:
        create = ctypes.CFUNCTYPE(ctypes.c_void_p)(_capsule_pointer(meta._CREATE_ROS_MESSAGE))
        convert = ctypes.PYFUNCTYPE(ctypes.c_bool, ctypes.py_object, ctypes.c_void_p)(
            _capsule_pointer(meta._CONVERT_FROM_PY))
        destroy = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(
            _capsule_pointer(meta._DESTROY_ROS_MESSAGE))
    except (AttributeError, TypeError, ValueError):
        return None
    return _Converter(create, convert, destroy)


class GilFreePublish:
    """One publisher's publish in two parts: ``convert`` with the GIL (returns the message's
    C form), then ``send`` (rcl_publish with the GIL released; frees the C form)."""

    def __init__(self, publisher, converter: _Converter, rcl: _Rcl) -> None:
        self.publisher = publisher
        self._converter = converter
        self._rcl = rcl

    def convert(self, msg) -> int:
        if not isinstance(msg, self.publisher.msg_type):
            raise TypeError(f"expected {self.publisher.msg_type.__name__} on "
                            f"'{self.publisher.topic_name}', got {type(msg).__name__}")
        raw = self._converter.create()
        if not raw:
            raise MemoryError(f"could not allocate a {type(msg).__name__} message")
        try:
            if not self._converter.convert(msg, raw):
                raise ValueError(f"could not convert the {type(msg).__name__} for "
                                 f"'{self.publisher.topic_name}'")
        except BaseException:
            self._converter.destroy(raw)
            raise
        return raw

    def send(self, raw: int) -> None:
        try:
            with self.publisher.handle:  # keeps rclpy from destroying it meanwhile
                ret = self._rcl.publish(self.publisher.handle.pointer, raw, None)
            if ret != 0:
                detail = self._rcl.error_string().str.decode(errors="replace")
                self._rcl.reset_error()
                raise RuntimeError(f"publishing on '{self.publisher.topic_name}' failed "
                                   f"(rcl_publish returned {ret}): {detail}")
        finally:
            self._converter.destroy(raw)


def unavailable(publisher) -> str | None:
    """Why this rclpy cannot publish on ``publisher`` without the GIL; None if it can."""
    if _rcl() is None:
        return f"{RCL_LIBRARY} or {RCUTILS_LIBRARY} is not loaded in this process"
    if _converter(publisher.msg_type) is None:
        return f"{publisher.msg_type.__name__} has no C conversion functions"
    if not isinstance(getattr(getattr(publisher, "handle", None), "pointer", None), int):
        return "rclpy's publisher handle has no 'pointer'"
    return None


def gil_free(publisher) -> GilFreePublish | None:
    """The publisher's GIL-free publish, or None where this rclpy does not allow it."""
    if unavailable(publisher) is not None:
        return None
    return GilFreePublish(publisher, _converter(publisher.msg_type), _rcl())


class FramePublisher:
    """Publishes the messages of a frame side by side on ``threads`` threads, returning once
    all are sent; ``threads`` 0 publishes through rclpy one by one, as before."""

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="hydranet-send") \
            if threads > 0 else None
        #: id(publisher) -> its GIL-free publish, or the publisher itself where there is none
        self._parts: dict[int, GilFreePublish | object] = {}
        self._lock = threading.Lock()

    def parallel(self, publisher) -> bool:
        return self._parts_of(publisher) is not None

    def _parts_of(self, publisher) -> GilFreePublish | None:
        if self._pool is None:
            return None
        key = id(publisher)
        with self._lock:
            parts = self._parts.get(key)
            known = parts is publisher or getattr(parts, "publisher", None) is publisher
            if not known:  # new, or a destroyed publisher's id reused
                parts = self._parts[key] = gil_free(publisher) or publisher
            return parts if isinstance(parts, GilFreePublish) else None

    def publish(self, messages: Iterable[tuple[object, object]]) -> None:
        """(publisher, message) pairs, in order; each message is made when it is reached (a
        generator), converted here, and sent on the pool while the next one is made."""
        sent: list[Future] = []
        try:
            for publisher, msg in messages:
                parts = self._parts_of(publisher)
                if parts is None:
                    publisher.publish(msg)
                    continue
                raw = parts.convert(msg)
                try:
                    sent.append(self._pool.submit(parts.send, raw))
                except RuntimeError:  # the pool was shut down: send it here
                    parts.send(raw)
        finally:
            errors = [exc for future in sent if (exc := future.exception()) is not None]
        if errors:
            raise errors[0]

    def forget(self, publisher) -> None:
        """Drop a publisher about to be destroyed."""
        with self._lock:
            self._parts.pop(id(publisher), None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
