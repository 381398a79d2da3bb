"""Queues of one: per camera the newest frame wins, older unprocessed ones are dropped and
counted; frames of several cameras that arrive together are handed out together.

This is what keeps a slow consumer from building up latency: producers never wait and the
consumer always gets the most recent item of each camera.
"""

from __future__ import annotations

import threading
import time
from typing import Generic, Hashable, TypeVar

T = TypeVar("T")


class LatestSlots(Generic[T]):
    def __init__(self, keys: tuple[Hashable, ...] = ("",)) -> None:
        self.keys = keys
        self._cond = threading.Condition()
        self._items: dict[Hashable, T] = {}
        self._closed = False

    def put(self, item: T, key: Hashable = "") -> bool:
        """Store ``item`` for ``key``; True if it replaced one never taken (a dropped frame)."""
        with self._cond:
            replaced = key in self._items
            self._items[key] = item
            self._cond.notify()
            return replaced

    def take_all(self, timeout: float | None = None, gather_s: float = 0.0) -> dict[Hashable, T]:
        """The newest item of every key that has one, waiting up to ``timeout`` for the first.

        Once one has arrived, waits up to ``gather_s`` more for the other keys, so frames of
        cameras triggered together form one batch. Empty on timeout or once closed.
        """
        with self._cond:
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
