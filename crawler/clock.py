"""Injectable time: whatever waits or schedules takes a Clock, so tests never sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "MonotonicClock", "TimerHandle", "sleep", "wait_event"]


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


async def sleep(clock: Clock, delay_s: float) -> None:
    """Wait ``delay_s`` seconds of ``clock`` time (a manual clock: until it is advanced)."""
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    timer = clock.call_at(clock.now() + delay_s, wake)
    try:
        await woken
    finally:
        timer.cancel()


async def wait_event(clock: Clock, event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set (True) or ``timeout_s`` of ``clock`` time passed (False)."""
    if event.is_set():
        return True
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as scope:
            expire = clock.call_at(clock.now() + timeout_s, lambda: scope.reschedule(loop.time()))
            try:
                await event.wait()
            finally:
                expire.cancel()
    except TimeoutError:
        return False
    return True
