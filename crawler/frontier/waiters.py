"""Idle workers waiting for a lease: woken one at a time, or by a timer when a host is due.

Waking exactly as many waiters as there is new work (instead of an Event that wakes
every idle worker for every ack) keeps an idle pool of 32 workers from costing 32
task switches per request.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..clock import Clock, TimerHandle
from .domains import HostReadiness

__all__ = ["LeaseWaiters", "LocalPoliteness"]


class LeaseWaiters:
    """Futures of workers waiting in ``lease()``, plus one timer for the next due time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None

    def __len__(self) -> int:
        return len(self._waiters)

    def wake(self, count: int = 1) -> None:
        """Wake up to ``count`` waiting workers."""
        waiters = self._waiters
        while count > 0 and waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                count -= 1

    def wake_all(self) -> None:
        """Wake every waiting worker (exhausted or stopped)."""
        self.wake(len(self._waiters))

    async def wait(self, wake_at: float | None) -> None:
        """Wait to be woken, or until clock time ``wake_at`` (when something becomes due)."""
        if wake_at is not None and (self._timer_at is None or wake_at < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = wake_at
            self._timer = self._clock.call_at(wake_at, self._on_timer)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()

    def cancel_timer(self) -> None:
        """Drop the pending timer (on close)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.wake(1)


class LocalPoliteness:
    """The politeness part of the Frontier protocol for the frontiers of one process (memory,
    SQLite): host delays and holds live in their ``readiness``, idle workers in ``_waiters``."""

    readiness: HostReadiness
    clock: Clock
    _waiters: LeaseWaiters

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        """Override the delay between requests to ``host`` (None restores the policy's)."""
        self.readiness.set_delay(host, delay_s)

    async def hold_host(self, host: str, delay_s: float) -> None:
        """Start no request to ``host`` for ``delay_s`` seconds (not persisted)."""
        self.readiness.delay_host(host, self.clock.now() + delay_s)

    async def refund_delay(self, host: str, since: float) -> None:
        """Give back the delay of a request of ``host`` leased by ``since`` (see DelayRefunds)."""
        if self.readiness.refund(host, since):
            self._waiters.wake(1)
