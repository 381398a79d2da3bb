"""Queues of one: per camera the newest frame wins, older unprocessed ones are dropped and
counted; frames of several cameras that arrive together are handed out together.

This is what keeps a slow consumer from building up latency: producers never wait and the
consumer always gets the most recent item of each camera.

A producer that wakes a waiting consumer also lets it run at once (``put``). In the node the
producer is rclpy's executor thread, which after an image callback goes on with its own
Python bookkeeping until it next blocks, holding the interpreter's lock; the woken worker
waited for that lock 0.3 to 0.6 ms per frame (the node of ``benchmarks/gpu_node_host.py`` on
this project's 2-core machine), and 0.07 ms with the lock yielded.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, Hashable, TypeVar

T = TypeVar("T")

#: At most how often ``put`` yields the interpreter's lock to a consumer it has woken: now
#: and then the first yield comes before the woken consumer asks for the lock.
HANDOVER_YIELDS = 3


def yield_lock() -> None:
    """Lets other Python threads run for a moment: a sleep of nothing releases the lock."""
    time.sleep(0)


class LatestSlots(Generic[T]):
    def __init__(self, keys: tuple[Hashable, ...] = ("",)) -> None:
        self.keys = keys
        self._cond = threading.Condition()
        self._items: dict[Hashable, T] = {}
        self._closed = False
        self._waiting = 0  # consumers blocked in take_all

    def put(self, item: T, key: Hashable = "") -> bool:
        """Store ``item`` for ``key``; True if it replaced one never taken (a dropped frame).

        Where a consumer was waiting, yields the interpreter's lock (``yield_lock``) until
        it has taken the item, at most HANDOVER_YIELDS times, so that it runs now rather than
        whenever this thread next blocks; the producer never waits for the consumer.
        """
        with self._cond:
            replaced = key in self._items
            self._items[key] = item
            woken = self._waiting > 0
            self._cond.notify()
        for _ in range(HANDOVER_YIELDS if woken else 0):
            if self._items.get(key) is not item:
                break  # taken (or replaced already)
            yield_lock()
        return replaced

    def take_all(self, timeout: float | None = None, gather_s: float = 0.0) -> dict[Hashable, T]:
        """The newest item of every key that has one, waiting up to ``timeout`` for the first.

        Once one has arrived, waits up to ``gather_s`` more for the other keys, so frames of
        cameras triggered together form one batch. Empty on timeout or once closed.
        """
        with self._cond:
            self._waiting += 1  # while this holds the lock it is not waiting: no put runs
            try:
                return self._take_all(timeout, gather_s)
            finally:
                self._waiting -= 1

    def _take_all(self, timeout: float | None, gather_s: float) -> dict[Hashable, T]:
        self._cond.wait_for(lambda: self._items or self._closed, timeout)
        deadline = time.monotonic() + gather_s
        while not self._closed and len(self._items) < len(self.keys):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)
        if self._closed:
            return {}
        items, self._items = self._items, {}
        return items

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item of a single-key queue; None on timeout or once closed."""
        return self.take_all(timeout).get(self.keys[0])

    def close(self) -> None:
        """Wake every waiter; nothing is handed out afterwards."""
        with self._cond:
            self._closed = True
            self._items = {}
            self._cond.notify_all()
