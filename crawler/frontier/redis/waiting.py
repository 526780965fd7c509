"""Idle workers of one process waiting for a lease of a shared crawl.

They are woken by this process's own pushes and acks, by a pub/sub message from
another process, by a timer for the next due delay, retry or lease deadline that
Redis reported, and by a back-off poll (50 ms doubling to 0.5 s, back to 50 ms
once a lease is found) in case a message was missed.
"""

from __future__ import annotations

import asyncio

from ..waiters import LeaseWaiters

__all__ = ["PolledWaiters"]

_POLL_MIN_S = 0.05
_POLL_MAX_S = 0.5


class PolledWaiters(LeaseWaiters):
    """:class:`~crawler.frontier.waiters.LeaseWaiters` plus the back-off poll."""

    _poll: asyncio.TimerHandle | None = None
    _poll_s = _POLL_MIN_S

    def wake_one(self) -> None:
        """Wake one waiting worker (something may be ready)."""
        self.wake(1)

    def found(self) -> None:
        """A lease was found: poll quickly again next time."""
        self._poll_s = _POLL_MIN_S

    async def wait_hint(self, hint_s: float | None) -> None:
        """Wait for a wake-up, at the latest ``hint_s`` seconds from now (when Redis said
        something is due), or the next poll."""
        if self._poll is None:
            self._poll = asyncio.get_running_loop().call_later(self._poll_s, self._on_poll)
            self._poll_s = min(self._poll_s * 2, _POLL_MAX_S)
        await self.wait(None if hint_s is None else self._clock.now() + max(0.0, hint_s))

    def cancel_timer(self) -> None:
        """Drop the pending timer and poll (on close)."""
        super().cancel_timer()
        if self._poll is not None:
            self._poll.cancel()
            self._poll = None

    def _on_poll(self) -> None:
        self._poll = None
        self.wake(1)
