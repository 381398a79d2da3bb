"""One small thread pool for the per-frame image work (post-processing, colour views, point
clouds). OpenCV and numpy release the GIL, so independent maps of a frame really do run on
several cores; the pool is shared so that nested users never oversubscribe the CPU."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")

WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="hydranet-work")


def submit(fn: Callable[..., T], *args) -> Future:
    return _POOL.submit(fn, *args)


def run_all(calls: dict[str, Callable[[], T]]) -> dict[str, T]:
    """Run the calls concurrently: all but the first in the pool, the first in this thread."""
    items = list(calls.items())
    futures = {name: _POOL.submit(call) for name, call in items[1:]}
    results = {items[0][0]: items[0][1]()} if items else {}
    results.update({name: future.result() for name, future in futures.items()})
    return results
