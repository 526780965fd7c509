"""Injectable time: whatever waits or schedules takes a Clock, so tests never sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "MonotonicClock", "TimerHandle"]


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Cancel the callback if it has not run yet."""


class Clock(Protocol):
    """A source of time in seconds and a way to run a callback at a given time."""

    def now(self) -> float:
        """Current time in seconds (monotonic)."""

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once the clock reaches ``when``."""


class MonotonicClock:
    """The real clock: ``time.monotonic`` and the running event loop's timers."""

    def now(self) -> float:
        """Seconds from ``time.monotonic``."""
        return time.monotonic()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Schedule ``callback`` on the running loop at monotonic time ``when``."""
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.monotonic()), callback)
