"""Whether this thread's alternate signal stack lies in memory that is still mapped.

Python runs its signal handlers' C part on the alternate stack; a library that leaves it in
freed memory turns the next Ctrl-C or SIGCHLD into a silent SIGSEGV, possibly many tests
later (OpenVINO's CPU plugin did: ``hydranet_ros/engines/openvino_runtime.py``). Checked after
every test (``conftest.py``), so the test that breaks it is the one that fails.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

MAPS = Path("/proc/self/maps")


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                ("ss_size", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)


def dangling_signal_stack() -> str | None:
    """A description of this thread's alternate signal stack where it is not wholly in one
    writable mapping, else None (also where there is none, or no /proc to tell)."""
    if not MAPS.exists():
        return None
    stack = _StackT()
    if _libc.sigaltstack(None, ctypes.byref(stack)) != 0 or not stack.ss_sp or stack.ss_flags & 2:
        return None  # none set, or disabled (SS_DISABLE)
    start, end = stack.ss_sp, stack.ss_sp + stack.ss_size
    for line in MAPS.read_text().splitlines():
        span, perms = line.split()[:2]
        low, high = (int(x, 16) for x in span.split("-"))
        if low <= start < high:
            if end <= high and perms.startswith("rw"):
                return None
            return f"{start:#x}+{stack.ss_size} is in {line.strip()!r}"
    return f"{start:#x}+{stack.ss_size} is in no mapping"
