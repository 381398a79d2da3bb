"""One small thread pool for the per-frame image work (post-processing, colour views). OpenCV
and numpy release the GIL, so independent maps of a frame really do run on several cores;
the pool is shared so that nested users never oversubscribe the CPU."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="hydranet-work")


def submit(fn: Callable[..., T], *args) -> Future:
    return _POOL.submit(fn, *args)
