"""Keep freed frame buffers in the process instead of handing them back to the kernel.

glibc returns every large allocation (above ~128 KiB, i.e. every image-sized array) to the
kernel when it is freed, so each frame page-faults its buffers in again; at 640x480 that was
most of the normals' post-processing time (8 ms, 1.6 ms with this). Raising malloc's mmap
and trim thresholds keeps those pages mapped and reused. A no-op where malloc is not glibc's.

Python subscribers pay the same way: each message they take is several fresh allocations
of its size (the deserialised C message, its Python data), so a Python subscriber of
640x480 point clouds in another process page-faulted 4,470 pages in per message, and its
callback ran about 13 ms after the stamp although its DDS reader had the sample after about
3 ms; with these settings 0 pages and about 5 ms
(``python -m hydranet_ros.ros.subscriber_memory``). Every node of this package keeps freed
memory (``lifecycle.run_node``); other Python subscribers get the settings from their
environment (``malloc_tunables``: glibc reads ``GLIBC_TUNABLES`` when a process starts).
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
#: glibc caps the mmap threshold at 32 MiB on 64-bit systems (HEAP_MAX_SIZE / 2).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20
#: The environment variable glibc reads its malloc settings from, at process start.
TUNABLES_VARIABLE = "GLIBC_TUNABLES"
#: The settings above by their tunable names (glibc 2.26 and later).
TUNABLES = {"glibc.malloc.mmap_threshold": MMAP_THRESHOLD,
            "glibc.malloc.trim_threshold": TRIM_THRESHOLD,
            "glibc.malloc.top_pad": TOP_PAD}


def keep_freed_memory() -> bool:
    """Tune glibc malloc for a frame loop; True if it took effect."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    results = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD),
               mallopt(M_TOP_PAD, TOP_PAD)]
    return all(r == 1 for r in results)


def malloc_tunables(existing: str = "") -> str:
    """A ``GLIBC_TUNABLES`` value with this module's settings, for a process started with it
    (a Python node subscribing to the point cloud). Entries of ``existing`` (the user's own
    value) are kept, and win where they name the same tunable."""
    entries = [e for e in existing.split(":") if e]
    named = {e.split("=", 1)[0] for e in entries}
    return ":".join(entries + [f"{name}={value}" for name, value in TUNABLES.items()
                               if name not in named])
