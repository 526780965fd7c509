"""One worker's share of the cluster-wide politeness state: delay overrides, holds, refunds.

The delays themselves live in Redis (``hdelay``, ``next``, ``charge``: see
:mod:`.scripts`), so every process obeys them on Redis's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...bounded import RecentHosts
from ...clock import Clock
from .health import Health
from .link import RedisLink

__all__ = ["HostDelays"]


class HostDelays:
    """Delay overrides sent (once per value), holds, and the refund of this worker's last
    lease of a host. ``header()`` gives the scripts' first arguments: now, limit."""

    def __init__(
        self,
        link: RedisLink,
        health: Health,
        header: Callable[[], list[Any]],
        wake: Callable[[int], None],
        clock: Clock,
    ) -> None:
        self.link = link
        self.health = health
        self.header = header
        self.wake = wake  # wake this many idle workers of the process
        self.clock = clock
        self._sent: dict[str, float | None] = {}  # last value sent per host
        # Per host, this process's last lease (id, local clock time): what refund names.
        self._last_lease: RecentHosts[tuple[bytes, float]] = RecentHosts()

    def leased(self, host: str, rid: bytes) -> None:
        """This worker leased request ``rid`` of ``host`` (its delay may be refunded)."""
        self._last_lease.put(host, (rid, self.clock.now()))

    async def set(self, host: str, delay_s: float | None) -> None:
        """Override the delay between requests to ``host`` for the whole cluster."""
        if host in self._sent and self._sent[host] == delay_s:
            return
        link, guard = self.link, self.health.guard
        client, key = link.client, link.key("hdelay")
        if delay_s is None:
            await guard(link.do(lambda: client.hdel(key, host)))
        else:
            await guard(link.do(lambda: client.hset(key, host, delay_s)))
        self._sent[host] = delay_s

    async def hold(self, host: str, delay_s: float) -> None:
        """Start no request to ``host`` anywhere for ``delay_s`` seconds."""
        await self.health.guard(self.link.script("HOLD", [*self.header(), host, delay_s]))

    async def refund(self, host: str, since: float) -> None:
        """Give back the delay of this worker's last lease of ``host`` if it was leased by
        ``since`` and no lease anywhere (nor a hold) set the host's delay after it."""
        last = self._last_lease.peek(host)
        if last is None or last[1] > since:
            return
        self._last_lease.pop(host)
        args = [*self.header(), host, last[0]]
        if await self.health.guard(self.link.script("REFUND", args)):
            self.wake(1)

    def clear(self) -> None:
        """Forget the overrides sent (the job's keys were deleted)."""
        self._sent.clear()
