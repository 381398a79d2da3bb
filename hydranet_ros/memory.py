"""Keep freed frame buffers in the process instead of handing them back to the kernel.

glibc returns every large allocation (above ~128 KiB, i.e. every image-sized array) to the
kernel when it is freed, so each frame page-faults its buffers in again; at 640x480 that was
most of the normals' post-processing time (8 ms, 1.6 ms with this). Raising malloc's mmap
and trim thresholds keeps those pages mapped and reused. A no-op where malloc is not glibc's.
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
