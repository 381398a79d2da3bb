"""Rate-limited warnings: one per kind and period, with a count of those held back.

A camera that sends a broken frame sends it 30 times a second; the log should say so once.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Throttle:
    def __init__(self, emit: Callable[[str], object], period_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._emit = emit
        self._period = period_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warn(self, key: str, message: str) -> bool:
        """Emit ``message`` unless one of this ``key`` was emitted within the period."""
        now = self._clock()
        if key in self._last and now - self._last[key] < self._period:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        held = self._held.pop(key, 0)
        self._last[key] = now
        self._emit(message + (f" ({held} similar warning(s) suppressed)" if held else ""))
        return True
