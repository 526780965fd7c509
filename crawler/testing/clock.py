"""A manual clock for tests: time moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from ..clock import TimerHandle

__all__ = ["ManualClock"]


class _ManualTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock that moves only when a test calls :meth:`advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _ManualTimer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The current manual time."""
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` when :meth:`advance` passes ``when``."""
        timer = _ManualTimer()
        heapq.heappush(self._timers, (when, next(self._seq), timer, callback))
        return timer

    async def advance(self, seconds: float) -> None:
        """Move time forward, run due callbacks, and let woken tasks run."""
        self._now += seconds
        while self._timers and self._timers[0][0] <= self._now:
            _, _, timer, callback = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback()
        for _ in range(5):
            await asyncio.sleep(0)
