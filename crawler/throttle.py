"""AutoThrottle: adapt each host's delay to its latency and to 429/503 answers.

Like Scrapy's: the target delay is ``latency / target_concurrency``; the new
delay moves half-way to it, never below the host's floor (DOWNLOAD_DELAY or
robots.txt Crawl-delay) nor above ``max_delay_s``; error answers never lower
it, and 429/503 double it.

State is kept for the recently active hosts only (a :class:`RecentHosts` of
``max_hosts``): a host is evicted once its delay has passed since its last
response, and starts again from ``start_delay_s`` if it comes back.

:meth:`adapt` writes the delay to the frontier only when it changed meaningfully
(see :meth:`publish`): a shared (Redis) frontier gets at most one write per host
per second (a 429/503 back-off at once), not one per response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .bounded import RecentHosts
from .clock import Clock, MonotonicClock

__all__ = ["AutoThrottle", "HostDelaySink"]

# A new delay is written to the frontier when it differs from the last one written by
# more than this fraction (smaller moves are latency noise: no host would notice them),
PUBLISH_CHANGE = 0.10
# and then at most once per host per this many seconds,
PUBLISH_INTERVAL_S = 1.0
# unless it grew by this factor or more (a 429/503 back-off doubles it): that is written at once.
PUBLISH_AT_ONCE_FACTOR = 1.5


class HostDelaySink(Protocol):
    """Where adapted delays go: a frontier's ``set_host_delay``."""

    async def set_host_delay(self, host: str, delay_s: float | None) -> None:
        """Override the delay between requests to ``host``."""


@dataclass(slots=True)
class _HostThrottle:
    delay_s: float
    floor_s: float
    seen_at: float = float("-inf")  # clock time of the last response observed
    published_s: float | None = None  # the delay last written to the frontier
    published_at: float = float("-inf")


@dataclass
class AutoThrottle:
    """Per-host adaptive delay."""

    start_delay_s: float = 1.0
    max_delay_s: float = 60.0
    target_concurrency: float = 1.0
    default_floor_s: float = 0.0
    clock: Clock = field(default_factory=MonotonicClock)
    max_hosts: int | None = None  # None: bounded.DEFAULT_MAX_HOSTS
    _hosts: RecentHosts[_HostThrottle] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._hosts = RecentHosts(self.max_hosts, self._evictable)

    def __len__(self) -> int:
        """Hosts whose state is kept now."""
        return len(self._hosts)

    def _evictable(self, state: _HostThrottle) -> bool:
        return self.clock.now() >= state.seen_at + state.delay_s

    def _state(self, host: str) -> _HostThrottle:
        state = self._hosts.get(host)
        if state is None:
            floor = self.default_floor_s
            state = self._hosts.put(host, _HostThrottle(max(self.start_delay_s, floor), floor))
        return state

    def set_floor(self, host: str, floor_s: float) -> None:
        """The lowest delay allowed for ``host`` (e.g. its robots.txt Crawl-delay)."""
        state = self._state(host)
        state.floor_s = floor_s
        state.delay_s = max(state.delay_s, floor_s)
        state.published_s = None  # the caller writes the frontier itself: publish again

    def floor(self, host: str) -> float:
        """The delay floor of ``host``."""
        state = self._hosts.peek(host)
        return self.default_floor_s if state is None else state.floor_s

    def delay(self, host: str) -> float:
        """The current adapted delay of ``host``."""
        state = self._hosts.peek(host)
        if state is None:
            return max(self.start_delay_s, self.default_floor_s)
        return state.delay_s

    def observe(self, host: str, latency_s: float, status: int) -> float:
        """Record one response; return the host's new delay."""
        state = self._state(host)
        old = state.delay_s
        floor = state.floor_s
        if status in (429, 503):
            new = max(old * 2, floor, 0.1)
        else:
            target = latency_s / self.target_concurrency
            new = (old + target) / 2.0
            if status >= 400 and new < old:
                new = old  # an error answer is no reason to speed up
        new = min(max(new, floor), self.max_delay_s)
        state.delay_s = new
        state.seen_at = self.clock.now()
        return new

    def publish(self, host: str) -> float | None:
        """The delay to write to the frontier for ``host`` now, or None if it need not be.

        Written: the first time; at once when it grew by half or more (a 429/503 back-off);
        otherwise only when it moved by more than 10 % from the value last written, and at
        most once per host per second. So a shared (Redis) frontier sees at most one write
        per host per second, and a host behind a steady server only a handful in all.
        """
        state = self._hosts.peek(host)
        if state is None:
            return None
        new, last = state.delay_s, state.published_s
        now = self.clock.now()
        if last is not None:
            if abs(new - last) <= PUBLISH_CHANGE * last:
                return None
            urgent = new >= PUBLISH_AT_ONCE_FACTOR * last
            if not urgent and now - state.published_at < PUBLISH_INTERVAL_S:
                return None
        state.published_s = new
        state.published_at = now
        return new

    async def adapt(self, sink: HostDelaySink, host: str, latency_s: float, status: int) -> None:
        """Observe one response and write the host's delay to ``sink`` if it changed enough."""
        self.observe(host, latency_s, status)
        delay = self.publish(host)
        if delay is not None:
            await sink.set_host_delay(host, delay)
